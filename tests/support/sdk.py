"""The real centrifuge-python SDK as the test client: event handlers that queue (to await) and
log (in order) everything the SDK reports, a registry that creates clients and disconnects them
all at teardown, and a way to drop a client's connection while holding its reconnect.

Every wait is bounded (``T``, tests/support/timing.py).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from centrifuge import (
    Client,
    ClientEventHandler,
    ClientState,
    SubscriptionEventHandler,
    SubscriptionState,
)

from tests.support.server import make_token
from tests.support.timing import T


class WsTarget(Protocol):
    """Where clients connect: a ``ServerProcess``, or a proxy in front of nodes."""

    @property
    def ws_url(self) -> str: ...


async def next_item(
    queue: asyncio.Queue[Any], pred: Callable[[Any], bool] = lambda _: True, within: float = T
) -> Any:
    """The next queued event matching ``pred`` (others are dropped), within ``within`` s."""

    async def take() -> Any:
        while True:
            item = await queue.get()
            if pred(item):
                return item

    return await asyncio.wait_for(take(), within)


@dataclass
class Event:
    """One recorded SDK event, in the order the SDK emitted it."""

    kind: str
    ctx: Any
    at: float = field(default_factory=time.monotonic)


class _Recorder:
    def __init__(self) -> None:
        self.log: list[Event] = []

    def _record(self, kind: str, ctx: Any, queue: asyncio.Queue[Any]) -> None:
        self.log.append(Event(kind, ctx))
        queue.put_nowait(ctx)


class ClientEvents(ClientEventHandler, _Recorder):  # type: ignore[misc]  # the SDK has no hints
    """Client-level events: queues for awaiting, plus an ordered log of everything.

    With ``gate`` set, a reconnect (``on_connecting`` after a lost connection) is held until
    the gate opens: the SDK awaits this handler before it schedules the reconnect."""

    def __init__(self) -> None:
        _Recorder.__init__(self)
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
        self.gate: asyncio.Event | None = None  # when set: hold reconnects until released
        self.held = asyncio.Event()

    async def on_connected(self, ctx: Any) -> None:
        self._record("connected", ctx, self.connected)

    async def on_connecting(self, ctx: Any) -> None:
        self._record("connecting", ctx, self.connecting)
        gate = self.gate
        if gate is not None and ctx.code != 0:  # 0 = connect() called, not a lost connection
            self.held.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gate.wait(), 3 * T)

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


class SubEvents(SubscriptionEventHandler, _Recorder):  # type: ignore[misc]  # the SDK: no hints
    """Subscription events: queues for awaiting, plus an ordered log of everything."""

    def __init__(self) -> None:
        _Recorder.__init__(self)
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
    """Creates SDK clients (and their subscriptions) and disconnects them all at teardown.

    ``max_retry_delay`` caps the SDK's reconnect and resubscribe backoff
    (``max_reconnect_delay``, ``max_resubscribe_delay``; the SDK's own caps are 20 s and 10 s),
    for tests where nodes or Redis go away; ``client_options`` go to every ``Client`` (e.g.
    ``use_protobuf=True``). Keyword arguments of a single call win over both."""

    def __init__(self, *, max_retry_delay: float | None = None, **client_options: Any) -> None:
        self.max_retry_delay = max_retry_delay
        self.client_options = client_options
        self.created: list[tuple[Any, ClientEvents]] = []

    def new(self, target: WsTarget, token: str = "", **kwargs: Any) -> tuple[Any, ClientEvents]:
        events = ClientEvents()
        options = dict(self.client_options)
        if self.max_retry_delay is not None:
            options["max_reconnect_delay"] = self.max_retry_delay
        options.update(kwargs)
        client = Client(target.ws_url, events=events, token=token, proxy=None, **options)
        self.created.append((client, events))
        return client, events

    async def connect(
        self, target: WsTarget, user: str = "42", **kwargs: Any
    ) -> tuple[Any, ClientEvents]:
        """A client of ``user``, connected."""
        client, events = self.new(target, make_token(user), **kwargs)
        await client.connect()
        ctx = await next_item(events.connected)
        assert ctx.client == client.client_id
        return client, events

    async def subscribe(self, client: Any, channel: str, **kwargs: Any
                        ) -> tuple[Any, SubEvents, Any]:
        """Subscribe and wait for the subscribed event; returns (subscription, events,
        context)."""
        events = SubEvents()
        if self.max_retry_delay is not None:
            kwargs.setdefault("max_resubscribe_delay", self.max_retry_delay)
        sub = client.new_subscription(channel, events=events, **kwargs)
        await sub.subscribe()
        ctx = await next_item(events.subscribed)
        assert ctx.channel == channel
        assert sub.state == SubscriptionState.SUBSCRIBED
        return sub, events, ctx

    async def close(self) -> None:
        for client, events in self.created:
            if events.gate is not None:
                events.gate.set()
            await client.disconnect()
        # The SDK closes sockets in background tasks; let them finish before the loop closes.
        tasks = {t for client, _ in self.created for t in client._background_tasks}
        if tasks:
            await asyncio.wait(tasks, timeout=T)


async def drop_transport(client: Any, events: ClientEvents) -> Callable[[], None]:
    """Close the client's WebSocket, holding its reconnect until the returned function is called."""
    gate = events.gate = asyncio.Event()
    events.held.clear()
    await client._conn.close()
    await asyncio.wait_for(events.held.wait(), T)
    assert client.state == ClientState.CONNECTING

    def release() -> None:
        events.gate = None
        gate.set()

    return release
