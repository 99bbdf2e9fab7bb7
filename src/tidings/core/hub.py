"""The node-local registry of subscribers, and the fan-out hot path.

Rules that keep fan-out cheap (see docs/design.md):
- a publication is encoded once per channel into a :class:`Shared` message; each subscriber gets
  the same object, and its transport-framed bytes are built once per transport kind;
- delivering to a subscriber is one method call that appends to the client's pending list; the
  node flushes all dirty clients in one round (:mod:`tidings.core.writer`), so a burst of
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

from tidings.core.peer import Peer
from tidings.core.shared import Shared

__all__ = ["ChannelSubscribers", "Hub"]

_NONE: list[Peer] = []


class ChannelSubscribers:
    __slots__ = ("clients", "delivered", "delta", "epoch", "join_leave", "prev", "ready",
                 "syncing", "waiting")

    def __init__(self) -> None:
        # dicts, not sets: deterministic delivery order and O(1) removal
        self.clients: dict[Peer, None] = {}
        self.join_leave: dict[Peer, None] = {}
        self.syncing: dict[Peer, list[tuple[int, Shared]]] = {}
        self.waiting: dict[Peer, int] = {}
        # Delta subscriptions (live), each with "has the previous publication" (PROTOCOL.md
        # §6.6), and the data of the channel's previous publication they would delta against.
        self.delta: dict[Peer, bool] = {}
        self.prev: bytes | None = None
        # The channel's stream as this node has seen it: the epoch, and the offset of the last
        # publication the engine delivered (-1: none yet, so no baseline). Used to detect gaps.
        self.epoch = ""
        self.delivered = -1
        # Set while the engine subscription of the channel is being made (Node.add_subscriber).
        self.ready: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self.clients) + len(self.syncing) + len(self.waiting) + len(self.delta)


class Hub:
    def __init__(self) -> None:
        self.channels: dict[str, ChannelSubscribers] = {}

    def start_sync(self, channel: str, client: Peer) -> bool:
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
        client: Peer,
        *,
        push_join_leave: bool,
        live_from: int = -1,
        epoch: str = "",
        delta: bool = False,
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
            self._go_live(subs, client, delta)
            return buffered
        if not subs.epoch:
            subs.epoch = epoch
        fresh = [item for item in buffered if item[0] > live_from]
        if fresh or subs.delivered >= live_from:
            self._go_live(subs, client, delta)
        else:
            subs.waiting[client] = live_from
        return fresh

    @staticmethod
    def _go_live(subs: ChannelSubscribers, client: Peer, delta: bool) -> None:
        if delta:
            subs.delta[client] = False  # the first publication goes in full
        else:
            subs.clients[client] = None

    def remove(self, channel: str, client: Peer) -> bool:
        """Remove a client (live or syncing); returns True if the channel became empty."""
        subs = self.channels.get(channel)
        if subs is None:
            return False
        subs.clients.pop(client, None)
        subs.join_leave.pop(client, None)
        subs.syncing.pop(client, None)
        subs.waiting.pop(client, None)
        subs.delta.pop(client, None)
        if not subs.clients and not subs.syncing and not subs.waiting and not subs.delta:
            del self.channels[channel]
            return True
        return False

    def num_subscribed(self, subs: ChannelSubscribers) -> int:
        """Subscribers that completed their subscribe (live or waiting for the live stream)."""
        return len(subs.clients) + len(subs.waiting) + len(subs.delta)

    def broadcast(self, subs: ChannelSubscribers, shared: Shared, offset: int) -> list[Peer]:
        """Deliver to every live subscriber; returns the waiting subscribers that found a gap
        (the first live offset is past the one after what they read): rare, and the caller
        tells them."""
        for client in subs.clients:
            client.enqueue_shared(shared)
        if subs.syncing:
            for buffer in subs.syncing.values():
                buffer.append((offset, shared))
        if subs.delta:
            self._broadcast_delta(subs, shared)
        if not subs.waiting:
            return _NONE
        missed: list[Peer] = []
        for client, live_from in list(subs.waiting.items()):
            if not offset:  # a publication outside the stream (skip_history): deliver it
                self._deliver_one(client, shared)
            elif offset > live_from:
                del subs.waiting[client]
                if offset > live_from + 1:
                    missed.append(client)
                else:
                    sub = client.session.subs.get(shared.channel)
                    if sub is not None and sub.delta:
                        subs.delta[client] = True  # it gets this one in full, next a delta
                        client.enqueue(shared.full_for(client.protobuf))
                        if shared.pub is not None:
                            subs.prev = bytes(shared.pub.data)
                    else:
                        subs.clients[client] = None
                        client.enqueue_shared(shared)
        return missed

    @staticmethod
    def _deliver_one(client: Peer, shared: Shared) -> None:
        sub = client.session.subs.get(shared.channel)
        if sub is not None and sub.delta:
            client.enqueue(shared.full_for(client.protobuf))
        else:
            client.enqueue_shared(shared)

    @staticmethod
    def _broadcast_delta(subs: ChannelSubscribers, shared: Shared) -> None:
        """Delta subscriptions: a delta against the previous publication for those that have
        it, in full for the others (and whenever a delta is not worth it)."""
        shared.prev = subs.prev
        delta = subs.delta
        for client, has_prev in delta.items():
            payload = shared.delta_for(client.protobuf) if has_prev else None
            client.enqueue(payload or shared.full_for(client.protobuf))
            if not has_prev:
                delta[client] = True
        if shared.pub is not None:
            subs.prev = bytes(shared.pub.data)

    def broadcast_join_leave(self, channel: str, shared: Shared) -> None:
        subs = self.channels.get(channel)
        if subs is None:
            return
        for client in subs.join_leave:
            client.enqueue_shared(shared)
