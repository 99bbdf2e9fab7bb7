"""Connections of the Redis engine: each shard's multiplexed command connection and its owned
pub/sub connection (see :mod:`tidings.engine.redis` for why it is owned); addresses live in
:mod:`tidings.engine.redis_addr`.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Protocol, TypeVar

import hiredis
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.cluster import RedisCluster

from tidings.config import RedisConfig
from tidings.engine.base import EngineError
from tidings.engine.redis_addr import (
    REDIS_ERRORS,
    Endpoint,
    RedisReplyError,
    describe,
    open_transport,
)

__all__ = ["CommandProtocol", "PubSubOwner", "PubSubProtocol", "Shard"]

log = logging.getLogger("tidings.redis")

T = TypeVar("T")


class PubSubOwner(Protocol):
    """What a shard's pub/sub connection reports to (the engine)."""

    control_channel: bytes
    node_channel: bytes
    pubsub_errors: Counter[str]  # by Centrifugo's error label (metrics)

    def dispatch(self, pubsub_channel: bytes, data: bytes) -> None: ...

    def reconnected(self, shard: Shard) -> None: ...


class CommandProtocol(asyncio.Protocol):
    """One multiplexed command connection: commands are written as they come (those issued in
    one loop iteration in one write) and replies resolve their futures in order. Every
    concurrent caller shares it, so concurrent publishes pipeline by themselves."""

    def __init__(self) -> None:
        self.reader = hiredis.Reader()
        self.transport: asyncio.Transport | None = None
        self.pending: collections.deque[asyncio.Future[Any]] = collections.deque()
        self._out: list[bytes] = []
        self._loop = asyncio.get_running_loop()

    @property
    def usable(self) -> bool:
        return self.transport is not None and not self.transport.is_closing()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        pending = self.pending
        try:
            while (reply := self.reader.gets()) is not False:
                fut = pending.popleft()
                if fut.done():
                    continue  # the caller gave up
                if isinstance(reply, hiredis.ReplyError):
                    fut.set_exception(RedisReplyError(str(reply)))
                else:
                    fut.set_result(reply)
        except (hiredis.ProtocolError, IndexError) as exc:
            log.error("redis: unexpected data on a command connection: %r", exc)
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        error = EngineError(f"connection lost{f': {exc}' if exc else ''}")
        while self.pending:
            fut = self.pending.popleft()
            if not fut.done():
                fut.set_exception(error)

    def execute(self, args: Sequence[Any]) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = self._loop.create_future()
        if not self.usable:
            fut.set_exception(EngineError("not connected"))
            return fut
        self.pending.append(fut)
        self._out.append(hiredis.pack_command(tuple(args)))
        if len(self._out) == 1:
            self._loop.call_soon(self._write)
        return fut

    def _write(self) -> None:
        out, self._out = self._out, []
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(b"".join(out))

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


class PubSubProtocol(asyncio.Protocol):
    """The raw pub/sub connection: RESP replies parsed by hiredis, handed to ``on_reply``."""

    def __init__(self, on_reply: Callable[[Any], None]) -> None:
        self.reader = hiredis.Reader()
        self.on_reply = on_reply
        self.transport: asyncio.Transport | None = None
        self.closed: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        self.reader.feed(data)
        try:
            while (reply := self.reader.gets()) is not False:
                self.on_reply(reply)
        except hiredis.ProtocolError as exc:
            log.error("redis pub/sub: protocol error: %s", exc)
            self.abort()

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.closed.done():
            self.closed.set_result(None)

    def send(self, *args: bytes | str) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(hiredis.pack_command(args))  # type: ignore[arg-type]

    def abort(self) -> None:
        if self.transport is not None:
            self.transport.abort()


# ---------------------------------------------------------------------------- one shard


class Shard:
    """One Redis deployment (standalone, Sentinel-managed or a Cluster): a command client and
    an owned pub/sub connection that reconnects and resubscribes by itself."""

    def __init__(
        self,
        owner: PubSubOwner,
        name: str,
        cluster: RedisCluster | None,
        locate: Callable[[], Awaitable[Endpoint]],
        cfg: RedisConfig,
    ) -> None:
        self.owner = owner
        self.name = name
        self.cluster = cluster  # commands of a Redis Cluster go through redis-py
        self._cmd: CommandProtocol | None = None
        self._cmd_lock = asyncio.Lock()
        self.locate = locate
        self.cfg = cfg
        self.channels: set[bytes] = set()  # pub/sub channels this shard should be subscribed to
        self.connected = False
        self._proto: PubSubProtocol | None = None
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self._queued: list[tuple[bytes, bytes]] = []  # (SUBSCRIBE | UNSUBSCRIBE, channel)
        self._flush_scheduled = False
        self._pong: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._ever_connected = False
        self._scripts: dict[str, str] = {}
        self.also_close: list[aioredis.Redis] = []  # e.g. the Sentinel connections
        self.control = False  # this shard carries the control channels (the first one does)

    # ---------------------------------------------------------------- commands

    async def execute(self, *args: Any) -> Any:
        """One command: on Redis Cluster through redis-py (it routes by slot), otherwise on
        the shard's multiplexed connection (opened on demand, reopened after a failure)."""
        if self.cluster is not None:
            return await self.cluster.execute_command(*args)
        conn = self._cmd
        if conn is None or not conn.usable:
            conn = await self._command_connection()
        return await conn.execute(args)

    async def warm(self) -> None:
        """Open the command connection now rather than on the first command."""
        if self.cluster is None:
            with contextlib.suppress(EngineError, *REDIS_ERRORS):
                await self._command_connection()

    async def _command_connection(self) -> CommandProtocol:
        async with self._cmd_lock:
            conn = self._cmd
            if conn is not None and conn.usable:
                return conn
            endpoint = await self.locate()
            conn = CommandProtocol()
            await open_transport(endpoint, self.cfg, lambda: conn)
            try:
                handshake = []
                if endpoint.password:
                    auth = (endpoint.user, endpoint.password) if endpoint.user else (
                        endpoint.password,)
                    handshake.append(conn.execute((b"AUTH", *auth)))
                if endpoint.db:
                    handshake.append(conn.execute((b"SELECT", endpoint.db)))
                if self.cfg.client_name:
                    handshake.append(
                        conn.execute((b"CLIENT", b"SETNAME", self.cfg.client_name))
                    )
                for step in handshake:
                    await asyncio.wait_for(step, self.cfg.io_timeout)
            except BaseException:
                conn.abort()
                raise
            self._cmd = conn
            return conn

    async def script(self, lua: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a Lua script by SHA, loading it on first use (or after a Redis restart)."""
        sha = self._scripts.get(lua)
        if sha is None:
            sha = self._scripts[lua] = hashlib.sha1(lua.encode()).hexdigest()
        try:
            return await self.execute("EVALSHA", sha, len(keys), *keys, *args)
        except (RedisReplyError, redis.exceptions.NoScriptError) as exc:
            if not str(exc).startswith("NOSCRIPT") and not isinstance(
                exc, redis.exceptions.NoScriptError
            ):
                raise
            return await self.execute("EVAL", lua, len(keys), *keys, *args)

    async def ping(self) -> None:
        """PING on the command connection (readiness). The caller's deadline bounds it and,
        unlike ``call``'s, does not close the connection: what is in flight keeps its
        io_timeout."""
        try:
            await self.execute("PING")
        except REDIS_ERRORS as exc:
            raise EngineError(f"redis {self.name}: PING failed: {describe(exc)}") from exc
        except EngineError as exc:
            raise EngineError(f"redis {self.name}: PING failed: {exc}") from exc

    async def call(self, what: str, coro: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(coro, self.cfg.io_timeout)
        except REDIS_ERRORS as exc:
            if isinstance(exc, TimeoutError) and self._cmd is not None:
                self._cmd.abort()  # a connection that stopped answering is not reused
            raise EngineError(f"redis {self.name}: {what} failed: {describe(exc)}") from exc
        except EngineError as exc:
            raise EngineError(f"redis {self.name}: {what} failed: {exc}") from exc

    # ---------------------------------------------------------------- pub/sub

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._proto is not None:
            self._proto.abort()
        if self._cmd is not None:
            self._cmd.abort()
        if self.cluster is not None:
            await self.cluster.aclose()
        for extra in self.also_close:
            await extra.aclose()

    async def subscribe(self, channel: bytes) -> None:
        self.channels.add(channel)
        if not self.connected:
            raise EngineError(f"redis {self.name}: not connected")
        fut = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append(fut)
        self._queue(b"SUBSCRIBE", channel)
        try:
            await asyncio.wait_for(fut, self.cfg.io_timeout)
        except TimeoutError:
            raise EngineError(f"redis {self.name}: subscribe timed out") from None

    def unsubscribe(self, channel: bytes) -> None:
        self.channels.discard(channel)
        if self._proto is not None:
            self._queue(b"UNSUBSCRIBE", channel)

    def _queue(self, command: bytes, channel: bytes) -> None:
        # Operations issued in one loop iteration are sent together, in order: consecutive
        # ones of the same kind share one command (order matters: unsubscribe-then-subscribe
        # of one channel must leave it subscribed).
        self._queued.append((command, channel))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        queued, self._queued = self._queued, []
        proto = self._proto
        if proto is None:
            return
        run: list[bytes] = []
        for i, (command, channel) in enumerate(queued):
            run.append(channel)
            last = i + 1 == len(queued) or queued[i + 1][0] != command
            if last or len(run) == 256:
                proto.send(command, *run)
                run = []

    def _on_reply(self, reply: Any) -> None:
        if isinstance(reply, list) and len(reply) >= 3:
            kind = reply[0]
            if kind == b"message":
                self.owner.dispatch(reply[1], reply[2])
            elif kind == b"subscribe":
                self._confirmed(reply[1])
            if kind in (b"message", b"subscribe", b"unsubscribe"):
                return
        # PONG: ["pong", ""] while subscribed to something, a plain PONG while not.
        if reply == b"PONG" or (isinstance(reply, list) and reply and reply[0] == b"pong"):
            if self._pong is not None and not self._pong.done():
                self._pong.set_result(None)
            return
        if isinstance(reply, Exception):
            log.error("redis %s pub/sub error: %s", self.name, reply,
                      extra={"engine": "redis", "shard": self.name, "error": str(reply)})
            if self._proto is not None:
                self._proto.abort()

    def _confirmed(self, channel: bytes) -> None:
        """Redis confirmed a SUBSCRIBE: the first one waiting for it may go on."""
        waiters = self._waiters.get(channel)
        if waiters:
            fut = waiters.pop(0)
            if not waiters:
                del self._waiters[channel]
            if not fut.done():
                fut.set_result(None)

    async def _connect(self) -> PubSubProtocol:
        endpoint = await self.locate()
        replies: asyncio.Queue[Any] = asyncio.Queue()
        proto = PubSubProtocol(replies.put_nowait)
        await open_transport(endpoint, self.cfg, lambda: proto)
        try:
            if endpoint.password:
                if endpoint.user:
                    proto.send(b"AUTH", endpoint.user, endpoint.password)
                else:
                    proto.send(b"AUTH", endpoint.password)
                answer = await asyncio.wait_for(replies.get(), self.cfg.io_timeout)
                if isinstance(answer, Exception):
                    raise EngineError(f"redis {self.name}: AUTH failed: {answer}")
        except BaseException:
            proto.abort()
            raise
        proto.on_reply = self._on_reply
        return proto

    async def _run(self) -> None:
        delay = 0.05
        while True:
            try:
                proto = await self._connect()
            except (EngineError, *REDIS_ERRORS) as exc:
                self.owner.pubsub_errors["connect"] += 1
                if self._ever_connected or delay >= 1.0:
                    log.warning("redis %s: pub/sub connect failed: %s (retrying)", self.name,
                                describe(exc), extra={"engine": "redis", "shard": self.name,
                                                      "error": describe(exc)})
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)
                continue
            delay = 0.05
            self._proto = proto
            control = [self.owner.control_channel, self.owner.node_channel] if self.control else []
            channels = [*control, *self.channels]
            for i in range(0, len(channels), 256):
                proto.send(b"SUBSCRIBE", *channels[i : i + 256])
            # PONG comes after every subscribe confirmation: the subscriptions are in effect.
            if not await self._ping(proto):
                self.owner.pubsub_errors["subscribe"] += 1
                log.warning("redis %s: pub/sub subscribe timed out (retrying)", self.name,
                            extra={"engine": "redis", "shard": self.name})
                proto.abort()
                self._proto = None
                continue
            self.connected = True
            reconnect = self._ever_connected
            self._ever_connected = True
            if reconnect:
                log.warning("redis %s: pub/sub reconnected, resubscribed %d channels",
                            self.name, len(self.channels),
                            extra={"engine": "redis", "shard": self.name})
                self.owner.reconnected(self)
            else:
                log.info("redis %s: pub/sub connected", self.name)
            try:
                await self._watch(proto)
            finally:
                self.connected = False
                self._proto = None
                proto.abort()
                for waiters in self._waiters.values():
                    for fut in waiters:
                        if not fut.done():
                            fut.set_exception(EngineError(f"redis {self.name}: disconnected"))
                self._waiters.clear()
            self.owner.pubsub_errors["connection_lost"] += 1
            log.warning("redis %s: pub/sub connection lost", self.name,
                        extra={"engine": "redis", "shard": self.name})

    async def _watch(self, proto: PubSubProtocol) -> None:
        """Return when the connection closes or stops answering PINGs."""
        interval = min(1.0, self.cfg.io_timeout)
        while not proto.closed.done():
            done, _ = await asyncio.wait([proto.closed], timeout=interval)
            if done:
                return
            if not await self._ping(proto):
                log.warning("redis %s: pub/sub connection does not answer PING", self.name,
                            extra={"engine": "redis", "shard": self.name})
                return

    async def _ping(self, proto: PubSubProtocol) -> bool:
        """PING and wait for the PONG (it follows every reply to what was sent before)."""
        self._pong = asyncio.get_running_loop().create_future()
        proto.send(b"PING")
        try:
            await asyncio.wait_for(asyncio.shield(self._pong), self.cfg.io_timeout)
        except TimeoutError:
            return False
        return True
