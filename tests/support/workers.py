"""``tidings serve --workers N`` in tests: its config (the Redis engine, debug logs), which
worker a connection landed on, and the workers' PIDs.

The kernel spreads connections over the workers (``SO_REUSEPORT``), so a test cannot choose a
worker; it learns where a connection landed from the server's own log: at ``log.level`` debug
each worker logs ``client connected ... node=<name>-w<i> client=<id>`` and ``API call ...
node=<name>-w<i> method=<m>``. The supervisor logs ``worker <i> started (pid <p>)``.
"""

from __future__ import annotations

import asyncio
import re
from typing import Any

from tests.support.cluster import node_config
from tests.support.redisproc import RedisServer
from tests.support.sdk import ClientEvents, Clients
from tests.support.server import ServerProcess, deep_merge
from tests.support.timing import T

__all__ = ["NAME", "connect_on", "on_every_worker", "worker_of", "worker_pids",
           "workers_config"]

NAME = "wk"  # node.name: the workers are wk-w0, wk-w1, ...
_CONNECTED = re.compile(r"client connected .*node=(\S+) client=(\S+)")
_STARTED = re.compile(r"worker (\d+) started \(pid (\d+)\)")


def workers_config(redis: RedisServer, prefix: str, **overrides: Any) -> dict[str, Any]:
    """BASE_CONFIG on the Redis engine, node name ``wk``, debug logs (``worker_of`` reads
    them), the HTTP-streaming, SSE and SockJS transports on; ``overrides`` merged in."""
    config = deep_merge(node_config([redis], prefix, NAME), {
        "log": {"level": "debug"},
        "http_stream": {"enabled": True}, "sse": {"enabled": True},
        "sockjs": {"enabled": True},
    })
    return deep_merge(config, overrides)


def worker_pids(server: ServerProcess) -> dict[int, int]:
    """Each worker's current PID (the latest ``started`` line per index)."""
    return {int(m.group(1)): int(m.group(2))
            for m in _STARTED.finditer(server.log_text())}


async def worker_of(server: ServerProcess, client_id: str, within: float = T) -> str:
    """The node name of the worker holding client ``client_id``."""

    def find() -> str:
        for m in _CONNECTED.finditer(server.log_text()):
            if m.group(2) == client_id:
                return m.group(1)
        return ""

    async def wait() -> str:
        while not (node := find()):
            await asyncio.to_thread(server.wait_log, client_id, timeout=0.5)
        return node

    return await asyncio.wait_for(wait(), within)


async def connect_on(clients: Clients, server: ServerProcess, node: str, user: str,
                     *, tries: int = 40, **options: Any) -> tuple[Any, ClientEvents]:
    """A client of ``user`` connected to worker ``node``: clients are connected until one
    lands there (each new connection goes to any worker); the others are disconnected."""
    for _ in range(tries):
        client, events = await clients.connect(server, user, **options)
        if await worker_of(server, client.client_id) == node:
            return client, events
        await client.disconnect()
    raise AssertionError(f"no connection landed on {node} in {tries} tries")


async def on_every_worker(clients: Clients, server: ServerProcess, count: int, user: str,
                          **options: Any) -> dict[str, tuple[Any, ClientEvents]]:
    """One connected client of ``user`` on each of the ``count`` workers, by node name."""
    return {node: await connect_on(clients, server, node, user, **options)
            for node in (f"{NAME}-w{i}" for i in range(count))}
