"""The node: builds its parts, runs their lifecycle, and is what the engine delivers to.

Each part owns one concept (docs/architecture.md):

- ``registry``: the connections (open, authenticated by ID and by user, emulation sessions);
- ``writer``: write coalescing (flush rounds);
- ``timers``: pings, pong deadlines, expiry, stale connections (one clock, no timer objects);
- ``channels``: the hub of subscribers, engine subscriptions, broker events, gap detection;
- ``cluster``: the other nodes, control messages, surveys;
- ``actions``: server-side actions cluster-wide, emulation routing;
- ``limits``: admission and rate limits; ``hooks``: the event seam.

Clients see the node as a :class:`tidings.core.host.ClientHost`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import resource
import socket
import time
import uuid
from collections.abc import Callable, Coroutine, Mapping
from typing import Any

from tidings import __version__
from tidings.config import Config
from tidings.core import conninfo, presence, proxied
from tidings.core.actions import Actions
from tidings.core.channels import Channels
from tidings.core.client import Client, ProtobufClient
from tidings.core.cluster import Cluster
from tidings.core.hooks import DisconnectedEvent, Hooks
from tidings.core.limits import Limits
from tidings.core.peer import Peer, Transport
from tidings.core.registry import Registry
from tidings.core.timers import Timers
from tidings.core.writer import Writer
from tidings.engine.base import Engine, EngineError
from tidings.engine.memory import MemoryEngine
from tidings.errors import Disconnect
from tidings.logs import client_fields
from tidings.metrics.counts import Counts
from tidings.protocol.channels import ChannelRules
from tidings.protocol.kinds import KINDS
from tidings.protocol.messages import ClientInfo, Publication, StreamPosition
from tidings.protocol.session import Session
from tidings.protocol.tokens import TokenVerifier
from tidings.proxy import HookState

__all__ = ["Node"]

log = logging.getLogger("tidings.node")


class Node:
    def __init__(self, config: Config, engine: Engine | None = None) -> None:
        self.config = config
        self.id = str(uuid.uuid4())
        self.name = config.node.name or socket.gethostname()
        self.rules = ChannelRules(config.channel, insecure=config.client.insecure)
        skip = config.client.insecure_skip_token_signature_verify
        self.verifier = TokenVerifier(config.client.token, skip_signature=skip)
        sub_cfg = config.client.subscription_token
        self.sub_verifier = (
            TokenVerifier(sub_cfg, skip_signature=skip) if sub_cfg.enabled else self.verifier
        )
        self.engine: Engine = engine if engine is not None else MemoryEngine()
        self.engine.register_handler(self, self.id)
        self.limits = Limits(config)
        self.counts = Counts()  # what /metrics reads (tidings.metrics)
        self.hooks = Hooks(config)
        self.registry = Registry()
        self.writer = Writer()
        self.timers = Timers(config.client, self.spawn, expired=self._expired,
                             sub_expired=self._sub_expired)
        self.timers.expire_delay = self._expire_delay
        self.channels = Channels(config, self.engine, self.rules, self.spawn, self.counts)
        self.cluster = Cluster(self)
        self.actions = Actions(self)
        self.cluster.survey_handlers["channels"] = self._local_channels
        self.cluster.survey_handlers["connections"] = conninfo.survey_handler(
            self.registry, self.id, self.name)
        # Per transport kind: [messages sent, bytes sent, frames received, bytes received]
        # (counted where writes and reads already happen; read by info and metrics).
        self.transport_stats: list[list[int]] = [[0, 0, 0, 0] for _ in KINDS]
        self._tasks: set[asyncio.Task[Any]] = set()
        self._background: list[asyncio.Task[None]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.started_at = time.time()
        # More fields for info(), from parts the node does not own (e.g. the SockJS table).
        self.info_sources: list[Callable[[], dict[str, Any]]] = []
        self._cpu_sample = (time.monotonic(), time.process_time())

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        assert self._loop is not None, "Node.start() has not been called"
        return self._loop

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        self._loop = loop = asyncio.get_running_loop()
        self.started_at = time.time()
        self.writer.start(loop)
        await self.engine.start()
        self._background.append(loop.create_task(self._clock()))
        self._background.append(loop.create_task(self.cluster.heartbeat_forever()))
        if self.engine.presence_ttl > 0:
            refresh = presence.refresh_forever(self.engine, self.registry.clients)
            self._background.append(loop.create_task(refresh))

    async def shutdown(self, grace: float) -> None:
        """Disconnect every client with 3001 (reconnect), then stop the engine."""
        for client in list(self.registry.opened):
            client.close(Disconnect.SHUTDOWN)
        for task in self._background:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=grace)
        await self.cluster.leave()
        await self.engine.close()
        await self.hooks.close()

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

    async def _clock(self) -> None:
        tick = 0
        while True:
            await asyncio.sleep(1.0)
            tick += 1
            try:
                self.timers.tick(tick, time.time())
                if tick % 10 == 0:
                    self.limits.sweep(time.monotonic())
            except Exception:
                log.exception("timer tick failed")

    # ---------------------------------------------------------------- clients (ClientHost)

    def new_session(self) -> Session:
        return Session(self.config.client, self.rules, self.verifier, self.sub_verifier)

    def new_client(self, transport: Transport,
                   headers: Mapping[str, str] | None = None) -> Client:
        """A client for a new connection; ``headers``: those of the request that opened it
        (kept only where a backend hook forwards them)."""
        client = (ProtobufClient if transport.codec.PROTOBUF else Client)(self, transport)
        if headers is not None and self.hooks.header_names:
            kept = self.hooks.keep(headers)
            if kept:
                client.hook_state = HookState(kept)
        return client

    def client_opened(self, client: Peer) -> None:
        self.registry.opened_client(client)
        self.timers.opened(client, time.time())

    def client_connected(self, client: Peer) -> None:
        self.counts.accepted[KINDS[client.transport.kind].transport] += 1
        self.counts.actions["add_client"] += 1
        self.registry.connected(client)
        self.timers.connected(client)

    def client_closed(self, client: Peer, code: int, reason: str) -> None:
        """Called once when a client is gone: unregister now, clean up engine state async."""
        if client.client_id in self.registry.clients:  # it had connected: count it gone
            self.counts.gone[KINDS[client.transport.kind].transport] += 1
            self.counts.actions["remove_client"] += 1
        if code and code != 3000:
            self.counts.disconnects[code] += 1
        self.registry.closed(client)
        self.timers.closed(client)
        self.channels.forget(client)
        if client.counted:
            self.spawn(self._uncount(client))
        if self.hooks.disconnected:
            self.hooks.notify_disconnected(DisconnectedEvent(
                client=client.client_id, user=client.user, transport=client.transport.name,
                code=code, reason=reason,
            ))

    async def _uncount(self, client: Peer) -> None:
        try:
            await self.engine.remove_user_connection(client.user, client.client_id)
        except EngineError as exc:  # the entry expires by itself (engine.presence_ttl)
            log.warning("connection of %s not uncounted for user %r: %s", client.client_id,
                        client.user, exc, extra=client_fields(client, error=str(exc)))

    def _expire_delay(self) -> float:
        """A refresh hook is asked at the expiry itself; without one, clients get a grace."""
        return 0.0 if self.hooks.refresh is not None else self.config.client.expired_close_delay

    def _expired(self, client: Peer) -> None:
        """A connection's expiry came: ask the refresh hook, or close (3005)."""
        if self.hooks.refresh is None:
            client.close(Disconnect.EXPIRED)
        else:
            self.spawn(proxied.refresh(client, self.hooks.refresh, self.timers))

    def _sub_expired(self, client: Peer, channel: str) -> bool:
        """A subscription's expiry came: ask its namespace's sub_refresh hook (True), or
        not (False: it expires)."""
        sub = client.session.subs.get(channel)
        if sub is None:
            return False
        caller = self.hooks.for_channel("sub_refresh", sub.opts.sub_refresh_proxy_enabled,
                                        sub.opts.sub_refresh_proxy_name)
        if caller is None:
            return False
        self.spawn(proxied.sub_refresh(client, caller, self.timers, channel))
        return True

    # ---------------------------------------------------------------- broker events

    def handle_publication(self, channel: str, pub: Publication, position: StreamPosition,
                           delta: bool) -> None:
        self.counts.broker_received["publication"] += 1
        self.channels.handle_publication(channel, pub, position, delta)

    def handle_join(self, channel: str, info: ClientInfo) -> None:
        self.counts.broker_received["join"] += 1
        self.channels.handle_join(channel, info)

    def handle_leave(self, channel: str, info: ClientInfo) -> None:
        self.counts.broker_received["leave"] += 1
        self.channels.handle_leave(channel, info)

    def handle_reconnect(self, channels: list[str]) -> None:
        self.channels.handle_reconnect(channels)

    def handle_control(self, data: bytes) -> None:
        self.counts.broker_received["control"] += 1
        self.cluster.handle_control(data)

    async def _local_channels(self, params: dict[str, Any]) -> dict[str, int]:
        return self.channels.subscribed_counts(str(params.get("pattern") or ""))

    # ---------------------------------------------------------------- info

    def transports_info(self) -> dict[str, dict[str, int]]:
        return {
            info.name: dict(zip(("messages_sent", "bytes_sent", "messages_received",
                                 "bytes_received"), stats, strict=True))
            for info, stats in zip(KINDS.values(), self.transport_stats, strict=True)
            if any(stats)
        }

    def info(self) -> dict[str, Any]:
        hub = self.channels.hub
        return {
            "uid": self.id,
            "name": self.name,
            "version": __version__,
            "num_clients": len(self.registry.clients),
            "num_users": len(self.registry.users),
            "num_channels": len(hub.channels),
            "num_subs": sum(hub.num_subscribed(s) for s in hub.channels.values()),
            "uptime": int(time.time() - self.started_at),
            "time": round(time.time(), 3),  # when this info was made (rates over two)
            "engine": {"type": self.config.engine.type, "healthy": not self.cluster.engine_error,
                       "error": self.cluster.engine_error},
            "transports": self.transports_info(),
            "num_emulation_sessions": len(self.registry.emulation_sessions),
            "process": self.process_info(),
            "limits": {
                "refused_connections": self.limits.refused_connections,
                "limited_commands": self.limits.limited_commands,
                "error_disconnects": self.limits.error_disconnects,
            },
        } | self._hooks_info() | {k: v for source in self.info_sources
                                  for k, v in source().items()}

    def _hooks_info(self) -> dict[str, Any]:
        stats = self.hooks.stats()
        return {"hooks": stats} if stats else {}

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


def _rss_bytes() -> int:
    """The resident set now (``ru_maxrss``, the fallback off Linux, is the peak)."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * resource.getpagesize()
    except OSError:
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
