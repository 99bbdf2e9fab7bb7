"""The side-by-side benchmark suite: one command, every target, every scenario, one table.

    python benchmarks/run.py                 # everything (installs peers, builds the generator)
    python benchmarks/run.py --quick         # fewer steps, shorter runs
    python benchmarks/run.py --targets tidings,raw --scenarios S1,S3
    python benchmarks/run.py --scenarios S7  # Redis engine, two nodes, vs memory (README: S7)
    python benchmarks/run.py --scenarios S8  # SSE and HTTP-streaming vs WebSocket (README: S8)

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
import threading
import time
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from redis_nodes import (  # benchmarks/redis_nodes.py, beside this file
    BENIGN_NODE_LINES,
    BENIGN_REDIS_LINES,
    Listener,
    RedisServer,
    notable_lines,
)

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
    transport: str = "ws"  # loadgen --transport: ws, uni_http_stream, uni_sse (S8)
    body: str = ""  # uni_http_stream request body ("{tok}" replaced)
    token_channels: bool = False  # JWTs carry "channels": ["bench<i % channels>"] (uni streams)
    scrape: str = ""  # a path GET once a second while the target runs (e.g. /metrics)
    # Started once its output has this (with --workers the port answers as soon as one
    # worker listens; the supervisor prints the start-up line when all do).
    started_line: str = ""


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


def metrics_target(config_path: Path) -> Target:
    """Tidings with ``prometheus.enabled``, scraped once a second the way Prometheus would
    (the node always counts; this adds serving /metrics under load)."""
    cfg = json.loads(json.dumps(TIDINGS_CONFIG))
    cfg["prometheus"] = {"enabled": True}
    path = config_path.with_name("tidings-bench-metrics.json")
    path.write_text(json.dumps(cfg))
    target = tidings_target(path)
    target.name = "tidings+metrics"
    target.scrape = "/metrics"
    return target


def asgi_target(config_path: Path) -> Target:
    """Tidings mounted as an ASGI app on uvicorn (``asgi_app.py``): the ASGI bridge's cost."""
    target = tidings_target(config_path)
    target.name = "tidings-asgi"
    target.cmd = [sys.executable, str(HERE / "asgi_app.py"), "--config", str(config_path),
                  "--port", "{port}"]
    return target


def baseline_target(config_path: Path, ref: str) -> Target:
    """Tidings as of git ``ref`` (a worktree under the temp dir, imported through PYTHONPATH):
    "before" beside "after" in one run, so a change's cost is a same-run ratio."""
    tree = Path(tempfile.gettempdir()) / f"tidings-baseline-{ref.replace('/', '_')}"
    if not tree.exists():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(tree),
                        ref], check=True, capture_output=True)
    target = tidings_target(config_path)
    target.name = f"tidings@{ref}"
    target.cwd = tree
    target.env = {"PYTHONPATH": str(tree / "src")}
    return target


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


def stop_group(proc: subprocess.Popen[Any]) -> None:
    """End a process started in its own session (and its children): TERM, then KILL."""
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


class Running:
    def __init__(self, target: Target) -> None:
        self.target = target
        self.port = free_port()
        self.scrapes = 0
        self._stopping = threading.Event()
        self._scraper: threading.Thread | None = None
        cmd = ["taskset", "-c", SERVER_CORE] + [c.replace("{port}", str(self.port))
                                                 for c in target.cmd]
        env = {**os.environ, **target.env}
        self.log = tempfile.TemporaryFile()
        self.proc = subprocess.Popen(cmd, cwd=target.cwd, env=env, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        try:
            wait_port(self.port, self.proc)
            if target.started_line:
                self._wait_output(target.started_line.encode())
        except BaseException as exc:
            output = self.stop()  # a target that never opened its port must not outlive the run
            if isinstance(exc, RuntimeError):
                raise RuntimeError(f"{exc}; output: {output[-1000:]}") from None
            raise
        if target.scrape:
            self._scraper = threading.Thread(target=self._scrape_forever, daemon=True)
            self._scraper.start()

    def _wait_output(self, text: bytes, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.log.seek(0)
            if text in self.log.read():
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"target exited with {self.proc.returncode}")
            time.sleep(0.1)
        raise RuntimeError(f"{text.decode()!r} not printed within {timeout}s")

    def _scrape_forever(self) -> None:
        url = f"http://127.0.0.1:{self.port}{self.target.scrape}"
        while not self._stopping.wait(1.0):
            try:
                with urllib.request.urlopen(url, timeout=5) as resp:
                    resp.read()
                self.scrapes += 1
            except OSError:
                pass

    def stop(self) -> str:
        """Stop the target (its whole process group); returns what it wrote to stdout/stderr."""
        self._stopping.set()
        if self._scraper is not None:
            self._scraper.join(10)
        stop_group(self.proc)
        if self.log.closed:
            return ""
        self.log.seek(0)
        output = self.log.read().decode(errors="replace")
        self.log.close()
        return output


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


def uni_tokens_file(n: int, channels: int) -> Path:
    """JWTs for unidirectional streams: line i subscribes server-side to bench<i % channels>
    (the generator gives connection i line i % n, and puts it on channel i % channels)."""
    import jwt

    secret = TIDINGS_CONFIG["client"]["token"]["hmac_secret_key"]  # type: ignore[index]
    path = Path(tempfile.gettempdir()) / f"tidings-bench-uni-tokens-{n}-{channels}.txt"
    if not path.exists():
        now = int(time.time())
        lines = [jwt.encode({"sub": str(i), "iat": now, "channels": [f"bench{i % channels}"]},
                            secret, algorithm="HS256") for i in range(n)]
        path.write_text("\n".join(lines) + "\n")
    return path


def loadgen(running: Running, *, conns: int, channels: int = 1, rate: float = 0,
            duration: float = 0, idle: float = 0, jwt: bool = False,
            max_seconds: float = 120, pub_conns: int = 1,
            pub_port: int | None = None, pub_count: int = 1,
            pub_pipeline: int = 1) -> dict[str, Any]:
    """Run the generator against ``running`` (publishing to ``pub_port`` if given, another
    node of the same cluster) and return its JSON result."""
    args = loadgen_args(running, conns=conns, channels=channels, rate=rate, duration=duration,
                        idle=idle, max_seconds=max_seconds, pub_conns=pub_conns,
                        pub_port=pub_port, pub_count=pub_count, pub_pipeline=pub_pipeline)
    out = subprocess.run(args, capture_output=True, text=True, timeout=max_seconds + 30)
    try:
        result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    except (IndexError, ValueError):
        raise RuntimeError(f"loadgen failed: {out.stderr[-2000:]}") from None
    return result


def loadgen_args(running: Running, *, conns: int, channels: int = 1, rate: float = 0,
                 duration: float = 0, idle: float = 0, max_seconds: float = 120,
                 pub_conns: int = 1, pub_port: int | None = None, pub_pipeline: int = 1,
                 pub_count: int = 1) -> list[str]:
    """The generator's command line (pinned to GEN_CORE) for one run against ``running``."""
    t = running.target
    args = ["taskset", "-c", GEN_CORE, str(LOADGEN), "--host", "127.0.0.1",
            "--port", str(running.port), "--path", t.path, "--conns", str(conns),
            "--channels", str(channels), "--max-seconds", str(max_seconds)]
    if t.ready:  # none (nchan): subscribed once the handshake is done
        args += ["--ready", t.ready]
    for frame in t.init:
        args += ["--init", frame]
    if t.init_after_first:
        args.append("--init-after-first")
    for rule in t.pong_rules:
        args += ["--pong-rule", rule]
    if t.transport != "ws":
        args += ["--transport", t.transport]
    if t.body:
        args += ["--body", t.body]
    if t.token_channels:
        args += ["--tokens", str(uni_tokens_file(max(conns, 1), channels))]
    elif t.jwt:  # Tidings (any S8 row name included); peers have no tokens
        args += ["--tokens", str(tokens_file(max(conns, 1)))]
    if conns > 15000:  # past one source address's ephemeral port range
        args += ["--source-ips", ",".join(f"127.0.0.{i}" for i in range(1, 9))]
    if idle:
        args += ["--idle", str(idle)]
    else:
        args += ["--pub-host", "127.0.0.1",
                 "--pub-port", str(running.port if pub_port is None else pub_port),
                 "--pub-path", t.pub_path, "--pub-body", t.pub_body,
                 "--rate", str(rate), "--duration", str(duration),
                 "--pub-conns", str(pub_conns)]
        if pub_pipeline != 1 or pub_count != 1:
            args += ["--pub-pipeline", str(pub_pipeline), "--pub-count", str(pub_count)]
        for header in t.pub_headers:
            args += ["--pub-header", header]
    return args


# ---------------------------------------------------------------------------- scenarios


def passes(r: dict[str, Any]) -> bool:
    """Zero loss, p99 within the bar, everyone subscribed, and the publisher kept its rate
    (a server that slows its publisher down must not look lossless)."""
    kept_rate = r["published"] >= 0.95 * r["rate"] * r["duration_s"]
    return bool(r["loss"] == 0 and r["lat_ms"]["p99"] <= P99_BAR_MS
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


def s4_channels(t: Target, quick: bool, pipeline: int = 1) -> dict[str, Any]:
    conns = 2000
    rates = ([1000, 2000, 4000, 8000, 12000, 16000, 24000, 32000, 48000, 64000] if not quick
             else [1000, 4000])
    best: dict[str, Any] | None = None
    steps = []
    for rate in rates:
        running = Running(t)
        try:
            # several publisher connections: one sequential publisher is bound by its
            # round-trip time (~6k/s), not by the server
            r = loadgen(running, conns=conns, channels=conns, rate=rate,
                        duration=4 if not quick else 2, pub_conns=8, pub_pipeline=pipeline)
        finally:
            running.stop()
        steps.append({"rate": rate, "p99": r["lat_ms"]["p99"], "loss": r["loss"],
                      "published": r["published"], "gen_cpu_pct": r.get("gen_cpu_pct")})
        if not passes(r):
            break
        best = r
    return {"figure": rate_of(best), "steps": steps,
            "gen_cpu_pct": (best or r).get("gen_cpu_pct")}


def s4p_pipelined(t: Target, quick: bool) -> dict[str, Any]:
    """S4 with HTTP pipelining: up to 16 publishes in flight on each of the 8 connections
    (every target gets the same load; nginx and Go's net/http read pipelined requests too)."""
    return s4_channels(t, quick, pipeline=16)


S4B_BATCH = 20  # publishes per /api/batch request in S4b


def s4b_batch(t: Target, quick: bool) -> dict[str, Any]:
    """S4's load through the batch API (Tidings only): each request is a /api/batch of
    S4B_BATCH publishes to its channel, 8 connections, one request in flight on each; the
    figure is publications/s (requests/s x S4B_BATCH) at the best passing step."""
    conns = 2000
    one = '{"publish":{"channel":"bench{ch}","data":{"ts":{ts}}}}'
    batch = Target(**{**t.__dict__, "pub_path": "/api/batch",
                      "pub_body": '{"commands":[' + ",".join([one] * S4B_BATCH) + "]}"})
    rates = [250, 500, 1000, 1500, 2000, 3000, 4000, 6000] if not quick else [250, 1000]
    best: dict[str, Any] | None = None
    steps = []
    for rate in rates:
        running = Running(batch)
        try:
            r = loadgen(running, conns=conns, channels=conns, rate=rate,
                        duration=4 if not quick else 2, pub_conns=8, pub_count=S4B_BATCH)
        finally:
            running.stop()
        kept = r["pub_requests"] >= 0.95 * rate * r["duration_s"]
        ok = (r["loss"] == 0 and r["lat_ms"]["p99"] <= P99_BAR_MS and kept
              and r["subscribed"] == r["conns"])
        steps.append({"rate": rate, "publications": r["published"], "p99": r["lat_ms"]["p99"],
                      "loss": r["loss"], "gen_cpu_pct": r.get("gen_cpu_pct"), "passes": ok})
        if not ok:
            break
        best = r
    return {"figure": rate_of(best) * S4B_BATCH, "batch": S4B_BATCH, "steps": steps,
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
             "S4p": s4p_pipelined, "S4b": s4b_batch, "S5": s5_connect_storm, "S6": s6_scale}


# ---------------------------------------------------------------------------- S7: Redis engine
#
# Two Tidings nodes on the Redis engine sharing one redis-server, beside one node on the memory
# engine (the S1-S4 config), stepped side by side in one run: at each rate the memory node runs,
# then the Redis pair, and each stops at its first failing step. Nodes and redis-server are
# pinned to SERVER_CORE (the same core the memory node gets alone: the ratio is what Redis costs
# on the same hardware, not what a second core would add), every generator to GEN_CORE.

S7_FANOUT_CONNS = 1000  # S7a: subscribers on one channel, half on each node
S7_CHANNEL_CONNS = 2000  # S7b: clients each on its own channel, as in S4
# Publisher connections (one request in flight on each). A publish through the Redis engine
# answers after a Redis round trip, so one sequential publisher (S1) or 8 (S4) would measure
# the generator's requests in flight rather than the servers (S7a with 4: the Redis pair failed
# 400/s on skipped publishes at zero loss, with 16 it passed); both configs get the same.
S7_FANOUT_PUB_CONNS, S7_CHANNEL_PUB_CONNS = 16, 32
S7_MEMORY, S7_REDIS = "tidings", "tidings-redis-2n"


def redis_config(url: str) -> dict[str, Any]:
    return {**TIDINGS_CONFIG,
            "engine": {"type": "redis", "redis": {"address": [url], "prefix": "bench"}}}


class Cluster:
    """The server side of one S7 step: ``nodes`` Tidings processes of one target (one memory
    node, or two Redis nodes sharing redis-server). ``a`` takes the publishes, ``b`` the
    subscribers that must be reached across nodes (the same process when there is one)."""

    def __init__(self, target: Target, nodes: int) -> None:
        self.nodes: list[Running] = []
        try:
            for _ in range(nodes):
                self.nodes.append(Running(target))
        except BaseException:
            self.stop()
            raise

    @property
    def a(self) -> Running:
        return self.nodes[0]

    @property
    def b(self) -> Running:
        return self.nodes[-1]

    def stop(self) -> list[str]:
        """Stop every node; returns the log lines a healthy node does not write."""
        lines = []
        for name, node in zip("AB", self.nodes, strict=False):
            output = node.stop()
            lines += [f"node {name}: {line}" for line in notable_lines(output, BENIGN_NODE_LINES)]
        return lines


def warm_up(node: Running, n: int) -> None:
    """``n`` concurrent publishes to an unwatched channel before measuring: a fresh node on the
    Redis engine opens its command connections on first use (~25 ms each on an idle machine),
    which would otherwise land inside the measured window (the memory node gets the same)."""
    t = node.target
    headers = dict(h.split(": ", 1) for h in t.pub_headers)

    def publish(i: int) -> None:
        body = json.dumps({"channel": "warmup", "data": {"i": i}}).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{node.port}{t.pub_path}", data=body,
                                     headers=headers)
        with urllib.request.urlopen(req, timeout=10) as resp:
            answer = resp.read()
        if b'"error"' in answer:
            raise RuntimeError(f"warm-up publish failed: {answer[:200]!r}")

    with ThreadPoolExecutor(n) as pool:
        list(pool.map(publish, range(n)))


def s7_fanout_step(cluster: Cluster, rate: float, duration: float) -> dict[str, Any]:
    """S7a, one step: half of the subscribers on node A, the other half on node B held by a
    second (listening) generator; node A's API takes the publishes. Both halves are counted."""
    half = S7_FANOUT_CONNS // 2
    n_b = S7_FANOUT_CONNS - half
    listener = Listener(loadgen_args(cluster.b, conns=n_b, idle=duration + 60,
                                     max_seconds=duration + 90), n_b)
    try:
        listener.wait_subscribed(30)
        warm_up(cluster.a, S7_FANOUT_PUB_CONNS)
        ra = loadgen(cluster.a, conns=half, rate=rate, duration=duration,
                     pub_conns=S7_FANOUT_PUB_CONNS)
        # A's generator stops when its half has everything (or after its drain); B's gets
        # the same bounded wait on top.
        listener.wait_received(ra["published"] * n_b, 2.0)
        rb = listener.finish()
    finally:
        listener.kill()
    expected_b = ra["published"] * rb["subscribed"]
    expected = ra["expected"] + expected_b
    received = ra["received"] + rb["received"]
    # over the window A's generator used for its own rate (publish start to last receipt)
    window = ra["received"] / ra["deliveries_per_s"] if ra["deliveries_per_s"] else 0.0
    window = max(window, ra["duration_s"])
    merged = {
        "rate": ra["rate"], "duration_s": ra["duration_s"], "published": ra["published"],
        "conns": ra["conns"] + rb["conns"], "subscribed": ra["subscribed"] + rb["subscribed"],
        "expected": expected, "received": received,
        "loss": round((expected - received) / expected, 6) if expected else 0.0,
        "deliveries_per_s": round(received / window, 1) if window else 0.0,
        # each half has its own histogram; the p-th percentile of the whole lies between the
        # halves' ones, so the larger is a bound (the pass rule uses it)
        "lat_ms": {q: max(ra["lat_ms"][q], rb["lat_ms"][q]) for q in ("p50", "p99")},
        "lat_ms_a": {q: ra["lat_ms"][q] for q in ("p50", "p99")},
        "lat_ms_b": {q: rb["lat_ms"][q] for q in ("p50", "p99")},
        "loss_b": round((expected_b - rb["received"]) / expected_b, 6) if expected_b else 0.0,
        "errors": {"a": ra.get("errors", {}), "b": rb.get("errors", {})},
        "pub_rtt_p99_ms": ra.get("pub_rtt_ms", {}).get("p99"),
        "gen_cpu_pct": ra.get("gen_cpu_pct"),
    }
    return merged


def s7_channels_step(cluster: Cluster, rate: float, duration: float) -> dict[str, Any]:
    """S7b, one step: S4's load (more publisher connections, see S7_CHANNEL_PUB_CONNS) with
    every subscriber on node B and the publishes through node A's API, so each publication
    crosses Redis (the memory config: one node, as S4)."""
    warm_up(cluster.a, S7_CHANNEL_PUB_CONNS)
    r = loadgen(cluster.b, conns=S7_CHANNEL_CONNS, channels=S7_CHANNEL_CONNS, rate=rate,
                duration=duration, pub_conns=S7_CHANNEL_PUB_CONNS, pub_port=cluster.a.port)
    r["pub_rtt_p99_ms"] = r.get("pub_rtt_ms", {}).get("p99")
    r["p99"] = r["lat_ms"]["p99"]
    return r


S7Step = Callable[[Cluster, float, float], dict[str, Any]]


def s7_stepped(configs: dict[str, tuple[Target, int]], redis: RedisServer, rates: list[float],
               step: S7Step, duration: float,
               keep: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """Step every config through ``rates`` side by side; a config stops at its first failing
    step. Returns per config: the best passing step, every step (``keep`` fields), the first
    step in full, and the node/redis log lines worth reading."""
    out: dict[str, dict[str, Any]] = {
        name: {"best": None, "steps": [], "first": None, "logs": []} for name in configs}
    active = list(configs)
    for rate in rates:
        for name in list(active):
            target, n_nodes = configs[name]
            state = out[name]
            if n_nodes > 1:
                redis.flushall()
            cpu0 = redis.cpu_seconds() if n_nodes > 1 else 0.0
            cluster: Cluster | None = None
            logs: list[str] = []
            try:
                cluster = Cluster(target, n_nodes)
                r = step(cluster, rate, duration)
            except Exception as exc:
                state["error"] = f"rate {rate}: {exc}"
                active.remove(name)
                continue
            finally:
                if cluster is not None:
                    logs = cluster.stop()
                state["logs"] += [f"rate {rate}: {line}" for line in logs]
            row = {k: r.get(k) for k in keep}
            row["rate"] = rate
            if n_nodes > 1:
                row["redis_cpu_s"] = round(redis.cpu_seconds() - cpu0, 2)
            if logs:
                row["node_log_lines"] = len(logs)
            state["steps"].append(row)
            if state["first"] is None:
                state["first"] = r
            if not passes(r):
                active.remove(name)
                continue
            state["best"] = r
    return out


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def s7_redis(t: Target, quick: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """S7: rows (scenario, target, result) for S7a (fan-out), S7a-lat, S7b (channels)."""
    rows: list[tuple[str, str, dict[str, Any]]] = []
    # SIGTERM becomes SystemExit, so the finally blocks below stop what S7 started
    previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        redis = RedisServer(SERVER_CORE)
    except BaseException:
        signal.signal(signal.SIGTERM, previous)
        raise
    try:
        cfg = redis.dir / "tidings-redis.json"  # removed with redis-server's directory
        cfg.write_text(json.dumps(redis_config(redis.url)))
        redis_target = tidings_target(cfg)
        configs = {S7_MEMORY: (t, 1), S7_REDIS: (redis_target, 2)}
        duration = 3.0 if not quick else 2.0

        # (a) fan-out; the first step (1,000 subscribers, 20/s) is S2's load: its latency row
        rates_a = [20.0, 100, 200, 400, 800, 1600] if not quick else [20.0, 100, 400]
        keep_a = ("deliveries_per_s", "lat_ms", "lat_ms_a", "lat_ms_b", "loss", "loss_b",
                  "published", "pub_rtt_p99_ms", "gen_cpu_pct", "errors")
        fan = s7_stepped(configs, redis, rates_a, s7_fanout_step, duration, keep_a)
        for name, st in fan.items():
            best, first = st["best"], st["first"]
            res: dict[str, Any] = {
                "figure": best["deliveries_per_s"] if best else 0.0,
                "p50": best["lat_ms"]["p50"] if best else None,
                "p99": best["lat_ms"]["p99"] if best else None,
                "at_rate": best["rate"] if best else None,
                "nodes": configs[name][1], "steps": st["steps"], "logs": st["logs"]}
            if "error" in st:
                res["error"] = st["error"]
            rows.append(("S7a", name, res))
            lat: dict[str, Any] = {"error": st.get("error", "no step ran")}
            if first is not None:
                lat = {"p99": first["lat_ms"]["p99"], "p50": first["lat_ms"]["p50"],
                       "loss": first["loss"], "rate": first["rate"],
                       "p99_a": first["lat_ms_a"]["p99"], "p99_b": first["lat_ms_b"]["p99"]}
            rows.append(("S7a-lat", name, lat))

        # (b) publish throughput across nodes, one channel per client
        rates_b = ([1000.0, 2000, 3000, 4000, 6000, 8000, 12000, 16000] if not quick
                   else [1000.0, 4000])
        keep_b = ("p99", "published", "loss", "pub_rtt_p99_ms", "gen_cpu_pct", "errors")
        chan = s7_stepped(configs, redis, rates_b, s7_channels_step, duration, keep_b)
        for name, st in chan.items():
            # what the server actually took at any step without loss (continuous, unlike
            # the stepped figure)
            took = [row["published"] / duration for row in st["steps"] if row["loss"] == 0]
            res = {"figure": rate_of(st["best"]), "took_max_per_s": round(max(took, default=0)),
                   "nodes": configs[name][1], "steps": st["steps"], "logs": st["logs"]}
            if "error" in st:
                res["error"] = st["error"]
            rows.append(("S7b", name, res))
    finally:
        redis_log = notable_lines(redis.stop(), BENIGN_REDIS_LINES)
        signal.signal(signal.SIGTERM, previous)
    for _scen, name, res in rows:  # the server's log goes with the first Redis row
        if name == S7_REDIS and "logs" in res:
            res["logs"] += [f"redis: {line}" for line in redis_log]
            break
    for _scen, _name, res in rows:
        if res.get("logs"):
            res["log_lines"] = len(res["logs"])
    return rows


# ---------------------------------------------------------------------------- S8: transports
#
# S2's load (1,000 subscribers on one channel, 20 publishes/s through the HTTP API) delivered
# over three transports of the same Tidings node config, one fresh node (memory engine, core 0)
# per transport, one after another in one run: WebSocket (connect + subscribe commands), and
# the unidirectional HTTP-streaming and SSE streams, which subscribe server-side from the JWT's
# "channels" claim. Rows are named by transport; the ratio is against the WebSocket row.

S8_CONFIG = {**TIDINGS_CONFIG, "uni_sse": {"enabled": True},
             "uni_http_stream": {"enabled": True}}
S8_BASE = "websocket"
S8_CONNS, S8_RATE = 1000, 20


def s8_targets(config_path: Path) -> list[Target]:
    ws = tidings_target(config_path)
    ws.name = S8_BASE
    # for the uni streams: the connect reply lists the server-side subscriptions ("subs"), so
    # it confirms the subscription; their pings ({}) need no answer
    http_stream = Target(
        name="uni_http_stream", cmd=ws.cmd, path="/connection/uni_http_stream", init=[],
        ready='"subs"', pub_path=ws.pub_path, pub_body=ws.pub_body,
        pub_headers=ws.pub_headers, transport="uni_http_stream", body='{"token":"{tok}"}',
        token_channels=True)
    sse = Target(
        name="uni_sse", cmd=ws.cmd,
        # cf_connect={"token":"<JWT>"} url-encoded (a JWT is URL-safe as it stands)
        path="/connection/uni_sse?cf_connect=%7B%22token%22%3A%22{tok}%22%7D", init=[],
        ready='"subs"', pub_path=ws.pub_path, pub_body=ws.pub_body,
        pub_headers=ws.pub_headers, transport="uni_sse", token_channels=True)
    return [ws, http_stream, sse]


def s8_transports(quick: bool) -> list[tuple[str, str, dict[str, Any]]]:
    """S8: one row (scenario, transport, result) per transport."""
    cfg = Path(tempfile.gettempdir()) / "tidings-bench-s8.json"
    cfg.write_text(json.dumps(S8_CONFIG))
    duration = 10 if not quick else 4  # as S2
    rows: list[tuple[str, str, dict[str, Any]]] = []
    for t in s8_targets(cfg):
        logs: list[str] = []
        try:
            running = Running(t)
            try:
                r = loadgen(running, conns=S8_CONNS, rate=S8_RATE, duration=duration)
            finally:
                logs = notable_lines(running.stop(), BENIGN_NODE_LINES)
        except Exception as exc:
            rows.append(("S8", t.name, {"error": str(exc), "logs": logs}))
            continue
        res: dict[str, Any] = {
            "p50": r["lat_ms"]["p50"], "p99": r["lat_ms"]["p99"], "loss": r["loss"],
            "subscribed": r["subscribed"], "published": r["published"],
            "received": r["received"], "passes": passes(r), "errors": r.get("errors", {}),
            "gen_cpu_pct": r.get("gen_cpu_pct"), "raw": r, "logs": logs}
        if logs:
            res["log_lines"] = len(logs)
        rows.append(("S8", t.name, res))
    return rows


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
    parser.add_argument("--scenarios", default="S1,S2,S3,S4,S5,S6,S7,S8",
                        help="comma-separated; S7 (Redis engine, two nodes) and S8 (SSE and "
                             "HTTP-streaming vs WebSocket) need only Tidings")
    parser.add_argument("--no-install", action="store_true")
    parser.add_argument("--baseline", default="", metavar="REF[,REF...]",
                        help="also run Tidings as of these git refs (targets tidings@REF), "
                             "for before/after ratios in one run")
    parser.add_argument("--json", default=str(HERE / "results" / "latest.jsonl"))
    args = parser.parse_args()
    if not shutil.which("taskset"):
        print("taskset is required (util-linux)", file=sys.stderr)
        return 2
    build_loadgen()
    scenarios = [s for s in args.scenarios.split(",") if s]
    tidings_only = ("S7", "S8")
    unknown = [s for s in scenarios if s not in SCENARIOS and s not in tidings_only]
    if unknown:
        parser.error(f"unknown scenario(s): {','.join(unknown)}")
    needs_peers = any(s not in tidings_only for s in scenarios)  # S7, S8 run Tidings only
    if needs_peers and not args.no_install and (HERE / "peers" / "install.sh").exists():
        subprocess.run(["bash", str(HERE / "peers" / "install.sh")], check=True)
    cfg = Path(tempfile.gettempdir()) / "tidings-bench.json"
    cfg.write_text(json.dumps(TIDINGS_CONFIG))
    targets = [tidings_target(cfg), metrics_target(cfg), asgi_target(cfg), raw_target(),
               *peer_targets()]
    refs = [ref for ref in args.baseline.split(",") if ref]
    for i, ref in enumerate(refs):
        targets.insert(1 + i, baseline_target(cfg, ref))
    if args.targets:
        wanted = set(args.targets.split(",")) | {f"tidings@{ref}" for ref in refs}
        targets = [t for t in targets if t.name in wanted]
    results: dict[str, dict[str, Any]] = {}
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with out.open("w") as jsonl:

        def record(scen: str, name: str, res: dict[str, Any]) -> None:
            results.setdefault(scen, {})[name] = res
            line = {"scenario": scen, "target": name, **res}
            jsonl.write(json.dumps(line) + "\n")
            jsonl.flush()
            print(json.dumps(line)[:400], file=sys.stderr)

        for scen in scenarios:
            if scen == "S7":
                tidings = next((t for t in targets if t.name == "tidings"), None)
                if tidings is None:
                    print("S7 skipped: it needs the tidings target", file=sys.stderr)
                    continue
                try:
                    rows = s7_redis(tidings, args.quick)
                except Exception as exc:  # e.g. redis-server missing: the other rows stand
                    rows = [("S7a", "tidings", {"error": str(exc)})]
                for scen7, name, res in rows:
                    record(scen7, name, res)
                continue
            if scen == "S8":
                if args.targets and "tidings" not in args.targets.split(","):
                    print("S8 skipped: it needs the tidings target", file=sys.stderr)
                    continue
                for scen8, name, res in s8_transports(args.quick):
                    record(scen8, name, res)
                continue
            for t in targets:
                if scen == "S6" and t.name not in ("tidings", "raw"):
                    continue  # the peers already miss the bar at 2,000 connections
                if scen in ("S4", "S4p") and t.name == "raw":
                    continue  # the raw baseline has one channel
                if scen == "S4b" and not t.name.startswith("tidings"):
                    continue  # the batch API is Tidings' (Centrifugo's) own
                try:
                    res = SCENARIOS[scen](t, args.quick)
                except Exception as exc:  # a failing peer must not stop the suite
                    res = {"error": str(exc)}
                record(scen, t.name, res)
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
            "S4p": ("figure", "publishes/s"), "S4b": ("figure", "publications/s"),
            "S5": ("seconds", "s"), "S6": ("p99", "ms p99"),
            "S7a": ("figure", "deliveries/s"), "S7a-lat": ("p99", "ms p99"),
            "S7b": ("figure", "publishes/s"), "S8": ("p99", "ms p99")}
    for scen, per_target in results.items():
        key, unit = keys[scen]
        # S8 compares transports of Tidings: its ratios are against the WebSocket row
        base = per_target.get(S8_BASE if scen == "S8" else "tidings", {}).get(key)
        for name, res in per_target.items():
            if "error" in res:
                lines.append(f"| {scen} | {name} | error | | {res['error'][:80]} |")
                continue
            value = res.get(key)
            # "how many times better Tidings is": higher-is-better figures divide Tidings by the
            # peer, lower-is-better ones (latency, memory, time) divide the peer by Tidings.
            lower_better = scen in ("S2", "S3", "S5", "S6", "S7a-lat", "S8")
            ratio = ""
            if base and value:
                ratio = f"{(value / base) if lower_better else (base / value):.2f}x"
            detail = {k: v for k, v in res.items()
                      if k not in ("steps", "best", "raw", "logs", key)}
            lines.append(f"| {scen} | {name} | {value if value is not None else ''} {unit} "
                         f"| {ratio} | {json.dumps(detail)[:120]} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
