"""The node: config, engine, hub, the client registry, timers and server-side actions.

Timers are coarse and shared: one clock task ticks every second. Pings go out per bucket
(clients are spread over ``ping_interval`` one-second buckets, so each tick pings 1/N of them),
pong deadlines, connection/subscription expiry and stale (never-authenticated) connections sit
in one heap. No timer object per connection.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import os
import random
import resource
import socket
import time
import uuid
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from tidings import __version__
from tidings.config import ChannelOptions, Config
from tidings.core.client import Client, ProtobufClient, Transport
from tidings.core.cluster import Cluster
from tidings.core.hub import ChannelSubscribers, Hub, Shared
from tidings.core.limits import Limits
from tidings.engine.base import Engine, EngineError, HistoryOptions, PublishOptions
from tidings.engine.memory import MemoryEngine
from tidings.errors import Disconnect, ErrorCode, Unsubscribe
from tidings.protocol import codec
from tidings.protocol.channels import ChannelRules
from tidings.protocol.kinds import KINDS
from tidings.protocol.messages import (
    ClientInfo,
    HistoryResult,
    JoinLeave,
    Publication,
    Push,
    StreamPosition,
)
from tidings.protocol.recovery import effective_limit, validate_since
from tidings.protocol.session import Session, Sub
from tidings.protocol.tokens import TokenVerifier

__all__ = ["Node"]

log = logging.getLogger("tidings.node")

_STALE, _EXPIRE, _SUB_EXPIRE, _PONG = range(4)


def _rss_bytes() -> int:
    """The resident set now (``ru_maxrss``, the fallback off Linux, is the peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

# Write coalescing (see schedule_flush): after a flush round cheaper than the threshold the next
# one may run on the next loop iteration; after a costlier one, not before the same cost again.
COALESCE_THRESHOLD = 0.002
COALESCE_MAX_DELAY = 0.05


class Node:
    def __init__(self, config: Config, engine: Engine | None = None) -> None:
        self.config = config
        self.id = str(uuid.uuid4())
        self.name = config.node.name or socket.gethostname()
        self.rules = ChannelRules(config.channel, insecure=config.client.insecure)
        self.verifier = TokenVerifier(
            config.client.token,
            skip_signature=config.client.insecure_skip_token_signature_verify,
        )
        sub_cfg = config.client.subscription_token
        skip = config.client.insecure_skip_token_signature_verify
        self.sub_verifier = (
            TokenVerifier(sub_cfg, skip_signature=skip) if sub_cfg.enabled else self.verifier
        )
        self.engine: Engine = engine if engine is not None else MemoryEngine()
        self.engine.register_handler(self, self.id)
        self.hub = Hub()
        self.limits = Limits(config)
        self.clients: dict[str, Client] = {}  # authenticated clients by client ID
        self.users: dict[str, dict[Client, None]] = {}
        self.opened: dict[Client, None] = {}  # every open client, authenticated or not
        self.emulation_sessions: dict[str, Client] = {}  # session -> HTTP-stream/SSE client
        # Per transport kind: [messages sent, bytes sent, frames received, bytes received]
        # (the hook for metrics: counted where writes and reads already happen).
        self.transport_stats: list[list[int]] = [[0, 0, 0, 0] for _ in KINDS]
        self._dirty: list[Client] = []
        self._flush_scheduled = False
        self._next_flush_at = 0.0
        n_buckets = max(int(config.client.ping_interval), 1)
        self._ping_buckets: list[dict[Client, None]] = [{} for _ in range(n_buckets)]
        self._ping_bucket_of: dict[Client, int] = {}
        self._timers: list[tuple[float, int, int, Client, str]] = []
        self._seq = itertools.count()
        self._tasks: set[asyncio.Task[Any]] = set()
        self._tick = 0
        self._clock: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started_at = time.time()
        self.cluster = Cluster(self)
        self._background: list[asyncio.Task[None]] = []
        # More fields for info(), from parts the node does not own (e.g. the SockJS table).
        self.info_sources: list[Callable[[], dict[str, Any]]] = []
        self._cpu_sample = (time.monotonic(), time.process_time())

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "Node.start() has not been called"
        return self._loop

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.started_at = time.time()
        await self.engine.start()
        self._clock = self._loop.create_task(self._tick_forever())
        self._background.append(self._loop.create_task(self.cluster.heartbeat_forever()))
        if self.engine.presence_ttl > 0:
            self._background.append(
                self._loop.create_task(self.cluster.refresh_presence_forever())
            )

    async def shutdown(self, grace: float) -> None:
        """Disconnect every client with 3001 (reconnect), then stop the engine."""
        for client in list(self.opened):
            client.close(Disconnect.SHUTDOWN)
        for task in [self._clock, *self._background]:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)
        await self.cluster.leave()
        await self.engine.close()

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a background coroutine owned by the node (awaited at shutdown)."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background task failed", exc_info=task.exception())

    # ---------------------------------------------------------------- writes

    def schedule_flush(self, client: Client) -> None:
        self._dirty.append(client)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            # Adaptive coalescing: a flush round costs about one write syscall per dirty
            # connection. The next round starts no sooner than one such cost after the last
            # one ended, so under sustained load the publications arriving meanwhile share one
            # write per connection; at moderate load (rounds far apart) it runs at once.
            wait = self._next_flush_at - self.loop.time()
            if wait <= 0:
                self.loop.call_soon(self._flush)
            else:
                self.loop.call_later(min(wait, COALESCE_MAX_DELAY), self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        dirty, self._dirty = self._dirty, []
        loop = self.loop
        started = loop.time()
        for client in dirty:
            client.flush()
        ended = loop.time()
        cost = ended - started
        self._next_flush_at = ended + cost if cost >= COALESCE_THRESHOLD else 0.0

    # ---------------------------------------------------------------- clients

    def new_session(self) -> Session:
        return Session(self.config.client, self.rules, self.verifier, self.sub_verifier)

    def new_client(self, transport: Transport) -> Client:
        if transport.codec.PROTOBUF:
            return ProtobufClient(self, transport)
        return Client(self, transport)

    def client_opened(self, client: Client) -> None:
        self.opened[client] = None
        if self.config.client.stale_close_delay > 0:
            self._add_timer(time.time() + self.config.client.stale_close_delay, _STALE, client)

    def client_connected(self, client: Client) -> None:
        self.clients[client.client_id] = client
        self.users.setdefault(client.user, {})[client] = None
        if self.config.client.ping_interval > 0:
            # First ping between ping/2 and ping seconds from now, then every ping seconds.
            n = len(self._ping_buckets)
            bucket = (self._tick + random.randint((n + 1) // 2, n)) % n
            self._ping_buckets[bucket][client] = None
            self._ping_bucket_of[client] = bucket
        if client.session.expires_at:
            self.schedule_expiry(client, client.session.expires_at)

    def open_emulation_session(self, client: Client) -> str:
        session = uuid.uuid4().hex
        self.emulation_sessions[session] = client
        return session

    def emulation(self, session: str, data: bytes) -> int:
        """Commands posted to /emulation for a session of this node: the HTTP status to
        answer (404 unknown session, 429 too much input waiting already)."""
        client = self.emulation_sessions.get(session)
        if client is None:
            return 404
        return 204 if client.feed(data) else 429

    def client_closed(self, client: Client) -> None:
        """Called once when a client is gone: unregister now, clean up engine state async."""
        self.opened.pop(client, None)
        if client.emulation_session:
            self.emulation_sessions.pop(client.emulation_session, None)
        if self.clients.pop(client.client_id, None) is not None:
            users = self.users.get(client.user)
            if users is not None:
                users.pop(client, None)
                if not users:
                    del self.users[client.user]
        bucket = self._ping_bucket_of.pop(client, None)
        if bucket is not None:
            self._ping_buckets[bucket].pop(client, None)
        subs = list(client.session.subs.values())
        client.session.subs.clear()
        inflight = list(client.session.inflight)
        for sub in subs:
            self.hub_remove(sub.channel, client)
        for channel in inflight:
            self.hub_remove(channel, client)
        if subs:
            self.spawn(self._leave_all(client, subs))
        if client.counted:
            self.spawn(self._uncount(client))

    async def _uncount(self, client: Client) -> None:
        try:
            await self.engine.remove_user_connection(client.user, client.client_id)
        except EngineError as exc:  # the entry expires by itself (engine.presence_ttl)
            log.warning("connection of %s not uncounted for user %r: %s", client.client_id,
                        client.user, exc)

    async def _leave_all(self, client: Client, subs: list[Sub]) -> None:
        for sub in subs:
            await self.leave_channel(client, sub)

    # ---------------------------------------------------------------- subscriptions

    async def add_subscriber(self, channel: str, client: Client) -> None:
        """Register the client (syncing) and make sure the engine delivers the channel here
        before the caller reads its stream: the first subscriber subscribes the engine, later
        ones wait for that subscription to be in effect."""
        first = self.hub.start_sync(channel, client)
        subs = self.hub.channels[channel]
        if not first:
            if subs.ready is not None:
                await asyncio.shield(subs.ready)
            return
        ready = subs.ready = self.loop.create_future()
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

    def hub_remove(self, channel: str, client: Client) -> None:
        if self.hub.remove(channel, client):
            self.spawn(self._unsubscribe_if_empty(channel))

    async def _unsubscribe_if_empty(self, channel: str) -> None:
        # Runs later: a subscriber that came meanwhile keeps the engine subscription.
        if channel not in self.hub.channels:
            await self.engine.unsubscribe(channel)

    async def remove_subscriber(self, channel: str, client: Client) -> None:
        if self.hub.remove(channel, client):
            await self.engine.unsubscribe(channel)

    async def leave_channel(self, client: Client, sub: Sub, *, announce: bool = True) -> None:
        """Remove the client's presence in the channel and (``announce``) publish its leave."""
        try:
            if sub.presence:
                await self.engine.remove_presence(sub.channel, client.client_id, client.user)
            if sub.join_leave and announce:
                info = client.session.client_info(sub.chan_info)
                await self.engine.publish_leave(sub.channel, info)
        except EngineError as exc:
            # Presence entries expire by themselves (engine.presence_ttl).
            log.warning("leave of client %s from %s not published: %s", client.client_id,
                        sub.channel, exc)

    def history_options(self, opts: ChannelOptions) -> HistoryOptions:
        return HistoryOptions(
            size=opts.history_size,
            ttl=opts.history_ttl,
            meta_ttl=opts.history_meta_ttl or self.config.channel.history_meta_ttl,
        )

    # ---------------------------------------------------------------- publish / history

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
                                subs.epoch, position.epoch)
                    self._insufficient_state(channel, subs)
                subs.epoch = position.epoch
                subs.delivered = offset
            elif offset > subs.delivered + 1 and subs.delivered >= 0:
                # Live positioned subscribers are at `delivered`; waiting ones check their own
                # position in broadcast().
                log.warning("channel %s: publications %d..%d never arrived", channel,
                            subs.delivered + 1, offset - 1)
                self._insufficient_state(channel, subs, waiting_before=0)
                subs.delivered = offset
            elif offset > subs.delivered:
                subs.delivered = offset
        shared = Shared(codec.encode_push(Push(channel=channel, pub=pub)), channel, pub,
                        wants_delta)
        missed = self.hub.broadcast(subs, shared, offset)
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

    def handle_control(self, data: bytes) -> None:
        self.cluster.handle_control(data)

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
                log.warning("channel %s: position check failed: %s", channel, exc)
                subs = self.hub.channels.get(channel)
                if subs is not None:
                    self._insufficient_state(channel, subs)
                continue
            subs = self.hub.channels.get(channel)
            if subs is None:
                continue
            if subs.epoch and top.epoch != subs.epoch:
                log.warning("channel %s: stream epoch changed while disconnected", channel)
                self._insufficient_state(channel, subs)
            elif (0 <= subs.delivered < top.offset) or any(
                top.offset > live_from for live_from in subs.waiting.values()
            ):
                log.warning("channel %s: publications up to offset %d may have been missed",
                            channel, top.offset)
                self._insufficient_state(channel, subs, live=0 <= subs.delivered < top.offset,
                                         waiting_before=top.offset)
            else:
                continue
            subs.epoch, subs.delivered = top.epoch, max(top.offset, subs.delivered)

    # ---------------------------------------------------------------- server-side actions

    def find_clients(self, user: str = "", client_id: str = "") -> list[Client]:
        if client_id:
            client = self.clients.get(client_id)
            if client is None or (user and client.user != user):
                return []
            return [client]
        return list(self.users.get(user, ()))

    def disconnect_clients(
        self, clients: Iterable[Client], disconnect: Disconnect, whitelist: Iterable[str] = ()
    ) -> None:
        keep = set(whitelist)
        for client in clients:
            if client.client_id not in keep:
                client.close(disconnect)

    async def unsubscribe_clients(self, clients: Iterable[Client], channel: str) -> None:
        for client in clients:
            await client.unsubscribe(channel, Unsubscribe.SERVER)

    # ---------------------------------------------------------------- timers

    def _add_timer(self, when: float, kind: int, client: Client, channel: str = "") -> None:
        heapq.heappush(self._timers, (when, next(self._seq), kind, client, channel))

    def schedule_expiry(self, client: Client, expires_at: float) -> None:
        self._add_timer(expires_at + self.config.client.expired_close_delay, _EXPIRE, client)

    def schedule_sub_expiry(self, client: Client, channel: str, expires_at: float) -> None:
        delay = self.config.client.expired_sub_close_delay
        self._add_timer(expires_at + delay, _SUB_EXPIRE, client, channel)

    async def _tick_forever(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(1.0)
            tick += 1
            try:
                self.tick(tick, time.time())
            except Exception:
                log.exception("timer tick failed")

    def tick(self, tick: int, now: float) -> None:
        self._tick = tick
        if tick % 10 == 0:
            self.limits.sweep(time.monotonic())
        # Deadlines first: a pong deadline that falls on this tick judges the previous ping,
        # before this tick's ping (if the client's bucket is due) expects a new pong.
        timers = self._timers
        while timers and timers[0][0] <= now:
            _, _, kind, client, channel = heapq.heappop(timers)
            if client.closed:
                continue
            self._fire(kind, client, channel, now)
        bucket = self._ping_buckets[tick % len(self._ping_buckets)]
        pong_timeout = self.config.client.pong_timeout
        for client in list(bucket):
            if client.session.awaiting_pong:
                continue  # the pong deadline timer handles it
            client.send_ping()
            if client.session.awaiting_pong:
                self._add_timer(now + pong_timeout, _PONG, client)

    def _fire(self, kind: int, client: Client, channel: str, now: float) -> None:
        session = client.session
        if kind == _STALE:
            if client.client_id not in self.clients:
                client.close(Disconnect.STALE)
        elif kind == _PONG:
            if session.awaiting_pong:
                client.close(Disconnect.NO_PONG)
        elif kind == _EXPIRE:
            exp = session.expires_at
            if exp and exp + self.config.client.expired_close_delay <= now:
                client.close(Disconnect.EXPIRED)
        elif kind == _SUB_EXPIRE:
            sub = session.subs.get(channel)
            delay = self.config.client.expired_sub_close_delay
            if sub is not None and sub.expires_at and sub.expires_at + delay <= now:
                if sub.server_side:
                    client.close(Disconnect.SUB_EXPIRED)
                else:
                    self.spawn(client.unsubscribe(channel, Unsubscribe.EXPIRED))

    # ---------------------------------------------------------------- info

    def transports_info(self) -> dict[str, dict[str, int]]:
        return {
            name: dict(zip(("messages_sent", "bytes_sent", "messages_received",
                            "bytes_received"), stats, strict=True))
            for name, stats in zip((k.name for k in KINDS.values()), self.transport_stats,
                                   strict=True)
            if any(stats)
        }

    def info(self) -> dict[str, Any]:
        return {
            "uid": self.id,
            "name": self.name,
            "version": __version__,
            "num_clients": len(self.clients),
            "num_users": len(self.users),
            "num_channels": len(self.hub.channels),
            "num_subs": sum(self.hub.num_subscribed(s) for s in self.hub.channels.values()),
            "uptime": int(time.time() - self.started_at),
            "transports": self.transports_info(),
            "num_emulation_sessions": len(self.emulation_sessions),
            "process": self.process_info(),
            "limits": {
                "refused_connections": self.limits.refused_connections,
                "limited_commands": self.limits.limited_commands,
                "error_disconnects": self.limits.error_disconnects,
            },
        } | {k: v for source in self.info_sources for k, v in source().items()}

    def process_info(self) -> dict[str, Any]:
        """Centrifugo's ``process`` (CPU percent since the last call, RSS bytes), plus this
        process's asyncio tasks and open descriptors."""
        now, cpu = time.monotonic(), time.process_time()
        then, cpu_then = self._cpu_sample
        self._cpu_sample = (now, cpu)
        try:
            fds = len(os.listdir("/proc/self/fd"))
        except OSError:
            fds = -1
        return {
            "cpu": round(100 * (cpu - cpu_then) / max(now - then, 1e-3), 1),
            "rss": _rss_bytes(),
            "tasks": len(asyncio.all_tasks(self._loop)) if self._loop is not None else 0,
            "fds": fds,
        }
