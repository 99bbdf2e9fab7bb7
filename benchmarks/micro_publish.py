"""What an API publish costs in Python, without sockets: a node in this process (memory engine,
uvloop), 2,000 WebSocket subscribers each on its own channel (S4's shape) and an API
connection, all on fake transports that keep nothing; ``POST /api/publish`` requests fed to
the HTTP protocol object one at a time (one in flight, as the generator's connections) or
pipelined, and ``/api/batch``. Prints CPU microseconds per publication (median of 5 rounds).

    python benchmarks/micro_publish.py                    # this tree
    PYTHONPATH=/tmp/tidings-baseline-3fdd59e/src python benchmarks/micro_publish.py  # another

The sockets' cost (a read and a write per request, a write per subscriber flush; ~10-15 us
each on loopback here) is left out on purpose: this is the part the code controls, measured
without the noise of a shared machine. ``--profile FILE`` writes a cProfile of one round.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import cProfile
import json
import os
import statistics
import sys
import time
from typing import Any

import jwt
import uvloop

from tidings.api.handlers import ApiHandler
from tidings.config import config_from_dict
from tidings.core.node import Node
from tidings.engine.memory import MemoryEngine
from tidings.transports.http import HttpProtocol, ServerState

SECRET = "bench-secret-0123456789-0123456789-abcdef"
CONFIG = {"client": {"token": {"hmac_secret_key": SECRET}}, "http_api": {"key": "bench"},
          "channel": {"without_namespace": {"allow_subscribe_for_client": True}},
          "log": {"level": "warn"}}
SUBSCRIBERS = 2000
ROUND = 20000  # publications per round


class NullTransport:
    """An asyncio transport that accepts everything and keeps nothing (counts bytes)."""

    def __init__(self) -> None:
        self.written = 0

    def write(self, data: bytes) -> None:
        self.written += len(data)

    def writelines(self, chunks: Any) -> None:
        for chunk in chunks:
            self.write(chunk)

    def is_closing(self) -> bool:
        return False

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def get_write_buffer_size(self) -> int:
        return 0

    def can_write_eof(self) -> bool:
        return False

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


def frame(payload: bytes) -> bytes:
    """A masked client text frame (mask 0: the payload as is)."""
    n = len(payload)
    head = bytes((0x81, 0x80 | n)) if n < 126 else bytes((0x81, 0xFE)) + n.to_bytes(2, "big")
    return head + b"\0\0\0\0" + payload


def request(path: str, body: bytes) -> bytes:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nX-API-Key: bench\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode() + body


async def settle() -> None:
    for _ in range(3):
        await asyncio.sleep(0)


async def setup() -> tuple[Node, ServerState]:
    config, _ = config_from_dict(CONFIG)
    node = Node(config, MemoryEngine())
    await node.start()
    state = ServerState(node, ApiHandler(node))
    key = base64.b64encode(os.urandom(16)).decode()
    upgrade = (f"GET /connection/websocket HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
               f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\n\r\n").encode()
    for i in range(SUBSCRIBERS):
        conn = HttpProtocol(state)
        conn.connection_made(NullTransport())  # type: ignore[arg-type]
        conn.data_received(upgrade)
        token = jwt.encode({"sub": str(i)}, SECRET, algorithm="HS256")
        conn.data_received(frame(json.dumps({"id": 1, "connect": {"token": token}}).encode()))
        await settle()
        conn.data_received(frame(json.dumps({"id": 2, "subscribe": {"channel": f"bench{i}"}})
                                 .encode()))
    await settle()
    return node, state


async def one_round(state: ServerState, mode: str, batch: int) -> float:
    """Seconds per publication over ROUND publications."""
    conn = HttpProtocol(state)
    transport = NullTransport()
    conn.connection_made(transport)  # type: ignore[arg-type]
    if mode == "batch":
        bodies = [request("/api/batch", json.dumps({"commands": [
            {"publish": {"channel": f"bench{(i + k) % SUBSCRIBERS}", "data": {"ts": i}}}
            for k in range(batch)]}).encode()) for i in range(0, ROUND, batch)]
    else:
        bodies = [request("/api/publish", json.dumps(
            {"channel": f"bench{i % SUBSCRIBERS}", "data": {"ts": i}}).encode())
            for i in range(ROUND)]
    step = 16 if mode == "pipelined" else 1
    started = time.process_time()  # CPU time: on a shared core, wall time counts the others
    for i in range(0, len(bodies), step):
        conn.data_received(b"".join(bodies[i:i + step]))
        await settle()  # the request's task (if any) and the flush round run
    elapsed = time.process_time() - started
    conn.connection_lost(None)
    assert transport.written > 0
    return elapsed / ROUND


async def main(args: argparse.Namespace) -> None:
    node, state = await setup()
    await one_round(state, args.mode, args.batch)  # warm-up
    if args.profile:
        profiler = cProfile.Profile()
        profiler.enable()
        await one_round(state, args.mode, args.batch)
        profiler.disable()
        profiler.dump_stats(args.profile)
    rounds = [await one_round(state, args.mode, args.batch) for _ in range(5)]
    print(f"{args.mode}{f' x{args.batch}' if args.mode == 'batch' else ''}: "
          f"{statistics.median(rounds) * 1e6:.2f} us/publication "
          f"({min(rounds) * 1e6:.2f}-{max(rounds) * 1e6:.2f})")
    await node.shutdown(1.0)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=("single", "pipelined", "batch"), default="single")
    parser.add_argument("--batch", type=int, default=20)
    parser.add_argument("--profile", default="")
    uvloop.run(main(parser.parse_args()))
    sys.exit(0)
