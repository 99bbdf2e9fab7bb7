"""What the backend hooks cost: one command, three measurements, one table (README: "Backend
hooks").

    python benchmarks/hooks_bench.py            # full (~70 s)
    python benchmarks/hooks_bench.py --quick    # smaller N, shorter windows (~30 s)

1. S5 with the connect proxy vs S5 with JWT: 10,000 clients (3,000 with --quick) connect and
   subscribe at once, each with its own JWT, then each without a token, so the node asks the
   backend (``client.proxy.connect``) who it is. Same node config, same run, alternated.
2. RPC through the proxy at 1,000 calls/s: 50 WebSocket clients send ``rpc`` commands at an
   aggregate 1,000/s for 10 s (3 s with --quick), answered by the backend (``rpc.proxy``);
   the baseline is the same load of ``presence_stats`` commands, answered by the node alone.
   Overhead per call = rpc percentile - baseline percentile.
3. Publish-proxy throughput: 50 publisher connections, each keeping 32 ``publish`` commands in
   flight, 20,000 publishes (5,000 with --quick) in a namespace with ``publish_proxy_enabled``
   vs the same load in a namespace with ``allow_publish_for_client`` and no hook.

Tidings runs pinned to core 0 (``taskset -c 0``, run.py's ``Running``); everything else on
core 1: this script (the WebSocket clients of 2 and 3, one asyncio process on uvloop, the
``websockets`` library), the C generator of 1 (benchmarks/loadgen) and the backend
(benchmarks/hook_backend.py: asyncio + uvloop + httptools, no framework). Every node is
fresh per measurement. Loopback only; every loop is bounded; every process started here is
stopped by its PID (also on SIGTERM). JSON lines are appended to benchmarks/results/hooks.jsonl.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import os
import platform
import select
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import uvloop
from run import (  # benchmarks/run.py, beside this file
    GEN_CORE,
    TIDINGS_CONFIG,
    Running,
    Target,
    build_loadgen,
    loadgen,
    stop_group,
    tokens_file,
)
from websockets.asyncio.client import ClientConnection, connect

HERE = Path(__file__).resolve().parent
BACKEND = HERE / "hook_backend.py"
WS_PATH = "/connection/websocket"


# ---------------------------------------------------------------------------- processes


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of one process so far (0.0 once it is gone)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Backend:
    """benchmarks/hook_backend.py on a free port, pinned to the generator's core."""

    def __init__(self) -> None:
        cmd = ["taskset", "-c", GEN_CORE, sys.executable, str(BACKEND), "--port", "0"]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                     text=True, start_new_session=True)
        assert self.proc.stdout is not None
        deadline = time.monotonic() + 15
        line = ""
        while (left := deadline - time.monotonic()) > 0:
            if not select.select([self.proc.stdout], [], [], left)[0]:
                break  # nothing within the deadline
            line = self.proc.stdout.readline()
            if not line or "listening on http://" in line:  # "" is EOF: it exited
                break
        if "listening on http://" not in line:
            self.stop()
            raise RuntimeError(f"backend did not start: {line!r}")
        self.url = line.split("listening on ", 1)[1].strip()

    def stop(self) -> str:
        stop_group(self.proc)
        out = self.proc.stdout.read() if self.proc.stdout else ""
        if self.proc.stdout:
            self.proc.stdout.close()
        return out.strip()


def node_config(backend_url: str) -> dict[str, Any]:
    """run.py's node config plus every hook this benchmark uses. JWT connects never reach the
    connect hook (it fires only for a connect without a token), so S5 uses one config for
    both modes."""
    cfg: dict[str, Any] = json.loads(json.dumps(TIDINGS_CONFIG))
    cfg["client"]["proxy"] = {"connect": {"enabled": True, "endpoint": f"{backend_url}/connect",
                                          "timeout": "1s"}}
    cfg["rpc"] = {"proxy": {"endpoint": f"{backend_url}/rpc", "timeout": "1s"},
                  "without_namespace": {"proxy_enabled": True}}
    cfg["channel"] = {
        "proxy": {"publish": {"endpoint": f"{backend_url}/publish", "timeout": "1s"}},
        "without_namespace": {"allow_subscribe_for_client": True, "presence": True,
                              "allow_presence_for_client": True},
        "namespaces": [{"name": "px", "publish_proxy_enabled": True},
                       {"name": "np", "allow_publish_for_client": True}],
    }
    return cfg


def node_target(config_path: Path, *, jwt: bool) -> Target:
    connect = '{"id":1,"connect":{"token":"{tok}"}}' if jwt else '{"id":1,"connect":{}}'
    return Target(
        name="tidings-jwt" if jwt else "tidings-connect-proxy",
        cmd=[sys.executable, "-m", "tidings", "serve", "--config", str(config_path),
             "--port", "{port}"],
        path=WS_PATH,
        init=[connect, '{"id":2,"subscribe":{"channel":"bench{ch}"}}'],
        ready='"id":2',
        pong_rules=["{}={}"],
        pub_path="/api/publish",
        pub_body='{"channel":"bench{ch}","data":{"ts":{ts}}}',
        jwt=jwt,
    )


def node_log(running: Running) -> list[str]:
    """The node's output lines other than its start/stop banners."""
    lines = running.stop().splitlines()
    return [ln for ln in lines if ln.strip() and "listening on" not in ln
            and "stopp" not in ln.lower() and "shutting down" not in ln.lower()]


# ---------------------------------------------------------------------------- 1. connect storm


def connect_storm(cfg_path: Path, backend: Backend, n: int, rounds: int) -> dict[str, Any]:
    """S5 per mode, alternating JWT and proxy ``rounds`` times, each on a fresh node."""
    runs: dict[str, list[dict[str, Any]]] = {"jwt": [], "proxy": []}
    for _ in range(rounds):
        for mode in ("jwt", "proxy"):
            running = Running(node_target(cfg_path, jwt=mode == "jwt"))
            logs: list[str] = []
            try:
                node_cpu0, be_cpu0 = cpu_seconds(running.proc.pid), cpu_seconds(backend.proc.pid)
                r = loadgen(running, conns=n, idle=0.5, max_seconds=60)
                node_cpu = cpu_seconds(running.proc.pid) - node_cpu0
                be_cpu = cpu_seconds(backend.proc.pid) - be_cpu0
            finally:
                logs = node_log(running)
            runs[mode].append({
                "seconds": r["subscribe_time_s"], "subscribed": r["subscribed"],
                "connect_ms_p50": r["connect_ms"]["p50"], "connect_ms_p99": r["connect_ms"]["p99"],
                "node_cpu_s": round(node_cpu, 2), "backend_cpu_s": round(be_cpu, 2),
                "gen_cpu_s": r.get("gen_cpu_s"), "errors": r.get("errors", {}),
                "log_lines": len(logs), "logs": logs[:5]})
    out: dict[str, Any] = {"conns": n, "rounds": runs}
    for mode, rs in runs.items():
        secs = [x["seconds"] for x in rs if x["seconds"] is not None and x["subscribed"] == n]
        out[mode] = round(statistics.median(secs), 3) if len(secs) == len(rs) else None
    if out["jwt"] and out["proxy"]:
        out["ratio"] = round(out["proxy"] / out["jwt"], 2)
    return out


# ---------------------------------------------------------------------------- WebSocket clients


async def open_clients(port: int, n: int) -> list[ClientConnection]:
    """``n`` connected clients, each with its own JWT (run.py's token file)."""
    tokens = tokens_file(max(n, 1)).read_text().split()
    url = f"ws://127.0.0.1:{port}{WS_PATH}"

    async def one(i: int) -> ClientConnection:
        ws = await connect(url, max_size=None, compression=None, open_timeout=10)
        await ws.send(json.dumps({"id": 1, "connect": {"token": tokens[i]}}))
        reply = json.loads(str(await asyncio.wait_for(ws.recv(), 10)).split("\n", 1)[0])
        if "connect" not in reply:
            raise RuntimeError(f"connect refused: {reply}")
        return ws

    return list(await asyncio.gather(*(one(i) for i in range(n))))


def pct(sorted_ms: list[float], p: float) -> float | None:
    if not sorted_ms:
        return None
    return round(sorted_ms[min(len(sorted_ms) - 1, int(len(sorted_ms) * p))], 3)


# ---------------------------------------------------------------------------- 2. RPC round trip


async def paced_round_trips(clients: list[ClientConnection], rate: float, seconds: float,
                            make: Any) -> dict[str, Any]:
    """Open loop: command k goes out at start + k/rate on client k % len(clients), whatever
    the replies do; its round trip is reply receipt - send (perf_counter, this process)."""
    sent: dict[int, float] = {}
    rtts: list[float] = []
    errors: dict[str, int] = {}
    total = int(rate * seconds)
    all_sent, drained = False, asyncio.Event()

    async def reader(ws: ClientConnection) -> None:
        async for msg in ws:
            now = time.perf_counter()
            for line in str(msg).split("\n"):
                if line == "{}":  # the server's ping: answer with a pong
                    await ws.send("{}")
                    continue
                reply = json.loads(line)
                t0 = sent.pop(reply.get("id", 0), None)
                if t0 is None:
                    continue
                if all_sent and not sent:
                    drained.set()
                if "error" in reply:
                    key = f"error_{reply['error'].get('code')}"
                    errors[key] = errors.get(key, 0) + 1
                    continue
                rtts.append((now - t0) * 1000.0)

    readers = [asyncio.create_task(reader(ws)) for ws in clients]
    start = time.perf_counter()
    late_max = 0.0
    try:
        for k in range(total):
            due = start + k / rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            else:
                late_max = max(late_max, -delay)
            cmd_id = 1000 + k
            ws = clients[k % len(clients)]
            sent[cmd_id] = time.perf_counter()
            await ws.send(make(cmd_id))
        all_sent = True
        send_window = time.perf_counter() - start
        if sent:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(drained.wait(), 3.0)
    finally:
        for task in readers:
            task.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    rtts.sort()
    return {"calls": total, "answered": len(rtts), "missing": len(sent), "errors": errors,
            "rate_achieved": round(total / max(send_window, 1e-9), 1),
            "sender_late_max_ms": round(late_max * 1000.0, 2),
            "p50_ms": pct(rtts, 0.50), "p90_ms": pct(rtts, 0.90), "p99_ms": pct(rtts, 0.99),
            "max_ms": round(rtts[-1], 3) if rtts else None,
            "mean_ms": round(statistics.fmean(rtts), 3) if rtts else None}


def rpc_cmd(cmd_id: int) -> str:
    return f'{{"id":{cmd_id},"rpc":{{"method":"echo","data":{{"n":{cmd_id}}}}}}}'


def presence_cmd(cmd_id: int) -> str:
    return f'{{"id":{cmd_id},"presence_stats":{{"channel":"bench{cmd_id % 50}"}}}}'


async def rpc_phase(port: int, backend_pid: int, node_pid: int, conns: int, rate: float,
                    seconds: float) -> dict[str, Any]:
    clients = await open_clients(port, conns)
    try:
        # warm-up (not measured): the node's hook pool opens its backend connections
        await paced_round_trips(clients, rate, 0.5, rpc_cmd)
        await paced_round_trips(clients, rate, 0.5, presence_cmd)
        out: dict[str, Any] = {"conns": conns, "rate": rate, "seconds": seconds}
        for name, make in (("baseline_presence_stats", presence_cmd), ("rpc_proxy", rpc_cmd)):
            node0, be0 = cpu_seconds(node_pid), cpu_seconds(backend_pid)
            res = await paced_round_trips(clients, rate, seconds, make)
            res["node_cpu_pct"] = round((cpu_seconds(node_pid) - node0) / seconds * 100, 1)
            res["backend_cpu_pct"] = round((cpu_seconds(backend_pid) - be0) / seconds * 100, 1)
            out[name] = res
    finally:
        await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)
    base, rpc = out["baseline_presence_stats"], out["rpc_proxy"]
    for p in ("p50_ms", "p99_ms"):
        if base[p] is not None and rpc[p] is not None:
            out[f"overhead_{p}"] = round(rpc[p] - base[p], 3)
    return out


# ---------------------------------------------------------------------------- 3. publish proxy


async def publish_flood(clients: list[ClientConnection], namespace: str, total: int,
                        window: int) -> dict[str, Any]:
    """Each client keeps ``window`` publishes in flight (the commands it may send go out
    together, one frame, newline-separated) until ``total`` are answered."""
    per_client = [total // len(clients) + (1 if i < total % len(clients) else 0)
                  for i in range(len(clients))]
    errors: dict[str, int] = {}
    done = 0

    async def run(i: int, ws: ClientConnection) -> None:
        nonlocal done
        todo, next_id, inflight = per_client[i], 10, 0
        channel = f"{namespace}:pub{i}"

        def batch(k: int) -> str:
            nonlocal next_id
            lines = [f'{{"id":{next_id + j},"publish":{{"channel":"{channel}",'
                     f'"data":{{"n":{next_id + j}}}}}}}' for j in range(k)]
            next_id += k
            return "\n".join(lines)

        first = min(window, todo)
        await ws.send(batch(first))
        inflight, todo = first, todo - first
        while inflight:
            msg = str(await asyncio.wait_for(ws.recv(), 10))
            got = 0
            for line in msg.split("\n"):
                if line == "{}":
                    await ws.send("{}")
                    continue
                reply = json.loads(line)
                if "id" not in reply:
                    continue  # a push
                got += 1
                if "error" in reply:
                    key = f"error_{reply['error'].get('code')}"
                    errors[key] = errors.get(key, 0) + 1
            inflight -= got
            done += got
            more = min(got, todo)
            if more:
                await ws.send(batch(more))
                inflight, todo = inflight + more, todo - more

    start = time.perf_counter()
    await asyncio.wait_for(asyncio.gather(*(run(i, ws) for i, ws in enumerate(clients))), 120)
    elapsed = time.perf_counter() - start
    ok = done - sum(errors.values())
    return {"publishes": done, "ok": ok, "errors": errors, "seconds": round(elapsed, 3),
            "per_s": round(ok / elapsed, 1)}


async def publish_phase(port: int, backend_pid: int, node_pid: int, conns: int, total: int,
                        window: int, rounds: int) -> dict[str, Any]:
    clients = await open_clients(port, conns)
    runs: dict[str, list[dict[str, Any]]] = {"no_proxy": [], "proxy": []}
    try:
        await publish_flood(clients, "np", min(total, 2000), window)  # warm-up
        await publish_flood(clients, "px", min(total, 2000), window)
        for _ in range(rounds):
            for mode, ns in (("no_proxy", "np"), ("proxy", "px")):
                node0, be0 = cpu_seconds(node_pid), cpu_seconds(backend_pid)
                res = await publish_flood(clients, ns, total, window)
                res["node_cpu_s"] = round(cpu_seconds(node_pid) - node0, 2)
                res["backend_cpu_s"] = round(cpu_seconds(backend_pid) - be0, 2)
                runs[mode].append(res)
    finally:
        await asyncio.gather(*(ws.close() for ws in clients), return_exceptions=True)
    out: dict[str, Any] = {"conns": conns, "window": window, "publishes": total, "rounds": runs}
    for mode, rs in runs.items():
        out[mode] = round(statistics.median(r["per_s"] for r in rs), 1)
    if out["proxy"]:
        out["ratio"] = round(out["no_proxy"] / out["proxy"], 2)
    return out


def on_fresh_node(cfg_path: Path, phase: Any) -> tuple[Any, list[str]]:
    running = Running(node_target(cfg_path, jwt=True))
    try:
        result = uvloop.run(phase(running))
    finally:
        logs = node_log(running)
    return result, logs


# ---------------------------------------------------------------------------- main


def machine() -> dict[str, Any]:
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"host": platform.node(), "nproc": os.cpu_count(), "cpu": model,
            "python": platform.python_version(), "loadavg": os.getloadavg()[0]}


def fmt(v: Any, unit: str = "") -> str:
    if v is None:
        return "n/a"
    if isinstance(v, float):
        v = f"{v:,.3f}" if v < 10 else f"{v:,.0f}" if v >= 1000 else f"{v:,.2f}"
    else:
        v = f"{v:,}"
    return f"{v}{unit}"


def ratio(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.2f}x"


def render(res: dict[str, Any], m: dict[str, Any], elapsed: float, quick: bool) -> str:
    s5, rpc, pub = res.get("s5", {}), res.get("rpc", {}), res.get("publish", {})
    lines = [
        f"Run {datetime.datetime.now(datetime.UTC):%Y-%m-%d %H:%M} UTC on {m['host']} "
        f"({m['nproc']} cores, {m['cpu']}, Python {m['python']}, load average "
        f"{m['loadavg']:.2f} at start, {m['loadavg_end']:.2f} at end)"
        f"{', --quick' if quick else ''}, {elapsed:.0f} s",
        "",
        "| measurement | mode | figure | vs baseline | detail |",
        "|---|---|---:|---:|---|",
    ]
    if "error" in s5:
        lines.append(f"| S5 connect storm | | error | | {s5['error'][:100]} |")
    elif s5:
        jr, pr = s5["rounds"]["jwt"], s5["rounds"]["proxy"]
        lines.append(f"| S5 connect storm, {s5['conns']:,} conns | JWT | {fmt(s5['jwt'], ' s')} "
                     f"| 1.00x | rounds {[x['seconds'] for x in jr]}, node CPU "
                     f"{[x['node_cpu_s'] for x in jr]} s |")
        lines.append(f"| S5 connect storm, {s5['conns']:,} conns | connect proxy "
                     f"| {fmt(s5['proxy'], ' s')} | {ratio(s5.get('ratio'))} "
                     f"| rounds {[x['seconds'] for x in pr]}, node CPU "
                     f"{[x['node_cpu_s'] for x in pr]} s, backend CPU "
                     f"{[x['backend_cpu_s'] for x in pr]} s |")
    if "error" in rpc:
        lines.append(f"| RPC round trip | | error | | {rpc['error'][:100]} |")
    elif rpc:
        head = (f"| RPC round trip, {rpc['rate']:,.0f}/s over {rpc['conns']} conns, "
                f"{rpc['seconds']:g} s")
        for name, label in (("baseline_presence_stats", "presence_stats (no hook)"),
                            ("rpc_proxy", "rpc via proxy")):
            r = rpc[name]
            vs = ""
            if name == "rpc_proxy":
                vs = (f"+{fmt(rpc.get('overhead_p50_ms'))} / +{fmt(rpc.get('overhead_p99_ms'))} ms"
                      " (p50 / p99)")
            lines.append(f"{head} | {label} | p50 {fmt(r['p50_ms'])} / p99 {fmt(r['p99_ms'])} "
                         f"/ max {fmt(r['max_ms'])} ms | {vs} | answered {r['answered']:,}/"
                         f"{r['calls']:,}, errors {r['errors']}, node CPU {r['node_cpu_pct']}%,"
                         f" backend CPU {r['backend_cpu_pct']}% |")
    if "error" in pub:
        lines.append(f"| publish throughput | | error | | {pub['error'][:100]} |")
    elif pub:
        head = (f"| publish throughput, {pub['publishes']:,} publishes, {pub['conns']} conns x "
                f"{pub['window']} in flight")
        for mode, label in (("no_proxy", "allow_publish_for_client (no hook)"),
                            ("proxy", "publish proxy")):
            rs = pub["rounds"][mode]
            vs = "1.00x" if mode == "no_proxy" else f"{ratio(pub.get('ratio'))} slower"
            lines.append(f"{head} | {label} | {fmt(pub[mode], '/s')} | {vs} | rounds "
                         f"{[r['per_s'] for r in rs]}, errors {[r['errors'] for r in rs]}, node "
                         f"CPU {[r['node_cpu_s'] for r in rs]} s |")
    return "\n".join(lines)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smaller N, shorter windows")
    parser.add_argument("--only", default="s5,rpc,publish", help="comma-separated subset")
    parser.add_argument("--rpc-rate", type=float, default=1000.0,
                        help="aggregate commands/s of the round-trip measurement (2)")
    parser.add_argument("--json", default=str(HERE / "results" / "hooks.jsonl"),
                        help="JSON lines are appended here")
    args = parser.parse_args()
    q = args.quick
    only = set(args.only.split(","))
    os.sched_setaffinity(0, {int(GEN_CORE)})  # this process (the clients) on the load core
    signal.signal(signal.SIGTERM, _exit_on_sigterm)  # finally blocks stop what we started
    build_loadgen()
    m = machine()
    started = time.monotonic()
    results: dict[str, Any] = {}
    backend = Backend()
    tmp = Path(tempfile.mkdtemp(prefix="tidings-hooks-bench-"))
    cfg_path = tmp / "node.json"
    try:
        cfg_path.write_text(json.dumps(node_config(backend.url)))
        be_pid = backend.proc.pid
        if "s5" in only:
            try:
                results["s5"] = connect_storm(cfg_path, backend, 3000 if q else 10000,
                                              rounds=2)
            except Exception as exc:
                results["s5"] = {"error": f"{type(exc).__name__}: {exc}"}
        if "rpc" in only:
            try:
                results["rpc"], logs = on_fresh_node(cfg_path, lambda r: rpc_phase(
                    r.port, be_pid, r.proc.pid, 50, args.rpc_rate, 3.0 if q else 10.0))
                results["rpc"]["logs"] = logs[:5]
            except Exception as exc:
                results["rpc"] = {"error": f"{type(exc).__name__}: {exc}"}
        if "publish" in only:
            try:
                results["publish"], logs = on_fresh_node(cfg_path, lambda r: publish_phase(
                    r.port, be_pid, r.proc.pid, 50, 5000 if q else 20000, 32, 2))
                results["publish"]["logs"] = logs[:5]
            except Exception as exc:
                results["publish"] = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        backend_out = backend.stop()
        cfg_path.unlink(missing_ok=True)
        tmp.rmdir()
    elapsed = time.monotonic() - started
    m["loadavg_end"] = round(os.getloadavg()[0], 2)
    out = Path(args.json)
    out.parent.mkdir(parents=True, exist_ok=True)
    stamp = f"{datetime.datetime.now(datetime.UTC):%Y-%m-%dT%H:%M:%SZ}"
    with out.open("a") as jsonl:
        for name, res in results.items():
            jsonl.write(json.dumps({"ts": stamp, "measurement": name, "quick": q,
                                    "command": " ".join(sys.argv), "machine": m,
                                    "elapsed_s": round(elapsed, 1), **res}) + "\n")
    print(f"backend: {backend_out.splitlines()[-1] if backend_out else ''}", file=sys.stderr)
    print(render(results, m, elapsed, q))
    return 0 if all("error" not in r for r in results.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
