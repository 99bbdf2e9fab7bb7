"""The node-local registry of subscribers, and the fan-out hot path.

Rules that keep fan-out cheap (see docs/design.md):
- a publication is encoded once per channel into a :class:`Shared` message; each subscriber gets
  the same object, and its transport-framed bytes are built once per transport kind;
- delivering to a subscriber is one method call that appends to the client's pending list; the
  node flushes all dirty clients in one round (``Node.schedule_flush``), so a burst of
  publications becomes one write per connection;
- a client that is still subscribing sits in ``syncing`` (not ``clients``) and its publications
  are buffered, so the subscribe reply always precedes the first publication and nothing between
  the reply's offset and the first live publication is lost or duplicated.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tidings.core.client import Client

__all__ = ["ChannelSubscribers", "Hub", "Shared"]


class Shared:
    """One encoded message shared by every recipient; framed lazily per transport kind."""

    __slots__ = ("frames", "payload")

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.frames: list[bytes | None] = [None, None, None, None]

    def framed(self, kind: int, frame: Callable[[bytes], bytes]) -> bytes:
        data = self.frames[kind]
        if data is None:
            data = self.frames[kind] = frame(self.payload)
        return data


class ChannelSubscribers:
    __slots__ = ("clients", "join_leave", "syncing")

    def __init__(self) -> None:
        # dicts, not sets: deterministic delivery order and O(1) removal
        self.clients: dict[Client, None] = {}
        self.join_leave: dict[Client, None] = {}
        self.syncing: dict[Client, list[tuple[int, Shared]]] = {}

    def __len__(self) -> int:
        return len(self.clients) + len(self.syncing)


class Hub:
    def __init__(self) -> None:
        self.channels: dict[str, ChannelSubscribers] = {}

    def start_sync(self, channel: str, client: Client) -> bool:
        """Register a subscribing client; returns True if it is the channel's first."""
        subs = self.channels.get(channel)
        first = subs is None
        if subs is None:
            subs = self.channels[channel] = ChannelSubscribers()
        subs.syncing[client] = []
        return first

    def finish_sync(
        self, channel: str, client: Client, *, push_join_leave: bool
    ) -> list[tuple[int, Shared]]:
        """Promote a syncing client to a live subscriber; returns what was buffered."""
        subs = self.channels[channel]
        buffered = subs.syncing.pop(client, [])
        subs.clients[client] = None
        if push_join_leave:
            subs.join_leave[client] = None
        return buffered

    def remove(self, channel: str, client: Client) -> bool:
        """Remove a client (live or syncing); returns True if the channel became empty."""
        subs = self.channels.get(channel)
        if subs is None:
            return False
        subs.clients.pop(client, None)
        subs.join_leave.pop(client, None)
        subs.syncing.pop(client, None)
        if not subs.clients and not subs.syncing:
            del self.channels[channel]
            return True
        return False

    def num_subscribers(self, channel: str) -> int:
        subs = self.channels.get(channel)
        return len(subs) if subs is not None else 0

    def broadcast(self, channel: str, shared: Shared, offset: int) -> None:
        subs = self.channels.get(channel)
        if subs is None:
            return
        for client in subs.clients:
            client.enqueue_shared(shared)
        if subs.syncing:
            for buffer in subs.syncing.values():
                buffer.append((offset, shared))

    def broadcast_join_leave(self, channel: str, shared: Shared) -> None:
        subs = self.channels.get(channel)
        if subs is None:
            return
        for client in subs.join_leave:
            client.enqueue_shared(shared)
