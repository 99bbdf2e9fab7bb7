"""Shared helpers for the multi-node tests: ``tidings serve`` processes sharing Redis, the real
centrifuge-python SDK as the client, and the HTTP API over aiohttp.

Every wait is bounded (``T`` seconds, scaled by ``TIMEOUT_FACTOR``); polls stop as soon as
their condition holds.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from centrifuge import Client, ClientEventHandler, SubscriptionEventHandler, SubscriptionState

from tests.conftest import BASE_CONFIG, TIMEOUT_FACTOR, ServerProcess, deep_merge, make_token
from tests.integration.test_centrifuge_python import next_item
from tests.redisproc import RedisServer

__all__ = [
    "ClientEvents",
    "Clients",
    "Event",
    "SubEvents",
    "T",
    "api",
    "api_result",
    "eventually",
    "next_item",
    "node_config",
    "running_nodes",
    "subscribe",
    "unique_prefix",
    "wait_cluster",
    "wait_log",
]

T = 5.0 * TIMEOUT_FACTOR


def unique_prefix() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


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


async def eventually(
    check: Callable[[], Awaitable[bool]], within: float = T, interval: float = 0.05
) -> bool:
    """Poll ``check`` until it returns True (-> True) or ``within`` seconds pass (-> False)."""
    deadline = time.monotonic() + within
    while True:
        if await check():
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)


async def api(
    srv: ServerProcess,
    method: str,
    payload: dict[str, Any],
    *,
    within: float = T,
    session: aiohttp.ClientSession | None = None,
) -> dict[str, Any]:
    """POST to a node's HTTP API; returns the decoded JSON body (HTTP 200 asserted). Uses
    ``session`` when given (its connections are reused), else a session of its own."""
    if session is None:
        async with aiohttp.ClientSession() as own:
            return await api(srv, method, payload, within=within, session=own)
    headers = {"X-API-Key": srv.api_key}
    async with session.post(
        f"{srv.api_url}/{method}",
        json=payload,
        headers=headers,
        timeout=aiohttp.ClientTimeout(total=within),
    ) as resp:
        body = await resp.text()
        assert resp.status == 200, body
    decoded = json.loads(body)
    assert isinstance(decoded, dict), decoded
    return decoded


async def api_result(
    srv: ServerProcess,
    method: str,
    payload: dict[str, Any],
    *,
    session: aiohttp.ClientSession | None = None,
) -> dict[str, Any]:
    """An API call that must succeed; returns its ``result``."""
    reply = await api(srv, method, payload, session=session)
    assert set(reply) == {"result"}, reply
    result = reply["result"]
    assert isinstance(result, dict), reply
    return result


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


# ---------------------------------------------------------------------------- SDK clients


@dataclass
class Event:
    """One recorded SDK event, in the order the SDK emitted it."""

    kind: str
    ctx: Any
    at: float = field(default_factory=time.monotonic)


class ClientEvents(ClientEventHandler):  # type: ignore[misc]  # the SDK ships no type hints
    """Client-level events: queues for awaiting, plus an ordered log of everything."""

    def __init__(self) -> None:
        queues = (asyncio.Queue[Any]() for _ in range(8))
        (
            self.connected,
            self.connecting,
            self.disconnected,
            self.errors,
            self.server_subscribed,
            self.server_unsubscribed,
            self.server_publications,
            self.server_joins,
        ) = queues
        self.log: list[Event] = []

    def _record(self, kind: str, ctx: Any, queue: asyncio.Queue[Any]) -> None:
        self.log.append(Event(kind, ctx))
        queue.put_nowait(ctx)

    async def on_connected(self, ctx: Any) -> None:
        self._record("connected", ctx, self.connected)

    async def on_connecting(self, ctx: Any) -> None:
        self._record("connecting", ctx, self.connecting)

    async def on_disconnected(self, ctx: Any) -> None:
        self._record("disconnected", ctx, self.disconnected)

    async def on_error(self, ctx: Any) -> None:
        self._record("error", ctx, self.errors)

    async def on_subscribed(self, ctx: Any) -> None:
        self._record("server_subscribed", ctx, self.server_subscribed)

    async def on_unsubscribed(self, ctx: Any) -> None:
        self._record("server_unsubscribed", ctx, self.server_unsubscribed)

    async def on_publication(self, ctx: Any) -> None:
        self._record("server_publication", ctx, self.server_publications)

    async def on_join(self, ctx: Any) -> None:
        self._record("server_join", ctx, self.server_joins)


class SubEvents(SubscriptionEventHandler):  # type: ignore[misc]  # the SDK ships no type hints
    """Subscription events: queues for awaiting, plus an ordered log of everything."""

    def __init__(self) -> None:
        queues = (asyncio.Queue[Any]() for _ in range(7))
        (
            self.subscribing,
            self.subscribed,
            self.unsubscribed,
            self.publications,
            self.joins,
            self.leaves,
            self.errors,
        ) = queues
        self.log: list[Event] = []

    def _record(self, kind: str, ctx: Any, queue: asyncio.Queue[Any]) -> None:
        self.log.append(Event(kind, ctx))
        queue.put_nowait(ctx)

    async def on_subscribing(self, ctx: Any) -> None:
        self._record("subscribing", ctx, self.subscribing)

    async def on_subscribed(self, ctx: Any) -> None:
        self._record("subscribed", ctx, self.subscribed)

    async def on_unsubscribed(self, ctx: Any) -> None:
        self._record("unsubscribed", ctx, self.unsubscribed)

    async def on_publication(self, ctx: Any) -> None:
        self._record("publication", ctx.pub, self.publications)

    async def on_join(self, ctx: Any) -> None:
        self._record("join", ctx.info, self.joins)

    async def on_leave(self, ctx: Any) -> None:
        self._record("leave", ctx.info, self.leaves)

    async def on_error(self, ctx: Any) -> None:
        self._record("error", ctx, self.errors)


class Clients:
    """Creates SDK clients and disconnects them all at teardown."""

    def __init__(self) -> None:
        self.created: list[tuple[Any, ClientEvents]] = []

    def new(self, srv: ServerProcess, token: str = "", **kwargs: Any) -> tuple[Any, ClientEvents]:
        events = ClientEvents()
        kwargs.setdefault("max_reconnect_delay", 1.0)
        client = Client(srv.ws_url, events=events, token=token, proxy=None, **kwargs)
        self.created.append((client, events))
        return client, events

    async def connect(
        self, srv: ServerProcess, user: str = "42", **kwargs: Any
    ) -> tuple[Any, ClientEvents]:
        client, events = self.new(srv, make_token(user), **kwargs)
        await client.connect()
        ctx = await next_item(events.connected)
        assert ctx.client == client.client_id
        return client, events

    async def close(self) -> None:
        for client, _ in self.created:
            await client.disconnect()
        # The SDK closes sockets in background tasks; let them finish before the loop closes.
        tasks = {t for client, _ in self.created for t in client._background_tasks}
        if tasks:
            await asyncio.wait(tasks, timeout=T)


async def subscribe(client: Any, channel: str, **kwargs: Any) -> tuple[Any, SubEvents, Any]:
    """Subscribe and wait for the subscribed event; returns (subscription, events, context)."""
    events = SubEvents()
    kwargs.setdefault("max_resubscribe_delay", 1.0)
    sub = client.new_subscription(channel, events=events, **kwargs)
    await sub.subscribe()
    ctx = await next_item(events.subscribed)
    assert ctx.channel == channel
    assert sub.state == SubscriptionState.SUBSCRIBED
    return sub, events, ctx
