"""Channels as this node sees them: the subscribers in the hub, the engine subscriptions
behind them, and what the engine delivers for them.

- ``add_subscriber`` registers a subscribing client (buffered until its subscribe completes,
  see :mod:`tidings.core.hub`) and makes sure the engine delivers the channel here before the
  client reads its stream; the engine subscription goes when the last subscriber does;
- broker events (publications, joins, leaves, reconnects) are delivered to the hub; publication
  offsets are checked per channel, so a positioned subscriber gets each offset exactly once or
  is told to recover (docs/design.md, "Gaps");
- ``publish``/``history`` apply a channel's options (history size, TTLs, delta) to the engine.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

from tidings.config import ChannelOptions, Config
from tidings.core.hub import ChannelSubscribers, Hub
from tidings.core.peer import Peer
from tidings.core.shared import Shared
from tidings.engine.base import Engine, EngineError, HistoryOptions, PublishOptions
from tidings.errors import Disconnect, ErrorCode, Unsubscribe
from tidings.logs import client_fields
from tidings.metrics.counts import Counts
from tidings.protocol import codec
from tidings.protocol.channels import ChannelRules
from tidings.protocol.messages import (
    ClientInfo,
    HistoryResult,
    JoinLeave,
    Publication,
    Push,
    StreamPosition,
)
from tidings.protocol.recovery import effective_limit, validate_since
from tidings.protocol.session import Sub

__all__ = ["Channels"]

log = logging.getLogger("tidings.channels")

Spawn = Callable[[Coroutine[Any, Any, Any]], object]


class Channels:
    def __init__(self, config: Config, engine: Engine, rules: ChannelRules, spawn: Spawn,
                 counts: Counts | None = None) -> None:
        self.config = config
        self.counts = counts if counts is not None else Counts()
        self.engine = engine
        self.rules = rules
        self.spawn = spawn
        self.hub = Hub()

    # ---------------------------------------------------------------- subscribers

    async def add_subscriber(self, channel: str, client: Peer) -> None:
        """Register the client (syncing) and make sure the engine delivers the channel here
        before the caller reads its stream: the first subscriber subscribes the engine, later
        ones wait for that subscription to be in effect."""
        first = self.hub.start_sync(channel, client)
        self.counts.actions["add_subscription"] += 1
        subs = self.hub.channels[channel]
        if not first:
            if subs.ready is not None:
                await asyncio.shield(subs.ready)
            return
        ready = subs.ready = asyncio.get_running_loop().create_future()
        self.counts.actions["broker_subscribe"] += 1
        try:
            await self.engine.subscribe(channel)
        except BaseException as exc:
            ready.set_exception(EngineError(f"subscribe to {channel} failed: {exc!r}"))
            ready.exception()  # retrieved: waiters (if any) get it; none is fine too
            raise
        else:
            ready.set_result(None)
        finally:
            if subs.ready is ready:
                subs.ready = None

    def hub_remove(self, channel: str, client: Peer) -> None:
        self.counts.actions["remove_subscription"] += 1
        if self.hub.remove(channel, client):
            self.spawn(self._unsubscribe_if_empty(channel))

    async def _unsubscribe_if_empty(self, channel: str) -> None:
        # Runs later: a subscriber that came meanwhile keeps the engine subscription.
        if channel not in self.hub.channels:
            self.counts.actions["broker_unsubscribe"] += 1
            await self.engine.unsubscribe(channel)

    async def remove_subscriber(self, channel: str, client: Peer) -> None:
        self.counts.actions["remove_subscription"] += 1
        if self.hub.remove(channel, client):
            self.counts.actions["broker_unsubscribe"] += 1
            await self.engine.unsubscribe(channel)

    async def leave_channel(self, client: Peer, sub: Sub, *, announce: bool = True) -> None:
        """Remove the client's presence in the channel and (``announce``) publish its leave."""
        try:
            if sub.presence:
                self.counts.actions["remove_presence"] += 1
                await self.engine.remove_presence(sub.channel, client.client_id, client.user)
            if sub.join_leave and announce:
                info = client.session.client_info(sub.chan_info)
                self.counts.broker_sent["leave"] += 1
                await self.engine.publish_leave(sub.channel, info)
        except EngineError as exc:
            # Presence entries expire by themselves (engine.presence_ttl).
            log.warning("leave of client %s from %s not published: %s", client.client_id,
                        sub.channel, exc,
                        extra=client_fields(client, channel=sub.channel, error=str(exc)))

    def history_options(self, opts: ChannelOptions) -> HistoryOptions:
        return HistoryOptions(
            size=opts.history_size,
            ttl=opts.history_ttl,
            meta_ttl=opts.history_meta_ttl or self.config.channel.history_meta_ttl,
        )

    async def publish(
        self,
        channel: str,
        pub: Publication,
        opts: ChannelOptions,
        *,
        skip_history: bool = False,
        idempotency_key: str = "",
        delta: bool = False,
    ) -> StreamPosition:
        history = (
            self.history_options(opts) if opts.history_enabled and not skip_history else None
        )
        options = PublishOptions(
            history=history,
            idempotency_key=idempotency_key,
            delta=(delta or opts.delta_publish) and bool(opts.allowed_delta_types),
        )
        self.counts.broker_sent["publication"] += 1
        position, _ = await self.engine.publish(channel, pub, options)
        return position

    async def history(
        self,
        channel: str,
        opts: ChannelOptions,
        *,
        limit: int,
        since: StreamPosition | None,
        reverse: bool,
    ) -> HistoryResult:
        self.counts.actions["history"] += 1
        if since is not None and reverse and since.offset == 0:
            raise ErrorCode.BAD_REQUEST
        n = effective_limit(limit, self.config.client.history_max_publication_limit)
        pubs, top = await self.engine.history(
            channel, options=self.history_options(opts), limit=n, since=since, reverse=reverse
        )
        validate_since(since, reverse, top)
        return HistoryResult(publications=pubs, epoch=top.epoch, offset=top.offset)

    # ---------------------------------------------------------------- broker events

    def handle_publication(
        self, channel: str, pub: Publication, position: StreamPosition, wants_delta: bool
    ) -> None:
        subs = self.hub.channels.get(channel)
        if subs is None:
            return
        offset = position.offset
        if offset:
            # Gap detection: a positioned subscriber must see every offset exactly once.
            if subs.epoch != position.epoch:
                if subs.epoch:
                    log.warning("channel %s: stream epoch changed (%s -> %s)", channel,
                                subs.epoch, position.epoch, extra={"channel": channel})
                    self._insufficient_state(channel, subs)
                subs.epoch = position.epoch
                subs.delivered = offset
            elif offset > subs.delivered + 1 and subs.delivered >= 0:
                # Live positioned subscribers are at `delivered`; waiting ones check their own
                # position in broadcast().
                log.warning("channel %s: publications %d..%d never arrived", channel,
                            subs.delivered + 1, offset - 1, extra={"channel": channel})
                self._insufficient_state(channel, subs, waiting_before=0)
                subs.delivered = offset
            elif offset > subs.delivered:
                subs.delivered = offset
        started = time.perf_counter()
        shared = Shared(codec.encode_push(Push(channel=channel, pub=pub)), channel, pub,
                        wants_delta)
        missed = self.hub.broadcast(subs, shared, offset)
        self.counts.broadcast.observe(time.perf_counter() - started)
        for client in missed:
            client.drop_subscription(channel, Unsubscribe.INSUFFICIENT_STATE)

    def _insufficient_state(
        self, channel: str, subs: ChannelSubscribers, *, live: bool = True,
        waiting_before: int | None = None,
    ) -> None:
        """Positioned subscribers of ``channel`` may have missed publications: each one is told
        to resubscribe and recover (server-side subscriptions: disconnect 3010). ``live``:
        the live ones (and those mid-subscribe); waiting ones all, or with ``waiting_before``
        only those whose read position is older."""
        if live:
            for client in [*subs.clients, *subs.delta]:
                sub = client.session.subs.get(channel)
                if sub is not None and sub.positioned:
                    client.drop_subscription(channel, Unsubscribe.INSUFFICIENT_STATE)
            for client in list(subs.syncing):
                # Mid-subscribe: what it read may predate the gap. Rare; reconnect and recover.
                client.close(Disconnect.INSUFFICIENT_STATE)
        for client, live_from in list(subs.waiting.items()):
            if waiting_before is None or live_from < waiting_before:
                client.drop_subscription(channel, Unsubscribe.INSUFFICIENT_STATE)

    def handle_join(self, channel: str, info: ClientInfo) -> None:
        if channel in self.hub.channels:
            push = Push(channel=channel, join=JoinLeave(info=info))
            self.hub.broadcast_join_leave(channel, Shared(codec.encode_push(push), push=push))

    def handle_leave(self, channel: str, info: ClientInfo) -> None:
        if channel in self.hub.channels:
            push = Push(channel=channel, leave=JoinLeave(info=info))
            self.hub.broadcast_join_leave(channel, Shared(codec.encode_push(push), push=push))

    def handle_reconnect(self, channels: list[str]) -> None:
        self.spawn(self._check_positions(channels))

    async def _check_positions(self, channels: list[str]) -> None:
        """After the engine's subscription was interrupted: a channel whose stream moved past
        what this node delivered lost publications here; its positioned subscribers recover."""
        for channel in channels:
            if channel not in self.hub.channels:
                continue
            opts = self.rules.options(channel)
            if not opts.history_enabled:
                continue
            try:
                _, top = await self.engine.history(
                    channel, options=self.history_options(opts), limit=0
                )
            except EngineError as exc:
                log.warning("channel %s: position check failed: %s", channel, exc,
                            extra={"channel": channel, "error": str(exc)})
                subs = self.hub.channels.get(channel)
                if subs is not None:
                    self._insufficient_state(channel, subs)
                continue
            subs = self.hub.channels.get(channel)
            if subs is None:
                continue
            if subs.epoch and top.epoch != subs.epoch:
                log.warning("channel %s: stream epoch changed while disconnected", channel,
                            extra={"channel": channel})
                self._insufficient_state(channel, subs)
            elif (0 <= subs.delivered < top.offset) or any(
                top.offset > live_from for live_from in subs.waiting.values()
            ):
                log.warning("channel %s: publications up to offset %d may have been missed",
                            channel, top.offset, extra={"channel": channel})
                self._insufficient_state(channel, subs, live=0 <= subs.delivered < top.offset,
                                         waiting_before=top.offset)
            else:
                continue
            subs.epoch, subs.delivered = top.epoch, max(top.offset, subs.delivered)

    def forget(self, client: Peer) -> None:
        """A client is gone: out of the hub now, presence and leave messages in background."""
        session = client.session
        subs = list(session.subs.values())
        session.subs.clear()
        inflight = list(session.inflight)
        for sub in subs:
            self.hub_remove(sub.channel, client)
        for channel in inflight:
            self.hub_remove(channel, client)
        if subs:
            self.spawn(self._leave_all(client, subs))

    async def _leave_all(self, client: Peer, subs: list[Sub]) -> None:
        for sub in subs:
            await self.leave_channel(client, sub)

    def subscribed_counts(self, pattern: str = "") -> dict[str, int]:
        """Channels with subscribers on this node, with how many (for the API's channels)."""
        result: dict[str, int] = {}
        for channel, subs in self.hub.channels.items():
            count = self.hub.num_subscribed(subs)
            if count and (not pattern or fnmatch.fnmatchcase(channel, pattern)):
                result[channel] = count
        return result
