"""In-memory engine: one process, no external services (the default).

Streams follow the reference model of PROTOCOL.md §6.1: offsets start at 1, the window keeps
the last ``size`` items, items vanish ``ttl`` seconds after the last publish while the top
offset and epoch stay, and the whole stream (new epoch) is forgotten ``meta_ttl`` seconds after
its last use. Time comes from an injectable clock so tests control it.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import string
import time
from collections import Counter, deque
from collections.abc import Callable

from tidings.engine.base import (
    NO_OPTIONS,
    BrokerEventHandler,
    Engine,
    HistoryOptions,
    PresenceStats,
    PublishOptions,
)
from tidings.protocol.messages import ClientInfo, Publication, StreamPosition

__all__ = ["MemoryEngine", "new_epoch"]

IDEMPOTENCY_TTL = 300.0
_LETTERS = string.ascii_letters


def new_epoch() -> str:
    """Eight random letters (about 45 bits): cheap enough to make one per publish."""
    return "".join([_LETTERS[b % 52] for b in os.urandom(8)])


class _Stream:
    __slots__ = ("epoch", "items", "last_publish", "last_used", "meta_ttl", "top")

    def __init__(self, now: float, meta_ttl: float) -> None:
        self.epoch = new_epoch()
        self.top = 0
        self.items: deque[Publication] = deque()
        self.last_publish = now
        self.last_used = now
        self.meta_ttl = meta_ttl


class MemoryEngine:
    """Broker + presence in this process's memory."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._handler: BrokerEventHandler | None = None
        self._streams: dict[str, _Stream] = {}
        self._idempotency: dict[tuple[str, str], tuple[float, StreamPosition]] = {}
        self._presence: dict[str, dict[str, ClientInfo]] = {}
        self._users: dict[str, Counter[str]] = {}
        self._connections: dict[str, set[str]] = {}  # user -> client ids
        self._sweeper: asyncio.Task[None] | None = None
        self.idempotency_ttl = IDEMPOTENCY_TTL

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_forever())

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
            self._sweeper = None

    async def ready(self) -> None:
        """Always ready: the state is in this process."""

    async def _sweep_forever(self) -> None:
        while True:
            await asyncio.sleep(10.0)
            self.sweep()

    def sweep(self) -> None:
        """Drop expired history items, stream metadata and idempotency keys."""
        now = self._clock()
        for key, (expires, _) in list(self._idempotency.items()):
            if expires <= now:
                del self._idempotency[key]
        for channel, stream in list(self._streams.items()):
            if now - stream.last_used > stream.meta_ttl:
                del self._streams[channel]

    # ------------------------------------------------------------------ broker

    presence_ttl = 0.0  # entries live until removed: the process holds them

    def register_handler(self, handler: BrokerEventHandler, node_id: str = "") -> None:
        self._handler = handler

    async def subscribe(self, channel: str) -> None:
        # Every publication reaches this node's handler; the node filters by its hub.
        return None

    async def unsubscribe(self, channel: str) -> None:
        return None

    def _stream(self, channel: str, options: HistoryOptions, now: float) -> _Stream:
        stream = self._streams.get(channel)
        if stream is not None and now - stream.last_used > stream.meta_ttl:
            stream = None  # metadata expired: a new stream with a new epoch
        if stream is None:
            stream = _Stream(now, options.meta_ttl)
            self._streams[channel] = stream
        elif stream.items and now - stream.last_publish > options.ttl:
            stream.items.clear()
        stream.last_used = now
        stream.meta_ttl = options.meta_ttl
        return stream

    async def publish(
        self, channel: str, pub: Publication, options: PublishOptions = NO_OPTIONS
    ) -> tuple[StreamPosition, bool]:
        now = self._clock()
        history, idempotency_key = options.history, options.idempotency_key
        if idempotency_key:
            seen = self._idempotency.get((channel, idempotency_key))
            if seen is not None and seen[0] > now:
                return seen[1], True
        if history is not None:
            stream = self._stream(channel, history, now)
            stream.top += 1
            pub.offset = stream.top
            stream.items.append(pub)
            while len(stream.items) > history.size:
                stream.items.popleft()
            stream.last_publish = now
            position = StreamPosition(offset=stream.top, epoch=stream.epoch)
        else:
            position = StreamPosition()
        if idempotency_key:
            self._idempotency[(channel, idempotency_key)] = (now + self.idempotency_ttl, position)
        if self._handler is not None:
            self._handler.handle_publication(channel, pub, position, options.delta)
        return position, False

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        if self._handler is not None:
            self._handler.handle_join(channel, info)

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        if self._handler is not None:
            self._handler.handle_leave(channel, info)

    async def publish_control(self, data: bytes, node_id: str = "") -> None:
        if self._handler is not None:
            self._handler.handle_control(data)

    async def history(
        self,
        channel: str,
        *,
        options: HistoryOptions,
        limit: int,
        since: StreamPosition | None = None,
        reverse: bool = False,
    ) -> tuple[list[Publication], StreamPosition]:
        stream = self._stream(channel, options, self._clock())
        position = StreamPosition(offset=stream.top, epoch=stream.epoch)
        if limit == 0 or not stream.items:
            return [], position
        items = list(stream.items)
        if since is not None:
            if reverse:
                items = [p for p in reversed(items) if p.offset < since.offset]
            else:
                items = [p for p in items if p.offset > since.offset]
        elif reverse:
            items.reverse()
        if limit > 0:
            items = items[:limit]
        return items, position

    async def remove_history(self, channel: str) -> None:
        stream = self._streams.get(channel)
        if stream is not None:
            stream.items.clear()

    # ------------------------------------------------------------------ presence

    async def add_presence(self, channel: str, client_id: str, info: ClientInfo) -> None:
        clients = self._presence.setdefault(channel, {})
        if client_id not in clients:
            self._users.setdefault(channel, Counter())[info.user] += 1
        clients[client_id] = info

    async def remove_presence(self, channel: str, client_id: str, user: str) -> None:
        clients = self._presence.get(channel)
        if clients is None or clients.pop(client_id, None) is None:
            return
        users = self._users[channel]
        users[user] -= 1
        if users[user] <= 0:
            del users[user]
        if not clients:
            del self._presence[channel]
            del self._users[channel]

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        return dict(self._presence.get(channel, {}))

    async def presence_stats(self, channel: str) -> PresenceStats:
        clients = self._presence.get(channel, {})
        return PresenceStats(len(clients), len(self._users.get(channel, ())))

    async def add_user_connection(self, user: str, client_id: str, limit: int) -> bool:
        clients = self._connections.setdefault(user, set())
        if client_id not in clients and 0 < limit <= len(clients):
            return False
        clients.add(client_id)
        return True

    async def remove_user_connection(self, user: str, client_id: str) -> None:
        clients = self._connections.get(user)
        if clients is not None:
            clients.discard(client_id)
            if not clients:
                del self._connections[user]


_: type[Engine] = MemoryEngine
