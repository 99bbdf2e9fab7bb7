"""``tidings serve --workers N`` under load: S1 and S5 with two workers beside one process, and
S6 toward 100,000 connections held by one machine.

    python benchmarks/workers_bench.py                    # S1w, S5w, S6w (~6 min)
    python benchmarks/workers_bench.py --scenarios S6w --conns 100000 --workers 6
    python benchmarks/workers_bench.py --quick

Workers share state through Redis, so every Tidings row here runs on the Redis engine (a
private ``redis-server``, redis_nodes.py), beside the memory-engine node of run.py's S1/S5 as
the reference:

| target | processes | cores |
|---|---|---|
| ``tidings`` | one, memory engine | core 0 |
| ``tidings-redis`` | one, Redis engine | core 0 |
| ``tidings-w2`` | supervisor + 2 workers, Redis engine | cores 0-1 |

The generator stays on core 1 (run.py's GEN_CORE), so with two workers it shares that core
with worker 1 and with redis-server: on this 2-core machine ``tidings-w2`` has at most ~1.5
cores, not 2. The kernel spreads connections over the workers (``SO_REUSEPORT``), so S1's
one channel has subscribers on both; every publish goes to one worker and reaches the other
through Redis.

S6w: ``--conns`` connections (default 100,000) on one channel, held by ``--workers`` workers
(default 6: a process may hold 20,000 descriptors here) and by as many generator processes
(``--idle``, each from its own source addresses 127.0.0.x); then one publisher process sends
1 publish/s for 10 s. Figure: p99 (the largest of the generators' p99s), loss over all of
them, and the server's memory per connection (RSS of supervisor + workers, after minus
before, over the connections).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from redis_nodes import Listener, RedisServer  # benchmarks/, beside this file
from run import (
    GEN_CORE,
    P99_BAR_MS,
    TIDINGS_CONFIG,
    Running,
    Target,
    loadgen,
    loadgen_args,
    rss_kib,
    s1_fanout,
    s5_connect_storm,
    tidings_target,
)

HERE = Path(__file__).resolve().parent


def target(name: str, redis: RedisServer | None, workers: int = 1,
           cores: str = "0") -> Target:
    cfg: dict[str, Any] = json.loads(json.dumps(TIDINGS_CONFIG))
    if redis is not None:
        cfg["engine"] = {"type": "redis", "redis": {"address": [redis.url], "prefix": name}}
    path = Path(tempfile.gettempdir()) / f"tidings-bench-{name}.json"
    path.write_text(json.dumps(cfg))
    t = tidings_target(path)
    t.name = name
    if workers > 1:  # widened from run.py's core 0 by a second taskset
        t.cmd = ["taskset", "-c", cores, *t.cmd, "--workers", str(workers)]
    t.started_line = "tidings listening on"  # every worker listens (the supervisor's line)
    return t


def s1w(redis: RedisServer, quick: bool) -> list[tuple[str, dict[str, Any]]]:
    rows = []
    for t in (target("tidings", None), target("tidings-redis", redis),
              target("tidings-w2", redis, workers=2, cores="0,1")):
        rows.append((t.name, {"S1": s1_fanout(t, quick), "S5": s5_connect_storm(t, quick)}))
    return rows


def s6w(redis: RedisServer, conns: int, workers: int, quick: bool,
        rate: float = 1.0) -> dict[str, Any]:
    gens = max(1, -(-conns // 17000))  # generator processes, each under the descriptor limit
    per = [conns // gens + (1 if i < conns % gens else 0) for i in range(gens)]
    t = target(f"tidings-w{workers}", redis, workers=workers, cores="0,1")
    running = Running(t)
    listeners: list[Listener] = []
    try:
        time.sleep(1.0)
        before = rss_kib(running.proc.pid)
        started = time.monotonic()
        for i, n in enumerate(per):
            argv = loadgen_args(running, conns=n, channels=1, idle=900, max_seconds=1200)
            argv = _sources(argv, [f"127.0.{1 + i}.{k}" for k in range(1, 5)])
            # paced, so a busy machine does not time handshakes out (10 s by default)
            argv += ["--connect-rate", "1000", "--max-pending", "300",
                     "--handshake-timeout", "30", "--warmup", "60"]
            listeners.append(Listener(argv, n))
        for listener in listeners:
            listener.wait_subscribed(600)
        connect_s = time.monotonic() - started
        time.sleep(2.0)
        after = rss_kib(running.proc.pid)
        duration = max(10 if not quick else 3, 3 / rate)
        redis_cpu = redis.cpu_seconds()
        pub = loadgen(running, conns=1, channels=1, rate=rate, duration=duration,
                      max_seconds=int(duration) + 120)
        published = pub["published"]
        for listener, n in zip(listeners, per, strict=True):
            listener.wait_received(published * n, 60)
        redis_cpu = redis.cpu_seconds() - redis_cpu
        results = [listener.finish() for listener in listeners]
    finally:
        for listener in listeners:
            listener.kill()
        running.stop()
    expected = sum(published * n for n in per)
    received = sum(r["received"] for r in results)
    p99 = max([r["lat_ms"]["p99"] for r in results] + [pub["lat_ms"]["p99"]])
    return {"conns": conns, "workers": workers, "generators": gens, "rate": rate,
            "subscribed": sum(r["subscribed"] for r in results), "published": published,
            "expected": expected, "received": received,
            "loss": 1 - received / expected if expected else None, "p99": p99,
            "p50": max(r["lat_ms"]["p50"] for r in results), "connect_s": round(connect_s, 1),
            "kib_per_conn": round((after - before) / conns, 2), "rss_mib": after // 1024,
            "redis_cpu_s": round(redis_cpu, 2), "publish_s": round(duration, 1),
            "passes": p99 <= P99_BAR_MS and received == expected}


def _sources(argv: list[str], ips: list[str]) -> list[str]:
    """``argv`` connecting from ``ips`` (its own 4-tuples: each process gets other addresses)."""
    if "--source-ips" in argv:
        i = argv.index("--source-ips")
        return [*argv[:i], "--source-ips", ",".join(ips), *argv[i + 2:]]
    return [*argv, "--source-ips", ",".join(ips)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scenarios", default="S1w,S6w")
    parser.add_argument("--conns", type=int, default=100000)
    parser.add_argument("--workers", type=int, default=6)
    parser.add_argument("--rate", type=float, default=1.0, help="S6w publishes/s (1)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--json", default=str(HERE / "results" / "workers.jsonl"))
    args = parser.parse_args()
    redis = RedisServer(core=f"0,{GEN_CORE}")
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with out.open("a") as jsonl:
            def record(scen: str, name: str, res: dict[str, Any]) -> None:
                line = {"scenario": scen, "target": name,
                        "at": time.strftime("%Y-%m-%d %H:%M"), **res}
                jsonl.write(json.dumps(line) + "\n")
                jsonl.flush()
                print(json.dumps(line)[:600])

            if "S1w" in args.scenarios:
                for name, res in s1w(redis, args.quick):
                    record("S1w", name, {"deliveries_per_s": res["S1"]["figure"],
                                         "steps": res["S1"]["steps"]})
                    record("S5w", name, res["S5"])
            if "S6w" in args.scenarios:
                conns = args.conns if not args.quick else 20000
                record("S6w", f"tidings-w{args.workers}", s6w(redis, conns, args.workers,
                                                              args.quick, args.rate))
    finally:
        redis.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
