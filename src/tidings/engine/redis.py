"""The Redis engine: many Tidings nodes share pub/sub, history and presence through Redis.

Works with Redis >= 6.2 and Redis-compatible servers (Valkey). Layout (``P`` is the prefix;
``{ch}`` is a hash tag, so every key of one channel lives in one Redis Cluster slot):

- ``P.p.<ch>``: the pub/sub channel of a Tidings channel. Messages are
  ``<offset>:<epoch>:<publication JSON>`` (offset 0 and no epoch without history),
  ``j<info JSON>`` (join) or ``l<info JSON>`` (leave);
- ``P.s.{ch}``: the history stream (a Redis stream; entry ID ``<offset>-1``, field ``d``);
- ``P.m.{ch}``: stream metadata, a hash with the top offset ``s`` and the epoch ``e``;
- ``P.r.{ch}.<key>``: the remembered result of a publish with an idempotency key;
- ``P.pz.{ch}`` / ``P.ph.{ch}``: presence, a sorted set (client -> expiry time) and a hash
  (client -> ClientInfo JSON);
- ``P.control`` and ``P.node.<id>``: control messages to every node / to one node.

Appending to the stream and publishing happen in one Lua script per channel, so subscribers see
publications in offset order and a node that dies loses no history. Several standalone
instances in ``address`` shard channels by jump consistent hashing; control messages use the
first. Pub/sub runs on one connection per shard that this module owns (hiredis parses it):
on reconnect it resubscribes and reports the channels that may have gaps
(``handle_reconnect``), which redis-py's PubSub would hide by resubscribing silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import random
import ssl
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import unquote, urlsplit

import hiredis
import msgspec
import redis.asyncio as aioredis
import redis.exceptions
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff

from tidings.config import RedisConfig
from tidings.engine.base import (
    BrokerEventHandler,
    Engine,
    EngineError,
    HistoryOptions,
    PresenceStats,
)
from tidings.engine.memory import IDEMPOTENCY_TTL, new_epoch
from tidings.protocol.messages import ClientInfo, Publication, StreamPosition

__all__ = ["RedisEngine", "jump_hash", "shard_index"]

log = logging.getLogger("tidings.redis")

T = TypeVar("T")

_pub_encoder = msgspec.json.Encoder()
_pub_decoder = msgspec.json.Decoder(Publication)
_info_decoder = msgspec.json.Decoder(ClientInfo)

_REDIS_ERRORS = (redis.exceptions.RedisError, OSError, asyncio.TimeoutError)

# KEYS: stream, meta, result. ARGV: pubsub channel, payload, size (0: no history), ttl,
# meta_ttl, new epoch, use result key (0/1), result ttl.
_PUBLISH = """
local stream, meta, result = KEYS[1], KEYS[2], KEYS[3]
local size = tonumber(ARGV[3])
if ARGV[7] == '1' then
  local seen = redis.call('get', result)
  if seen then return {seen, 1} end
end
local offset, epoch = 0, ''
if size > 0 then
  epoch = redis.call('hget', meta, 'e')
  if not epoch then
    epoch = ARGV[6]
    redis.call('hset', meta, 'e', epoch)
    redis.call('del', stream)
  end
  offset = redis.call('hincrby', meta, 's', 1)
  local meta_ttl = tonumber(ARGV[5])
  if meta_ttl > 0 then redis.call('expire', meta, meta_ttl) end
  redis.call('xadd', stream, 'MAXLEN', size, offset .. '-1', 'd', ARGV[2])
  redis.call('expire', stream, tonumber(ARGV[4]))
end
local position = offset .. ':' .. epoch
redis.call('publish', ARGV[1], position .. ':' .. ARGV[2])
if ARGV[7] == '1' then redis.call('set', result, position, 'EX', tonumber(ARGV[8])) end
return {position, 0}
"""

# KEYS: stream, meta. ARGV: include items (0/1), since ('' or offset), limit (-1: all),
# reverse (0/1), meta_ttl, new epoch.
_HISTORY = """
local stream, meta = KEYS[1], KEYS[2]
local epoch = redis.call('hget', meta, 'e')
if not epoch then
  epoch = ARGV[6]
  redis.call('hset', meta, 'e', epoch)
  redis.call('del', stream)
end
local meta_ttl = tonumber(ARGV[5])
if meta_ttl > 0 then redis.call('expire', meta, meta_ttl) end
local top = tonumber(redis.call('hget', meta, 's') or '0')
if ARGV[1] == '0' then return {top, epoch, {}} end
local limit = tonumber(ARGV[3])
local items
if ARGV[4] == '0' then
  local start = '-'
  if ARGV[2] ~= '' then start = (tonumber(ARGV[2]) + 1) .. '-0' end
  if limit > 0 then
    items = redis.call('xrange', stream, start, '+', 'COUNT', limit)
  else
    items = redis.call('xrange', stream, start, '+')
  end
else
  local stop = '+'
  if ARGV[2] ~= '' then
    local before = tonumber(ARGV[2]) - 1
    if before < 1 then return {top, epoch, {}} end
    stop = before .. '-1'
  end
  if limit > 0 then
    items = redis.call('xrevrange', stream, stop, '-', 'COUNT', limit)
  else
    items = redis.call('xrevrange', stream, stop, '-')
  end
end
return {top, epoch, items}
"""

# KEYS: zset, hash. ARGV: client id, info JSON, ttl seconds.
_PRESENCE_ADD = """
local now = redis.call('time')
local ttl = tonumber(ARGV[3])
redis.call('zadd', KEYS[1], tonumber(now[1]) + ttl, ARGV[1])
redis.call('hset', KEYS[2], ARGV[1], ARGV[2])
redis.call('expire', KEYS[1], math.ceil(ttl))
redis.call('expire', KEYS[2], math.ceil(ttl))
return 1
"""

# KEYS: zset, hash. Drops expired entries, returns the rest as a flat field/value list.
_PRESENCE_GET = """
local now = tonumber(redis.call('time')[1])
local expired = redis.call('zrangebyscore', KEYS[1], '-inf', now)
if #expired > 0 then
  redis.call('hdel', KEYS[2], unpack(expired))
  redis.call('zremrangebyscore', KEYS[1], '-inf', now)
end
return redis.call('hgetall', KEYS[2])
"""


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


# ---------------------------------------------------------------------------- connections


@dataclass(frozen=True)
class _Endpoint:
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


def parse_address(address: str, cfg: RedisConfig) -> _Endpoint:
    """``redis://[user:pass@]host:port[/db]``, ``rediss://...``, ``unix:///path``, or
    ``host:port``; credentials and db in the URL win over the config's."""
    if "://" not in address:
        address = "redis://" + address
    url = urlsplit(address)
    user = unquote(url.username) if url.username else cfg.user
    password = unquote(url.password) if url.password else cfg.password
    if url.scheme == "unix":
        return _Endpoint(path=url.path, user=user, password=password, db=cfg.db)
    db = cfg.db
    if url.path.strip("/"):
        db = int(url.path.strip("/"))
    return _Endpoint(
        host=url.hostname or "127.0.0.1",
        port=url.port or 6379,
        tls=url.scheme == "rediss" or cfg.tls.enabled,
        user=user,
        password=password,
        db=db,
    )


def _ssl_context(cfg: RedisConfig) -> ssl.SSLContext:
    tls = cfg.tls
    ctx = ssl.create_default_context(cafile=tls.server_ca_pem_file or None)
    if tls.cert_pem_file:
        ctx.load_cert_chain(tls.cert_pem_file, tls.key_pem_file or None)
    if tls.insecure_skip_verify:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    return ctx


def _client_kwargs(cfg: RedisConfig, ep: _Endpoint) -> dict[str, Any]:
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


def _standalone_client(cfg: RedisConfig, ep: _Endpoint) -> aioredis.Redis:
    kwargs = _client_kwargs(cfg, ep)
    if ep.path:
        for key in [k for k in kwargs if k.startswith("ssl")]:
            del kwargs[key]
        kwargs["connection_class"] = aioredis.UnixDomainSocketConnection
        kwargs["path"] = ep.path
    else:
        if kwargs.pop("ssl", False):
            kwargs["connection_class"] = aioredis.SSLConnection
        kwargs["host"] = ep.host
        kwargs["port"] = ep.port
    pool = aioredis.BlockingConnectionPool(
        max_connections=64, timeout=cfg.io_timeout, db=ep.db, **kwargs
    )
    return aioredis.Redis(connection_pool=pool)


class _PubSubProtocol(asyncio.Protocol):
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


class _Shard:
    """One Redis deployment (standalone, Sentinel-managed or a Cluster): a command client and
    an owned pub/sub connection that reconnects and resubscribes by itself."""

    def __init__(
        self,
        engine: RedisEngine,
        name: str,
        client: aioredis.Redis | RedisCluster,
        locate: Callable[[], Awaitable[_Endpoint]],
        cfg: RedisConfig,
    ) -> None:
        self.engine = engine
        self.name = name
        self.client = client
        self.locate = locate
        self.cfg = cfg
        self.channels: set[bytes] = set()  # pub/sub channels this shard should be subscribed to
        self.connected = False
        self._proto: _PubSubProtocol | None = None
        self._waiters: dict[bytes, list[asyncio.Future[None]]] = {}
        self._to_subscribe: list[bytes] = []
        self._to_unsubscribe: list[bytes] = []
        self._flush_scheduled = False
        self._pong: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._ever_connected = False
        self._scripts: dict[str, str] = {}
        self.also_close: list[aioredis.Redis] = []  # e.g. the Sentinel connections

    # ---------------------------------------------------------------- commands

    async def script(self, lua: str, keys: Sequence[str], args: Sequence[Any]) -> Any:
        """Run a Lua script by SHA, loading it on first use (or after a Redis restart)."""
        sha = self._scripts.get(lua)
        if sha is None:
            sha = self._scripts[lua] = hashlib.sha1(lua.encode()).hexdigest()
        try:
            return await self.client.evalsha(sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return await self.client.eval(lua, len(keys), *keys, *args)

    async def call(self, what: str, coro: Awaitable[T]) -> T:
        try:
            return await asyncio.wait_for(coro, self.cfg.io_timeout)
        except _REDIS_ERRORS as exc:
            raise EngineError(f"redis {self.name}: {what} failed: {exc!r}") from exc

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
        await self.client.aclose()
        if isinstance(self.client, aioredis.Redis):
            await self.client.connection_pool.disconnect()
        for extra in self.also_close:
            await extra.aclose()

    async def subscribe(self, channel: bytes) -> None:
        self.channels.add(channel)
        if not self.connected:
            raise EngineError(f"redis {self.name}: not connected")
        fut = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(channel, []).append(fut)
        self._queue(self._to_subscribe, channel)
        try:
            await asyncio.wait_for(fut, self.cfg.io_timeout)
        except TimeoutError:
            raise EngineError(f"redis {self.name}: subscribe timed out") from None

    def unsubscribe(self, channel: bytes) -> None:
        self.channels.discard(channel)
        if self.connected:
            self._queue(self._to_unsubscribe, channel)

    def _queue(self, batch: list[bytes], channel: bytes) -> None:
        # Subscribes issued in one loop iteration share one SUBSCRIBE command.
        batch.append(channel)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        proto = self._proto
        subs, self._to_subscribe = self._to_subscribe, []
        unsubs, self._to_unsubscribe = self._to_unsubscribe, []
        if proto is None:
            return
        for i in range(0, len(subs), 256):
            proto.send(b"SUBSCRIBE", *subs[i : i + 256])
        for i in range(0, len(unsubs), 256):
            proto.send(b"UNSUBSCRIBE", *unsubs[i : i + 256])

    def _on_reply(self, reply: Any) -> None:
        if isinstance(reply, list) and len(reply) >= 3:
            kind = reply[0]
            if kind == b"message":
                self.engine.dispatch(reply[1], reply[2])
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
        if isinstance(reply, list) and reply and reply[0] == b"pong":
            if self._pong is not None and not self._pong.done():
                self._pong.set_result(None)
            return
        if isinstance(reply, Exception):
            log.error("redis %s pub/sub error: %s", self.name, reply)
            if self._proto is not None:
                self._proto.abort()

    async def _connect(self) -> _PubSubProtocol:
        endpoint = await self.locate()
        loop = asyncio.get_running_loop()
        replies: asyncio.Queue[Any] = asyncio.Queue()
        proto = _PubSubProtocol(replies.put_nowait)
        if endpoint.path:
            await asyncio.wait_for(
                loop.create_unix_connection(lambda: proto, endpoint.path),
                self.cfg.connect_timeout,
            )
        else:
            await asyncio.wait_for(
                loop.create_connection(
                    lambda: proto, endpoint.host, endpoint.port,
                    ssl=_ssl_context(self.cfg) if endpoint.tls else None,
                    server_hostname=(self.cfg.tls.server_name or endpoint.host)
                    if endpoint.tls else None,
                ),
                self.cfg.connect_timeout,
            )
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
            except (EngineError, *_REDIS_ERRORS) as exc:
                if self._ever_connected or delay >= 1.0:
                    log.warning("redis %s: pub/sub connect failed: %r (retrying)", self.name, exc)
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)
                continue
            delay = 0.05
            self._proto = proto
            channels = [self.engine.control_channel, self.engine.node_channel, *self.channels]
            for i in range(0, len(channels), 256):
                proto.send(b"SUBSCRIBE", *channels[i : i + 256])
            # PONG comes after every subscribe confirmation: the subscriptions are in effect.
            self._pong = asyncio.get_running_loop().create_future()
            proto.send(b"PING")
            try:
                await asyncio.wait_for(asyncio.shield(self._pong), self.cfg.io_timeout)
            except TimeoutError:
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
                self.engine.reconnected(self)
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

    async def _watch(self, proto: _PubSubProtocol) -> None:
        """Return when the connection closes or stops answering PINGs."""
        interval = min(1.0, self.cfg.io_timeout)
        while not proto.closed.done():
            done, _ = await asyncio.wait([proto.closed], timeout=interval)
            if done:
                return
            self._pong = asyncio.get_running_loop().create_future()
            proto.send(b"PING")
            try:
                await asyncio.wait_for(asyncio.shield(self._pong), self.cfg.io_timeout)
            except TimeoutError:
                log.warning("redis %s: pub/sub connection does not answer PING", self.name)
                return


# ---------------------------------------------------------------------------- the engine


class RedisEngine:
    """Broker + presence in Redis; many nodes share one (or several sharded) deployments."""

    def __init__(self, cfg: RedisConfig, *, presence: RedisConfig | None = None) -> None:
        self.cfg = cfg
        self.prefix = cfg.prefix
        self.presence_ttl = (presence or cfg).presence_ttl
        self.idempotency_ttl = IDEMPOTENCY_TTL
        self._handler: BrokerEventHandler | None = None
        self.control_channel = f"{self.prefix}.control".encode()
        self.node_channel = f"{self.prefix}.node.".encode()
        self._pub_prefix = f"{self.prefix}.p.".encode()
        self._shards = self._make_shards(cfg, "")
        self._presence_shards = (
            self._make_shards(presence, "presence ") if presence is not None else self._shards
        )

    def _make_shards(self, cfg: RedisConfig, label: str) -> list[_Shard]:
        if cfg.cluster_address:
            endpoints = [parse_address(a, cfg) for a in cfg.cluster_address]
            first = endpoints[0]
            kwargs = _client_kwargs(cfg, first)
            cluster = RedisCluster(
                startup_nodes=[ClusterNode(e.host, e.port) for e in endpoints], **kwargs
            )

            async def locate_cluster() -> _Endpoint:
                # Classic pub/sub is cluster-wide: any reachable node will do.
                nodes = [n for n in cluster.get_nodes()] or []
                if nodes:
                    node = random.choice(nodes)
                    return _Endpoint(host=node.host, port=int(node.port), tls=first.tls,
                                     user=first.user, password=first.password)
                return random.choice(endpoints)

            return [_Shard(self, f"{label}cluster", cluster, locate_cluster, cfg)]
        if cfg.sentinel_address:
            sentinels = [parse_address(a, cfg) for a in cfg.sentinel_address]
            sentinel_kwargs = {
                "username": cfg.sentinel_user or None,
                "password": cfg.sentinel_password or None,
                "socket_connect_timeout": cfg.connect_timeout,
                "socket_timeout": cfg.io_timeout,
            }
            master_ep = _Endpoint(user=cfg.user, password=cfg.password, db=cfg.db,
                                  tls=cfg.tls.enabled)
            kwargs = _client_kwargs(cfg, master_ep)
            sentinel = Sentinel(  # type: ignore[no-untyped-call]
                [(s.host, s.port) for s in sentinels], sentinel_kwargs=sentinel_kwargs,
                db=cfg.db, **kwargs,
            )
            client = sentinel.master_for(cfg.sentinel_master_name)

            async def locate_master() -> _Endpoint:
                host, port = await sentinel.discover_master(cfg.sentinel_master_name)
                return _Endpoint(host=str(host), port=int(port), tls=master_ep.tls,
                                 user=cfg.user, password=cfg.password)

            shard = _Shard(self, f"{label}sentinel {cfg.sentinel_master_name}", client,
                           locate_master, cfg)
            shard.also_close = list(sentinel.sentinels)
            return [shard]
        shards = []
        for address in cfg.address:
            ep = parse_address(address, cfg)

            async def locate(ep: _Endpoint = ep) -> _Endpoint:
                return ep

            shards.append(_Shard(self, f"{label}{ep}", _standalone_client(cfg, ep), locate, cfg))
        return shards

    # ---------------------------------------------------------------- keys

    def _shard(self, channel: str) -> _Shard:
        shards = self._shards
        return shards[shard_index(channel, len(shards))] if len(shards) > 1 else shards[0]

    def _presence_shard(self, channel: str) -> _Shard:
        shards = self._presence_shards
        return shards[shard_index(channel, len(shards))] if len(shards) > 1 else shards[0]

    def _key(self, kind: str, channel: str) -> str:
        return f"{self.prefix}.{kind}.{{{channel}}}"

    def _pubsub_channel(self, channel: str) -> bytes:
        return self._pub_prefix + channel.encode()

    # ---------------------------------------------------------------- lifecycle

    def register_handler(self, handler: BrokerEventHandler, node_id: str = "") -> None:
        self._handler = handler
        self.node_channel = f"{self.prefix}.node.{node_id}".encode()

    async def start(self) -> None:
        for shard in self._all_shards():
            shard.start()
        # Serve as soon as Redis answers, but never wait for it forever: while it is away,
        # operations fail with clear errors and the pub/sub connections keep retrying.
        if not await self.wait_connected(self.cfg.connect_timeout + self.cfg.io_timeout):
            log.warning("redis is not reachable yet; serving anyway and retrying")

    async def close(self) -> None:
        for shard in self._all_shards():
            await shard.close()

    def _all_shards(self) -> list[_Shard]:
        shards = list(self._shards)
        shards += [s for s in self._presence_shards if s not in shards]
        return shards

    async def wait_connected(self, within: float) -> bool:
        """True once every pub/sub connection is up (used by tests and benchmarks)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while not all(s.connected for s in self._shards):
            if loop.time() > deadline:
                return False
            await asyncio.sleep(0.02)
        return True

    # ---------------------------------------------------------------- incoming

    def dispatch(self, pubsub_channel: bytes, data: bytes) -> None:
        handler = self._handler
        if handler is None:
            return
        try:
            if pubsub_channel.startswith(self._pub_prefix):
                channel = pubsub_channel[len(self._pub_prefix) :].decode()
                head = data[:1]
                if head == b"j":
                    handler.handle_join(channel, _info_decoder.decode(data[1:]))
                elif head == b"l":
                    handler.handle_leave(channel, _info_decoder.decode(data[1:]))
                else:
                    offset, epoch, payload = data.split(b":", 2)
                    pub = _pub_decoder.decode(payload)
                    pub.offset = int(offset)
                    handler.handle_publication(
                        channel, pub, StreamPosition(offset=pub.offset, epoch=epoch.decode())
                    )
            elif pubsub_channel in (self.control_channel, self.node_channel):
                handler.handle_control(data)
        except (ValueError, msgspec.DecodeError) as exc:
            log.error("redis: dropped a malformed message on %r: %s", pubsub_channel, exc)

    def reconnected(self, shard: _Shard) -> None:
        if self._handler is None:
            return
        n = len(self._pub_prefix)
        channels = [c[n:].decode() for c in shard.channels if c.startswith(self._pub_prefix)]
        self._handler.handle_reconnect(channels)

    # ---------------------------------------------------------------- broker

    async def subscribe(self, channel: str) -> None:
        await self._shard(channel).subscribe(self._pubsub_channel(channel))

    async def unsubscribe(self, channel: str) -> None:
        self._shard(channel).unsubscribe(self._pubsub_channel(channel))

    async def publish(
        self,
        channel: str,
        pub: Publication,
        *,
        history: HistoryOptions | None = None,
        idempotency_key: str = "",
    ) -> tuple[StreamPosition, bool]:
        shard = self._shard(channel)
        payload = _pub_encoder.encode(pub)
        if history is None and not idempotency_key:
            await shard.call(
                "publish", shard.client.publish(self._pubsub_channel(channel), b"0::" + payload)
            )
            return StreamPosition(), False
        keys = (
            self._key("s", channel),
            self._key("m", channel),
            f"{self._key('r', channel)}.{idempotency_key}",
        )
        args = (
            self._pubsub_channel(channel),
            payload,
            history.size if history is not None else 0,
            max(int(history.ttl), 1) if history is not None else 0,
            int(history.meta_ttl) if history is not None else 0,
            new_epoch(),
            1 if idempotency_key else 0,
            max(int(self.idempotency_ttl), 1),
        )
        position, suppressed = await shard.call("publish", shard.script(_PUBLISH, keys, args))
        offset, _, epoch = position.partition(b":")
        if int(offset):
            pub.offset = int(offset)
        return StreamPosition(offset=int(offset), epoch=epoch.decode()), bool(suppressed)

    async def _publish_raw(self, shard: _Shard, channel: bytes, data: bytes) -> None:
        await shard.call("publish", shard.client.publish(channel, data))

    async def publish_join(self, channel: str, info: ClientInfo) -> None:
        await self._publish_raw(
            self._shard(channel), self._pubsub_channel(channel), b"j" + _pub_encoder.encode(info)
        )

    async def publish_leave(self, channel: str, info: ClientInfo) -> None:
        await self._publish_raw(
            self._shard(channel), self._pubsub_channel(channel), b"l" + _pub_encoder.encode(info)
        )

    async def publish_control(self, data: bytes, node_id: str = "") -> None:
        target = (
            f"{self.prefix}.node.{node_id}".encode() if node_id else self.control_channel
        )
        await self._publish_raw(self._shards[0], target, data)

    async def history(
        self,
        channel: str,
        *,
        options: HistoryOptions,
        limit: int,
        since: StreamPosition | None = None,
        reverse: bool = False,
    ) -> tuple[list[Publication], StreamPosition]:
        shard = self._shard(channel)
        keys = (self._key("s", channel), self._key("m", channel))
        args = (
            0 if limit == 0 else 1,
            "" if since is None else since.offset,
            limit,
            1 if reverse else 0,
            int(options.meta_ttl),
            new_epoch(),
        )
        top, epoch, items = await shard.call("history", shard.script(_HISTORY, keys, args))
        pubs: list[Publication] = []
        for entry_id, fields in items:
            pub = _pub_decoder.decode(fields[1])
            pub.offset = int(entry_id.partition(b"-")[0])
            pubs.append(pub)
        return pubs, StreamPosition(offset=int(top), epoch=epoch.decode())

    async def remove_history(self, channel: str) -> None:
        shard = self._shard(channel)
        await shard.call("history_remove", shard.client.delete(self._key("s", channel)))

    # ---------------------------------------------------------------- presence

    async def add_presence(self, channel: str, client_id: str, info: ClientInfo) -> None:
        shard = self._presence_shard(channel)
        keys = (self._key("pz", channel), self._key("ph", channel))
        await shard.call("add_presence", shard.script(
            _PRESENCE_ADD, keys, (client_id, _pub_encoder.encode(info), self.presence_ttl)
        ))

    async def remove_presence(self, channel: str, client_id: str, user: str) -> None:
        shard = self._presence_shard(channel)
        pipe = shard.client.pipeline(transaction=False)
        pipe.zrem(self._key("pz", channel), client_id)
        pipe.hdel(self._key("ph", channel), client_id)
        await shard.call("remove_presence", pipe.execute())

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        shard = self._presence_shard(channel)
        keys = (self._key("pz", channel), self._key("ph", channel))
        flat = await shard.call("presence", shard.script(_PRESENCE_GET, keys, ()))
        return {
            flat[i].decode(): _info_decoder.decode(flat[i + 1]) for i in range(0, len(flat), 2)
        }

    async def presence_stats(self, channel: str) -> PresenceStats:
        clients = await self.presence(channel)
        return PresenceStats(len(clients), len({info.user for info in clients.values()}))


_: type[Engine] = RedisEngine
