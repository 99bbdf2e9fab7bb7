"""The node-local registry of subscribers, and the fan-out hot path.

Rules that keep fan-out cheap (see docs/design.md):
- a publication is encoded once per channel into a :class:`Shared` message; each subscriber gets
  the same object, and its transport-framed bytes are built once per transport kind;
- delivering to a subscriber is one method call that appends to the client's pending list; the
  node flushes all dirty clients in one round (``Node.schedule_flush``), so a burst of
  publications becomes one write per connection;
- a client that is still subscribing sits in ``syncing`` (not ``clients``) and its publications
  are buffered, so the subscribe reply always precedes the first publication and nothing between
  the reply's offset and the first live publication is lost or duplicated;
- with a distributed engine, publications a subscriber already read from the stream may still be
  in flight on the pub/sub connection when its subscribe completes. Such a positioned subscriber
  waits in ``waiting`` (with the offset it read) until the channel's live stream passes that
  offset; publications up to it are dropped for it, so it gets each offset exactly once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tidings.core.client import Client

__all__ = ["ChannelSubscribers", "Hub", "Shared"]

_NONE: list[Client] = []


class Shared:
    """One encoded message shared by every recipient; framed lazily per transport kind."""

    __slots__ = ("frames", "payload")

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.frames: list[bytes | None] = [None] * 7  # one per transport kind

    def framed(self, kind: int, frame: Callable[[bytes], bytes]) -> bytes:
        data = self.frames[kind]
        if data is None:
            data = self.frames[kind] = frame(self.payload)
        return data


class ChannelSubscribers:
    __slots__ = ("clients", "delivered", "epoch", "join_leave", "ready", "syncing", "waiting")

    def __init__(self) -> None:
        # dicts, not sets: deterministic delivery order and O(1) removal
        self.clients: dict[Client, None] = {}
        self.join_leave: dict[Client, None] = {}
        self.syncing: dict[Client, list[tuple[int, Shared]]] = {}
        self.waiting: dict[Client, int] = {}
        # The channel's stream as this node has seen it: the epoch, and the offset of the last
        # publication the engine delivered (-1: none yet, so no baseline). Used to detect gaps.
        self.epoch = ""
        self.delivered = -1
        # Set while the engine subscription of the channel is being made (Node.add_subscriber).
        self.ready: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self.clients) + len(self.syncing) + len(self.waiting)


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
        self,
        channel: str,
        client: Client,
        *,
        push_join_leave: bool,
        live_from: int = -1,
        epoch: str = "",
    ) -> list[tuple[int, Shared]]:
        """Promote a syncing client to a live subscriber; returns what was buffered. With
        ``live_from`` (a positioned subscriber that read the stream up to that offset) the
        buffered publications up to it are dropped, and if the live stream has not passed it
        yet the client waits for it (see the module doc)."""
        subs = self.channels[channel]
        buffered = subs.syncing.pop(client, [])
        if push_join_leave:
            subs.join_leave[client] = None
        if live_from < 0:
            subs.clients[client] = None
            return buffered
        if not subs.epoch:
            subs.epoch = epoch
        fresh = [item for item in buffered if item[0] > live_from]
        if fresh or subs.delivered >= live_from:
            subs.clients[client] = None
        else:
            subs.waiting[client] = live_from
        return fresh

    def remove(self, channel: str, client: Client) -> bool:
        """Remove a client (live or syncing); returns True if the channel became empty."""
        subs = self.channels.get(channel)
        if subs is None:
            return False
        subs.clients.pop(client, None)
        subs.join_leave.pop(client, None)
        subs.syncing.pop(client, None)
        subs.waiting.pop(client, None)
        if not subs.clients and not subs.syncing and not subs.waiting:
            del self.channels[channel]
            return True
        return False

    def num_subscribed(self, subs: ChannelSubscribers) -> int:
        """Subscribers that completed their subscribe (live or waiting for the live stream)."""
        return len(subs.clients) + len(subs.waiting)

    def broadcast(self, subs: ChannelSubscribers, shared: Shared, offset: int) -> list[Client]:
        """Deliver to every live subscriber; returns the waiting subscribers that found a gap
        (the first live offset is past the one after what they read): rare, and the caller
        tells them."""
        for client in subs.clients:
            client.enqueue_shared(shared)
        if subs.syncing:
            for buffer in subs.syncing.values():
                buffer.append((offset, shared))
        if not subs.waiting:
            return _NONE
        missed: list[Client] = []
        for client, live_from in list(subs.waiting.items()):
            if not offset:  # a publication outside the stream (skip_history): deliver it
                client.enqueue_shared(shared)
            elif offset > live_from:
                del subs.waiting[client]
                if offset > live_from + 1:
                    missed.append(client)
                else:
                    subs.clients[client] = None
                    client.enqueue_shared(shared)
        return missed

    def broadcast_join_leave(self, channel: str, shared: Shared) -> None:
        subs = self.channels.get(channel)
        if subs is None:
            return
        for client in subs.join_leave:
            client.enqueue_shared(shared)
