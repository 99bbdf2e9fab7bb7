"""The side-by-side benchmark suite: one command, every target, every scenario, one table.

    python benchmarks/run.py                 # everything (installs peers, builds the generator)
    python benchmarks/run.py --quick         # fewer steps, shorter runs
    python benchmarks/run.py --targets tidings,raw --scenarios S1,S3

Each target runs pinned to core 0, the C load generator (benchmarks/loadgen) to core 1. Figures
are measured in one run, and the table reports ratios against Tidings, because absolute numbers
drift between runs on a shared machine. Every loop is bounded; everything targets 127.0.0.1.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
LOADGEN = HERE / "loadgen" / "loadgen"
SERVER_CORE, GEN_CORE = "0", "1"
P99_BAR_MS = 200.0


# ---------------------------------------------------------------------------- targets


@dataclass
class Target:
    name: str
    cmd: list[str]  # "{port}" is replaced
    path: str  # WebSocket path; "{ch}" is replaced per connection by the generator
    init: list[str]  # frames the generator sends after the handshake ("{ch}", "{tok}")
    ready: str  # substring of the frame that confirms the subscription
    pub_path: str  # "{ch}" replaced by the generator
    pub_body: str  # "{ts}" and "{ch}" replaced by the generator
    pong_rules: list[str] = field(default_factory=list)
    pub_headers: list[str] = field(default_factory=list)
    init_after_first: bool = False
    cwd: Path = ROOT
    env: dict[str, str] = field(default_factory=dict)
    jwt: bool = False  # S5 connects with a JWT per connection


TIDINGS_CONFIG = {
    "client": {"token": {"hmac_secret_key": "bench-secret-0123456789-0123456789-abcdef"}},
    "http_api": {"key": "bench"},
    "channel": {"without_namespace": {"allow_subscribe_for_client": True}},
    "log_level": "warning",
}


def tidings_target(config_path: Path) -> Target:
    return Target(
        name="tidings",
        cmd=[sys.executable, "-m", "tidings", "serve", "--config", str(config_path),
             "--port", "{port}"],
        path="/connection/websocket",
        init=['{"id":1,"connect":{"token":"{tok}"}}',
              '{"id":2,"subscribe":{"channel":"bench{ch}"}}'],
        ready='"id":2',
        pong_rules=["{}={}"],
        pub_path="/api/publish",
        pub_body='{"channel":"bench{ch}","data":{"ts":{ts}}}',
        pub_headers=["X-API-Key: bench", "Content-Type: application/json"],
        jwt=True,
    )


def raw_target() -> Target:
    return Target(
        name="raw",
        cmd=[sys.executable, str(HERE / "raw_server" / "raw_server.py"), "--port", "{port}"],
        path="/",
        init=["sub"],
        ready="ok",
        pub_path="/publish",
        pub_body='{"ts":{ts}}',
    )


def peer_targets() -> list[Target]:
    """The peers (benchmarks/peers/README.md documents each one's frames)."""
    peers = HERE / "peers"
    spec_file = peers / "targets.json"
    if not spec_file.exists():
        return []
    targets = []
    for spec in json.loads(spec_file.read_text()):
        spec["cwd"] = peers / spec.pop("dir", ".")
        spec["cmd"] = [sys.executable if c == "{python}" else c for c in spec["cmd"]]
        targets.append(Target(**spec))
    return targets


# ---------------------------------------------------------------------------- processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"target exited with {proc.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"port {port} did not open within {timeout}s")


def rss_kib(pid: int) -> int:
    """RSS of a process and its children (uvicorn/daphne may fork a worker)."""
    total = 0
    pids = [pid]
    children = Path(f"/proc/{pid}/task/{pid}/children")
    if children.exists():
        pids += [int(p) for p in children.read_text().split()]
    for p in pids:
        try:
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


class Running:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.port = free_port()
        cmd = ["taskset", "-c", SERVER_CORE] + [c.replace("{port}", str(self.port))
                                                 for c in target.cmd]
        env = {**os.environ, **target.env}
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, cwd=target.cwd, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        wait_port(self.port, self.proc)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


def tokens_file(n: int) -> Path:
    import jwt

    secret = TIDINGS_CONFIG["client"]["token"]["hmac_secret_key"]  # type: ignore[index]
    path = Path(tempfile.gettempdir()) / f"tidings-bench-tokens-{n}.txt"
    if not path.exists():
        now = int(time.time())
        lines = [jwt.encode({"sub": str(i), "iat": now}, secret, algorithm="HS256")
                 for i in range(n)]
        path.write_text("\n".join(lines) + "\n")
    return path


def loadgen(running: Running, *, conns: int, channels: int = 1, rate: float = 0,
            duration: float = 0, idle: float = 0, jwt: bool = False,
            max_seconds: float = 120, pub_conns: int = 1) -> dict[str, Any]:
    t = running.target
    args = ["taskset", "-c", GEN_CORE, str(LOADGEN), "--host", "127.0.0.1",
            "--port", str(running.port), "--path", t.path, "--conns", str(conns),
            "--channels", str(channels), "--ready", t.ready,
            "--max-seconds", str(max_seconds)]
    for frame in t.init:
        args += ["--init", frame]
    if t.init_after_first:
        args.append("--init-after-first")
    for rule in t.pong_rules:
        args += ["--pong-rule", rule]
    if t.name == "tidings":
        args += ["--tokens", str(tokens_file(max(conns, 1)))]
    if conns > 15000:  # past one source address's ephemeral port range
        args += ["--source-ips", ",".join(f"127.0.0.{i}" for i in range(1, 9))]
    if idle:
        args += ["--idle", str(idle)]
    else:
        args += ["--pub-host", "127.0.0.1", "--pub-port", str(running.port),
                 "--pub-path", t.pub_path, "--pub-body", t.pub_body,
                 "--rate", str(rate), "--duration", str(duration),
                 "--pub-conns", str(pub_conns)]
        for header in t.pub_headers:
            args += ["--pub-header", header]
    out = subprocess.run(args, capture_output=True, text=True, timeout=max_seconds + 30)
    try:
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise RuntimeError(f"loadgen failed: {out.stderr[-2000:]}") from None
    return result


# ---------------------------------------------------------------------------- scenarios


def passes(r: dict[str, Any]) -> bool:
    """Zero loss, p99 within the bar, everyone subscribed, and the publisher kept its rate
    (a server that slows its publisher down must not look lossless)."""
    kept_rate = r["published"] >= 0.95 * r["rate"] * r["duration_s"]
    return (r["loss"] == 0 and r["lat_ms"]["p99"] <= P99_BAR_MS
            and r["subscribed"] == r["conns"] and kept_rate)


def s1_fanout(t: Target, quick: bool) -> dict[str, Any]:
    """2,000 subscribers on one channel, publish rate stepped up; best passing deliveries/s."""
    conns = 2000
    rates = [5, 10, 20, 40, 80, 150, 300, 600] if not quick else [10, 40, 150]
    best: dict[str, Any] | None = None
    steps = []
    for rate in rates:
        running = Running(t)
        try:
            r = loadgen(running, conns=conns, rate=rate, duration=4 if not quick else 2)
        finally:
            running.stop()
        steps.append({"rate": rate, "deliveries_per_s": r["deliveries_per_s"],
                      "p99": r["lat_ms"]["p99"], "loss": r["loss"],
                      "gen_cpu_pct": r.get("gen_cpu_pct")})
        if not passes(r):
            break
        best = r
    return {"figure": best["deliveries_per_s"] if best else 0.0, "steps": steps,
            "best": best, "gen_cpu_pct": (best or r).get("gen_cpu_pct")}


def s2_latency(t: Target, quick: bool) -> dict[str, Any]:
    running = Running(t)
    try:
        r = loadgen(running, conns=1000, rate=20, duration=10 if not quick else 4)
    finally:
        running.stop()
    return {"p50": r["lat_ms"]["p50"], "p99": r["lat_ms"]["p99"], "loss": r["loss"],
            "gen_cpu_pct": r.get("gen_cpu_pct"), "raw": r}


def s3_memory(t: Target, quick: bool) -> dict[str, Any]:
    n = 10000 if not quick else 3000
    running = Running(t)
    try:
        time.sleep(0.5)
        before = rss_kib(running.proc.pid)
        r = loadgen(running, conns=n, idle=3)
        after = rss_kib(running.proc.pid)
    finally:
        running.stop()
    return {"kib_per_conn": (after - before) / max(r["subscribed"], 1),
            "subscribed": r["subscribed"], "rss_before_kib": before, "rss_after_kib": after}


def s4_channels(t: Target, quick: bool) -> dict[str, Any]:
    conns = 2000
    rates = [1000, 2000, 4000, 8000, 12000, 16000, 24000] if not quick else [1000, 4000]
    best: dict[str, Any] | None = None
    steps = []
    for rate in rates:
        running = Running(t)
        try:
            # several publisher connections: one sequential publisher is bound by its
            # round-trip time (~6k/s), not by the server
            r = loadgen(running, conns=conns, channels=conns, rate=rate,
                        duration=4 if not quick else 2, pub_conns=8)
        finally:
            running.stop()
        steps.append({"rate": rate, "p99": r["lat_ms"]["p99"], "loss": r["loss"],
                      "published": r["published"], "gen_cpu_pct": r.get("gen_cpu_pct")})
        if not passes(r):
            break
        best = r
    return {"figure": rate_of(best), "steps": steps,
            "gen_cpu_pct": (best or r).get("gen_cpu_pct")}


def rate_of(r: dict[str, Any] | None) -> float:
    """The publish rate a passing step was asked for (it kept >= 95% of it)."""
    if r is None:
        return 0.0
    return float(r["rate"])


def s5_connect_storm(t: Target, quick: bool) -> dict[str, Any]:
    n = 10000 if not quick else 3000
    running = Running(t)
    try:
        r = loadgen(running, conns=n, idle=0.5, jwt=t.jwt)
    finally:
        running.stop()
    return {"seconds": r["subscribe_time_s"], "subscribed": r["subscribed"], "jwt": t.jwt}


def s6_scale(t: Target, quick: bool) -> dict[str, Any]:
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    # 100,000 is the goal; a process here may hold only RLIMIT_NOFILE descriptors (hard limit),
    # for the server and the generator alike.
    n = min(100000, hard - 1000) if not quick else 5000
    running = Running(t)
    try:
        r = loadgen(running, conns=n, rate=1, duration=10 if not quick else 3, max_seconds=240)
    finally:
        running.stop()
    return {"conns": n, "subscribed": r["subscribed"], "p99": r["lat_ms"]["p99"],
            "loss": r["loss"], "fd_hard_limit": hard, "gen_cpu_pct": r.get("gen_cpu_pct")}


SCENARIOS = {"S1": s1_fanout, "S2": s2_latency, "S3": s3_memory, "S4": s4_channels,
             "S5": s5_connect_storm, "S6": s6_scale}


# ---------------------------------------------------------------------------- main


def build_loadgen() -> None:
    src = HERE / "loadgen" / "loadgen.c"
    if not LOADGEN.exists() or LOADGEN.stat().st_mtime < src.stat().st_mtime:
        subprocess.run(["cc", "-O2", "-o", str(LOADGEN), str(src), "-lm"], check=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--targets", default="")
    parser.add_argument("--scenarios", default="S1,S2,S3,S4,S5,S6")
    parser.add_argument("--no-install", action="store_true")
    parser.add_argument("--json", default=str(HERE / "results" / "latest.jsonl"))
    args = parser.parse_args()
    if not shutil.which("taskset"):
        print("taskset is required (util-linux)", file=sys.stderr)
        return 2
    build_loadgen()
    if not args.no_install and (HERE / "peers" / "install.sh").exists():
        subprocess.run(["bash", str(HERE / "peers" / "install.sh")], check=True)
    cfg = Path(tempfile.gettempdir()) / "tidings-bench.json"
    cfg.write_text(json.dumps(TIDINGS_CONFIG))
    targets = [tidings_target(cfg), raw_target(), *peer_targets()]
    if args.targets:
        wanted = set(args.targets.split(","))
        targets = [t for t in targets if t.name in wanted]
    scenarios = [s for s in args.scenarios.split(",") if s]
    results: dict[str, dict[str, Any]] = {}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with out.open("w") as jsonl:
        for scen in scenarios:
            for t in targets:
                if scen == "S6" and t.name not in ("tidings", "raw"):
                    continue  # the peers already miss the bar at 2,000 connections
                if scen == "S4" and t.name == "raw":
                    continue  # the raw baseline has one channel
                try:
                    res = SCENARIOS[scen](t, args.quick)
                except Exception as exc:  # a failing peer must not stop the suite
                    res = {"error": str(exc)}
                results.setdefault(scen, {})[t.name] = res
                line = {"scenario": scen, "target": t.name, **res}
                jsonl.write(json.dumps(line) + "\n")
                jsonl.flush()
                print(json.dumps(line)[:400], file=sys.stderr)
    print(render_table(results, time.monotonic() - started))
    return 0


def render_table(results: dict[str, dict[str, Any]], elapsed: float) -> str:
    lines = [
        f"Run {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC on {platform.node()} "
        f"({os.cpu_count()} cores, Python {platform.python_version()}), {elapsed:.0f} s",
        "",
        "| scenario | target | figure | tidings is N x better | detail |",
        "|---|---|---:|---:|---|",
    ]
    keys = {"S1": ("figure", "deliveries/s"), "S2": ("p99", "ms p99"),
            "S3": ("kib_per_conn", "KiB/conn"), "S4": ("figure", "publishes/s"),
            "S5": ("seconds", "s"), "S6": ("p99", "ms p99")}
    for scen, per_target in results.items():
        key, unit = keys[scen]
        base = per_target.get("tidings", {}).get(key)
        for name, res in per_target.items():
            if "error" in res:
                lines.append(f"| {scen} | {name} | error | | {res['error'][:80]} |")
                continue
            value = res.get(key)
            # "how many times better Tidings is": higher-is-better figures divide Tidings by the
            # peer, lower-is-better ones (latency, memory, time) divide the peer by Tidings.
            lower_better = scen in ("S2", "S3", "S5", "S6")
            ratio = ""
            if base and value:
                ratio = f"{(value / base) if lower_better else (base / value):.2f}x"
            detail = {k: v for k, v in res.items() if k not in ("steps", "best", "raw", key)}
            lines.append(f"| {scen} | {name} | {value if value is not None else ''} {unit} "
                         f"| {ratio} | {json.dumps(detail)[:120]} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
