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

import msgspec

from tidings.protocol import codec, pbcodec
from tidings.protocol.fossil import create_delta
from tidings.protocol.kinds import KINDS, PROTOBUF_KINDS
from tidings.protocol.messages import Publication, Push, Raw
from tidings.protocol.session import as_full_string

if TYPE_CHECKING:
    from tidings.core.client import Client

__all__ = ["ChannelSubscribers", "Hub", "Shared"]

_NONE: list[Client] = []
_string = msgspec.json.Encoder()


class Shared:
    """One encoded message shared by every recipient; framed lazily per transport kind.

    A publication also knows its two encodings for delta subscriptions (PROTOCOL.md §6.6),
    made on first use: in full with ``data`` as a JSON string, and as a fossil delta against
    the channel's previous publication (``prev``) when the publish asked for delta."""

    __slots__ = ("_delta", "_delta_pb", "_full", "_patch_bytes", "_pb", "channel", "frames",
                 "payload", "prev", "pub", "push", "wants_delta")

    def __init__(
        self, payload: bytes, channel: str = "", pub: Publication | None = None,
        wants_delta: bool = False, push: Push | None = None,
    ) -> None:
        self.payload = payload
        self.push = push  # for the Protobuf encoding of a non-publication (join, leave)
        self._pb: bytes | None = None
        self.frames: list[bytes | None] = [None] * len(KINDS)  # one per transport kind
        self.channel = channel
        self.pub = pub
        self.wants_delta = wants_delta
        self.prev: bytes | None = None
        self._full: bytes | None = None
        self._delta: bytes | None = None
        self._delta_pb: bytes | None = None
        self._patch_bytes: bytes | None = None

    def framed(self, kind: int, frame: Callable[[bytes], bytes]) -> bytes:
        data = self.frames[kind]
        if data is None:
            payload = self.pb_payload() if kind in PROTOBUF_KINDS else self.payload
            data = self.frames[kind] = frame(payload)
        return data

    def pb_payload(self) -> bytes:
        """The Protobuf encoding, made on first use."""
        if self._pb is None:
            push = self.push
            if push is None:
                push = Push(channel=self.channel, pub=self.pub)
            self._pb = pbcodec.encode_push(push)
        return self._pb

    def full_string(self) -> bytes:
        if self._full is None:
            pub = self.pub
            if pub is None:
                return self.payload
            self._full = codec.encode_push(Push(channel=self.channel,
                                                pub=as_full_string(pub)))
        return self._full

    def full_for(self, client: Client) -> bytes:
        """The full publication as a delta subscription of this client's protocol gets it."""
        return self.pb_payload() if client.transport.codec.PROTOBUF else self.full_string()

    def delta_for(self, client: Client) -> bytes | None:
        if client.transport.codec.PROTOBUF:
            return self.delta_pb()
        return self.delta_string()

    def _patch(self) -> bytes | None:
        """The fossil delta of this publication against ``prev`` (computed once for both
        protocols), or None when the publisher did not ask for delta or it is not smaller."""
        pub, prev = self.pub, self.prev
        if pub is None or prev is None or not self.wants_delta:
            return None
        if self._patch_bytes is None:
            data = bytes(pub.data)
            patch = create_delta(prev, data)
            self._patch_bytes = patch if len(patch) < len(data) else b""
        return self._patch_bytes or None

    def _delta_pub(self, data: bytes) -> Push:
        pub = self.pub
        assert pub is not None
        return Push(channel=self.channel, pub=Publication(
            data=Raw(data), info=pub.info, offset=pub.offset, tags=pub.tags, delta=True,
        ))

    def delta_pb(self) -> bytes | None:
        """Protobuf: the raw delta bytes as data (PROTOCOL.md §6.6)."""
        if self._delta_pb is None:
            patch = self._patch()
            self._delta_pb = pbcodec.encode_push(self._delta_pub(patch)) if patch else b""
        return self._delta_pb or None

    def delta_string(self) -> bytes | None:
        """JSON: the delta as a JSON string (PROTOCOL.md §6.6), or None when there is none
        worth sending (also when the patch is not valid UTF-8 text)."""
        if self._delta is None:
            patch = self._patch()
            try:
                text = patch.decode("utf-8") if patch else ""
            except UnicodeDecodeError:
                text = ""
            self._delta = (
                codec.encode_push(self._delta_pub(_string.encode(text))) if text else b""
            )
        return self._delta or None


class ChannelSubscribers:
    __slots__ = ("clients", "delivered", "delta", "epoch", "join_leave", "prev", "ready",
                 "syncing", "waiting")

    def __init__(self) -> None:
        # dicts, not sets: deterministic delivery order and O(1) removal
        self.clients: dict[Client, None] = {}
        self.join_leave: dict[Client, None] = {}
        self.syncing: dict[Client, list[tuple[int, Shared]]] = {}
        self.waiting: dict[Client, int] = {}
        # Delta subscriptions (live), each with "has the previous publication" (PROTOCOL.md
        # §6.6), and the data of the channel's previous publication they would delta against.
        self.delta: dict[Client, bool] = {}
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
    def _go_live(subs: ChannelSubscribers, client: Client, delta: bool) -> None:
        if delta:
            subs.delta[client] = False  # the first publication goes in full
        else:
            subs.clients[client] = None

    def remove(self, channel: str, client: Client) -> bool:
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

    def broadcast(self, subs: ChannelSubscribers, shared: Shared, offset: int) -> list[Client]:
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
        missed: list[Client] = []
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
                        client.enqueue(shared.full_for(client))
                        if shared.pub is not None:
                            subs.prev = bytes(shared.pub.data)
                    else:
                        subs.clients[client] = None
                        client.enqueue_shared(shared)
        return missed

    @staticmethod
    def _deliver_one(client: Client, shared: Shared) -> None:
        sub = client.session.subs.get(shared.channel)
        if sub is not None and sub.delta:
            client.enqueue(shared.full_for(client))
        else:
            client.enqueue_shared(shared)

    @staticmethod
    def _broadcast_delta(subs: ChannelSubscribers, shared: Shared) -> None:
        """Delta subscriptions: a delta against the previous publication for those that have
        it, in full for the others (and whenever a delta is not worth it)."""
        shared.prev = subs.prev
        delta = subs.delta
        for client, has_prev in delta.items():
            payload = shared.delta_for(client) if has_prev else None
            client.enqueue(payload or shared.full_for(client))
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
