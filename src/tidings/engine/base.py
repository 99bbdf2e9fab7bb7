"""The engine interface: broker (pub/sub + history streams) and presence.

Guarantees every engine gives (checked by ``tests/contract``):
- ``publish`` appends to the channel stream and delivers to the node's
  :class:`BrokerEventHandler` as one atomic step per channel: handlers see publications of a
  channel in offset order, and a ``history`` call that starts after ``publish`` returned sees
  the publication. The publication delivered and kept in history carries its offset
  (``pub.offset``, 0 without history); the publisher's ``PublishOptions.delta`` reaches the
  handlers beside it and is never part of history.
- Delivery is at most once per node subscription, asynchronous for distributed engines; gaps are
  detectable through offsets. When a distributed engine lost its subscription connection it
  calls ``handle_reconnect`` with the channels that may have missed publications.
- Reading the stream of a history-enabled channel creates it: the epoch it returns is the epoch
  later publications carry, until the stream metadata expires (``meta_ttl``).
- ``history_remove`` drops the items but keeps the top offset and epoch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from tidings.protocol.messages import ClientInfo, Publication, StreamPosition

__all__ = [
    "Broker",
    "BrokerEventHandler",
    "Engine",
    "EngineError",
    "HistoryOptions",
    "PresenceManager",
    "PresenceStats",
    "PublishOptions",
]


class EngineError(Exception):
    """The engine could not complete an operation (e.g. its backing store is unreachable)."""


@dataclass(frozen=True, slots=True)
class HistoryOptions:
    """How a channel keeps history: ``size`` items for ``ttl`` seconds, meta for ``meta_ttl``."""

    size: int
    ttl: float
    meta_ttl: float


@dataclass(frozen=True, slots=True)
class PublishOptions:
    """How one publication is published: kept in the stream (``history``, None: not kept),
    deduplicated (a repeat of ``idempotency_key`` within the engine's idempotency window
    publishes nothing and returns the first position), and sent to delta subscribers as a
    fossil delta (``delta``: the publisher asked for it)."""

    history: HistoryOptions | None = None
    idempotency_key: str = ""
    delta: bool = False


NO_OPTIONS = PublishOptions()


@dataclass(frozen=True, slots=True)
class PresenceStats:
    num_clients: int
    num_users: int


class BrokerEventHandler(Protocol):
    """What a node implements to receive broker events (called on the event loop)."""

    def handle_publication(
        self, channel: str, pub: Publication, position: StreamPosition, delta: bool
    ) -> None:
        """``delta``: the publisher asked for delta (``PublishOptions.delta``)."""
        ...

    def handle_join(self, channel: str, info: ClientInfo) -> None: ...

    def handle_leave(self, channel: str, info: ClientInfo) -> None: ...

    def handle_control(self, data: bytes) -> None: ...

    def handle_reconnect(self, channels: list[str]) -> None:
        """The engine's subscription was interrupted; these channels may have gaps."""
        ...


class Broker(Protocol):
    def register_handler(self, handler: BrokerEventHandler, node_id: str = "") -> None:
        """Deliver events to ``handler``; ``node_id`` addresses this node's control messages."""
        ...

    async def subscribe(self, channel: str) -> None:
        """Start delivering the channel's events to this node."""
        ...

    async def unsubscribe(self, channel: str) -> None: ...

    async def publish(
        self, channel: str, pub: Publication, options: PublishOptions = NO_OPTIONS
    ) -> tuple[StreamPosition, bool]:
        """Append (with ``options.history``) and deliver. Returns the position of the
        publication (offset 0 without history) and whether it was suppressed as an idempotent
        repeat (then the position is the one of the first publish)."""
        ...

    async def publish_join(self, channel: str, info: ClientInfo) -> None: ...

    async def publish_leave(self, channel: str, info: ClientInfo) -> None: ...

    async def publish_control(self, data: bytes, node_id: str = "") -> None:
        """Deliver ``data`` to every node's ``handle_control`` (this one included), or only to
        node ``node_id``."""
        ...

    async def history(
        self,
        channel: str,
        *,
        options: HistoryOptions,
        limit: int,
        since: StreamPosition | None = None,
        reverse: bool = False,
    ) -> tuple[list[Publication], StreamPosition]:
        """Publications (with offsets) and the stream top. ``limit`` 0 returns none, -1 all.
        With ``since``: offsets after it (before it when ``reverse``)."""
        ...

    async def remove_history(self, channel: str) -> None: ...


class PresenceManager(Protocol):
    # Presence entries expire unless re-added within this many seconds (0: they never expire);
    # the node re-adds its clients' entries well within it.
    presence_ttl: float

    async def add_presence(self, channel: str, client_id: str, info: ClientInfo) -> None: ...

    async def remove_presence(self, channel: str, client_id: str, user: str) -> None: ...

    async def presence(self, channel: str) -> dict[str, ClientInfo]: ...

    async def presence_stats(self, channel: str) -> PresenceStats: ...

    async def add_user_connection(self, user: str, client_id: str, limit: int) -> bool:
        """Count ``client_id`` among ``user``'s connections, cluster-wide, unless ``limit``
        (> 0) others are counted already: then nothing changes and the answer is False.
        Re-adding a counted connection always succeeds (it refreshes the entry, which expires
        like presence, after ``presence_ttl``, unless re-added)."""
        ...

    async def remove_user_connection(self, user: str, client_id: str) -> None: ...


class Engine(Broker, PresenceManager, Protocol):
    """An engine is a broker plus a presence manager, started and closed with the node."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def ready(self) -> None:
        """Return if the engine can serve operations now; raise EngineError saying why not.
        Cheap (at most a round trip per backing connection); the caller bounds it with a
        deadline, and cancelling it disturbs no operation in flight. Asked by ``GET /ready``
        (at most once a second)."""
        ...
