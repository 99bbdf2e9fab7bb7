"""Several ``tidings serve`` nodes sharing Redis: their configs, starting and stopping them
together, and waiting until they know each other."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

from tests.support.api import api_result
from tests.support.redisproc import RedisServer
from tests.support.server import BASE_CONFIG, ServerProcess, deep_merge
from tests.support.timing import TIMEOUT_FACTOR, eventually


def node_config(
    redis: Iterable[RedisServer], prefix: str, name: str, **redis_options: Any
) -> dict[str, Any]:
    """BASE_CONFIG with the Redis engine on ``redis`` (several: sharded) and a node name."""
    engine = {
        "address": [server.url for server in redis],
        "prefix": prefix,
        "presence_ttl": "2s",
        "io_timeout": "1s",
        "connect_timeout": "500ms",
        **redis_options,
    }
    return deep_merge(
        BASE_CONFIG, {"engine": {"type": "redis", "redis": engine}, "node": {"name": name}}
    )


@contextmanager
def running_nodes(
    start: Callable[[dict[str, Any]], ServerProcess], configs: list[dict[str, Any]]
) -> Iterator[list[ServerProcess]]:
    """Start one node per config and wait until each has its Redis pub/sub connection up;
    every started node is stopped (by its own PID) on exit."""
    nodes: list[ServerProcess] = []
    try:
        for cfg in configs:
            nodes.append(start(cfg))
        for node in nodes:
            assert node.wait_log("pub/sub connected", timeout=10), node.log_text()
        yield nodes
    finally:
        for node in nodes:
            node.stop()


async def wait_log(node: ServerProcess, *texts: str, within: float = 10.0) -> bool:
    """``ServerProcess.wait_log`` off the event loop (it blocks on a condition variable)."""
    return await asyncio.to_thread(node.wait_log, *texts, timeout=within)


async def wait_cluster(nodes: list[ServerProcess]) -> dict[str, str]:
    """Wait until the ``info`` API of every node lists every node (heartbeats come every 3 s);
    returns node uid -> name."""
    seen: dict[str, str] = {}

    async def complete() -> bool:
        for node in nodes:
            listed = (await api_result(node, "info", {}))["nodes"]
            if len(listed) != len(nodes):
                return False
            seen.update({n["uid"]: n["name"] for n in listed})
        return True

    assert await eventually(complete, within=10 * TIMEOUT_FACTOR, interval=0.1), seen
    return seen
