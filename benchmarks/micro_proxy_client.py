"""Which HTTP client calls backend hooks: calls per second and per-call latency against a
minimal backend on loopback (benchmarks/hook_backend.py), a connect hook's JSON.

    python benchmarks/micro_proxy_client.py [--calls 4000] [--concurrency 50]

Clients: Tidings' own (``proxy/h1.py``, what the node uses), aiohttp with its keep-alive pool,
aiohttp opening a connection per call, and httpx's AsyncClient (keep-alive pool) when
installed. The backend runs in a separate
process (pinned to the other core when taskset exists). One table, one run: compare ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable

import aiohttp

BODY = (b'{"client":"9336a229-2400-4ebc-8c50-0a643d22e8a0","transport":"websocket",'
        b'"protocol":"json","encoding":"json","name":"js"}')


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def run(call: Callable[[], Awaitable[None]], calls: int, concurrency: int
              ) -> tuple[float, float, float]:
    latencies: list[float] = []

    async def worker(n: int) -> None:
        for _ in range(n):
            t = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t)

    start = time.perf_counter()
    await asyncio.gather(*(worker(calls // concurrency) for _ in range(concurrency)))
    elapsed = time.perf_counter() - start
    latencies.sort()
    p50 = latencies[len(latencies) // 2] * 1000
    p99 = latencies[int(len(latencies) * 0.99)] * 1000
    return len(latencies) / elapsed, p50, p99


async def main_async(url: str, calls: int, concurrency: int) -> list[tuple[str, float, float,
                                                                             float]]:
    rows = []
    headers = {"content-type": "application/json"}
    from tidings.proxy import h1
    pool, endpoint = h1.Pool(), h1.Endpoint(url)

    async def tidings_h1() -> None:
        await pool.post(endpoint, {}, BODY)
    await run(tidings_h1, 200, 10)
    rows.append(("tidings proxy/h1.py, keep-alive pool", *await run(tidings_h1, calls,
                                                                    concurrency)))
    pool.close()
    async with aiohttp.ClientSession() as pooled:
        async def aio() -> None:
            async with pooled.post(url, data=BODY, headers=headers) as r:
                await r.read()
        await run(aio, 200, 10)  # warm
        rows.append(("aiohttp, keep-alive pool", *await run(aio, calls, concurrency)))
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as fresh:
        async def aio_fresh() -> None:
            async with fresh.post(url, data=BODY, headers=headers) as r:
                await r.read()
        rows.append(("aiohttp, a connection per call", *await run(aio_fresh, calls,
                                                                  concurrency)))
    try:
        import httpx
    except ImportError:
        return rows
    limits = httpx.Limits(max_connections=512, max_keepalive_connections=256)
    async with httpx.AsyncClient(limits=limits) as client:
        async def hx() -> None:
            r = await client.post(url, content=BODY, headers=headers)
            r.read()
        await run(hx, 200, 10)
        rows.append(("httpx, keep-alive pool", *await run(hx, calls, concurrency)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    port = free_port()
    pin = ["taskset", "-c", "1"] if shutil.which("taskset") and os.cpu_count() != 1 else []
    # The fast backend (raw httptools on uvloop) so the client side is what is measured.
    here = os.path.dirname(os.path.abspath(__file__))
    backend = subprocess.Popen([*pin, sys.executable, os.path.join(here, "hook_backend.py"),
                                "--port", str(port)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        if pin:
            os.sched_setaffinity(0, {0})
        import uvloop  # the node's loop

        rows = uvloop.run(main_async(f"http://127.0.0.1:{port}/connect", args.calls,
                                      args.concurrency))
    finally:
        backend.terminate()
        backend.wait(10)
    print(f"| client ({args.calls} calls, {args.concurrency} at once) | calls/s | p50 ms "
          "| p99 ms |\n|---|---|---|---|")
    for name, rate, p50, p99 in rows:
        print(f"| {name} | {rate:,.0f} | {p50:.2f} | {p99:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
