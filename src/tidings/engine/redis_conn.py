"""Connections of the Redis engine: addresses, command clients, and the owned pub/sub
connection of each shard (see :mod:`tidings.engine.redis` for why it is owned).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import hashlib
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar
from urllib.parse import unquote, urlsplit

import hiredis
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tidings.config import RedisConfig
from tidings.engine.base import EngineError

__all__ = [
    "REDIS_ERRORS",
    "Endpoint",
    "PubSubOwner",
    "Shard",
    "client_kwargs",
    "jump_hash",
    "open_transport",
    "parse_address",
    "shard_index",
]

log = logging.getLogger("tidings.redis")

T = TypeVar("T")


class RedisReplyError(Exception):
    """Redis answered a command with an error."""


REDIS_ERRORS = (
    redis.exceptions.RedisError, RedisReplyError, OSError, asyncio.TimeoutError
)


def describe(exc: BaseException) -> str:
    """An exception and its causes in one line (redis-py wraps the interesting part)."""
    parts: list[str] = []
    seen: BaseException | None = exc
    while seen is not None and len(parts) < 4:
        text = str(seen) or type(seen).__name__
        if text not in parts:
            parts.append(text if str(seen) else type(seen).__name__)
        seen = seen.__cause__ or seen.__context__
    if isinstance(exc, asyncio.TimeoutError):
        parts.insert(0, "timed out")
    return ": ".join(parts)


class PubSubOwner(Protocol):
    """What a shard's pub/sub connection reports to (the engine)."""

    control_channel: bytes
    node_channel: bytes

    def dispatch(self, pubsub_channel: bytes, data: bytes) -> None: ...

    def reconnected(self, shard: Shard) -> None: ...


def jump_hash(key: int, buckets: int) -> int:
    """Jump consistent hash (Lamping and Veach, 2014): a key's bucket among ``buckets``, moving
    as few keys as possible when the number of buckets changes."""
    b, j = -1, 0
    while j < buckets:
        b = j
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        j = int((b + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return b


def shard_index(channel: str, shards: int) -> int:
    if shards == 1:
        return 0
    digest = hashlib.blake2b(channel.encode(), digest_size=8).digest()
    return jump_hash(int.from_bytes(digest, "little"), shards)


@dataclass(frozen=True)
class Endpoint:
    """Where one connection goes: TCP host/port (maybe TLS) or a unix socket."""

    host: str = ""
    port: int = 6379
    path: str = ""
    tls: bool = False
    user: str = ""
    password: str = ""
    db: int = 0

    def __str__(self) -> str:
        return f"unix://{self.path}" if self.path else f"{self.host}:{self.port}"


def parse_address(address: str, cfg: RedisConfig) -> Endpoint:
    """``redis://[user:pass@]host:port[/db]``, ``rediss://...``, ``unix:///path``, or
    ``host:port``; credentials and db in the URL win over the config's."""
    if "://" not in address:
        address = "redis://" + address
    url = urlsplit(address)
    user = unquote(url.username) if url.username else cfg.user
    password = unquote(url.password) if url.password else cfg.password
    if url.scheme == "unix":
        return Endpoint(path=url.path, user=user, password=password, db=cfg.db)
    db = cfg.db
    if url.path.strip("/"):
        db = int(url.path.strip("/"))
    return Endpoint(
        host=url.hostname or "127.0.0.1",
        port=url.port or 6379,
        tls=url.scheme == "rediss" or cfg.tls.enabled,
        user=user,
        password=password,
        db=db,
    )


def ssl_context(cfg: RedisConfig) -> ssl.SSLContext:
    tls = cfg.tls
    ctx = ssl.create_default_context(cafile=tls.server_ca_pem_file or None)
    if tls.cert_pem_file:
        ctx.load_cert_chain(tls.cert_pem_file, tls.key_pem_file or None)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def client_kwargs(cfg: RedisConfig, ep: Endpoint) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "username": ep.user or None,
        "password": ep.password or None,
        "socket_connect_timeout": cfg.connect_timeout,
        "socket_timeout": cfg.io_timeout,
        "client_name": cfg.client_name or None,
        # One retry: a pooled connection that died with a restarted Redis reconnects once.
        "retry": Retry(NoBackoff(), 1),
    }
    if ep.tls:
        tls = cfg.tls
        kwargs.update(
            ssl=True,
            ssl_ca_certs=tls.server_ca_pem_file or None,
            ssl_certfile=tls.cert_pem_file or None,
            ssl_keyfile=tls.key_pem_file or None,
            ssl_cert_reqs="none" if tls.insecure_skip_verify else "required",
            ssl_check_hostname=not tls.insecure_skip_verify,
        )
    return kwargs


async def open_transport(
    endpoint: Endpoint, cfg: RedisConfig, factory: Callable[[], asyncio.Protocol]
) -> None:
    """Connect ``factory()``'s protocol to ``endpoint`` (TCP, TLS or unix socket)."""
    loop = asyncio.get_running_loop()
    if endpoint.path:
        connecting = loop.create_unix_connection(factory, endpoint.path)
    else:
        connecting = loop.create_connection(
            factory, endpoint.host, endpoint.port,
            ssl=ssl_context(cfg) if endpoint.tls else None,
            server_hostname=(cfg.tls.server_name or endpoint.host) if endpoint.tls else None,
        )
    await asyncio.wait_for(connecting, cfg.connect_timeout)


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
                return
            if kind == b"subscribe":
                waiters = self._waiters.get(reply[1])
                if waiters:
                    fut = waiters.pop(0)
                    if not waiters:
                        del self._waiters[reply[1]]
                    if not fut.done():
                        fut.set_result(None)
                return
            if kind == b"unsubscribe":
                return
        # PONG: ["pong", ""] while subscribed to something, a plain PONG while not.
        if reply == b"PONG" or (isinstance(reply, list) and reply and reply[0] == b"pong"):
            if self._pong is not None and not self._pong.done():
                self._pong.set_result(None)
            return
        if isinstance(reply, Exception):
            log.error("redis %s pub/sub error: %s", self.name, reply)
            if self._proto is not None:
                self._proto.abort()

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
                if self._ever_connected or delay >= 1.0:
                    log.warning("redis %s: pub/sub connect failed: %s (retrying)", self.name,
                                describe(exc))
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
                log.warning("redis %s: pub/sub subscribe timed out (retrying)", self.name)
                proto.abort()
                self._proto = None
                continue
            self.connected = True
            reconnect = self._ever_connected
            self._ever_connected = True
            if reconnect:
                log.warning("redis %s: pub/sub reconnected, resubscribed %d channels",
                            self.name, len(self.channels))
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
            log.warning("redis %s: pub/sub connection lost", self.name)

    async def _watch(self, proto: PubSubProtocol) -> None:
        """Return when the connection closes or stops answering PINGs."""
        interval = min(1.0, self.cfg.io_timeout)
        while not proto.closed.done():
            done, _ = await asyncio.wait([proto.closed], timeout=interval)
            if done:
                return
            if not await self._ping(proto):
                log.warning("redis %s: pub/sub connection does not answer PING", self.name)
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
