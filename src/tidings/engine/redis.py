"""The Redis engine: many Tidings nodes share pub/sub, history and presence through Redis.

Works with Redis >= 6.2 and Redis-compatible servers (Valkey). Layout (``P`` is the prefix;
``{ch}`` is a hash tag, so every key of one channel lives in one Redis Cluster slot):

- ``P.p.<ch>``: the pub/sub channel of a Tidings channel. Messages are
  ``<offset>:<epoch>:<flag>:<publication JSON>`` (offset 0 and no epoch without history; flag
  ``d`` when the publisher asked for delta, else empty), ``j<info JSON>`` (join) or
  ``l<info JSON>`` (leave);
- ``P.uc.{user}``: the connections of a user (``client.user_connection_limit``), a sorted set
  (client -> expiry time);
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
import logging
import random
from collections import Counter

import msgspec
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.sentinel import Sentinel

from tidings.config import RedisConfig
from tidings.engine import redis_scripts as scripts
from tidings.engine.base import (
    NO_OPTIONS,
    BrokerEventHandler,
    Engine,
    EngineError,
    HistoryOptions,
    PresenceStats,
    PublishOptions,
)
from tidings.engine.memory import IDEMPOTENCY_TTL, new_epoch
from tidings.engine.redis_addr import (
    Endpoint,
    client_kwargs,
    jump_hash,
    parse_address,
    shard_index,
)
from tidings.engine.redis_conn import Shard
from tidings.protocol.messages import ClientInfo, Publication, StreamPosition

__all__ = ["RedisEngine", "jump_hash", "shard_index"]

log = logging.getLogger("tidings.redis")

_pub_encoder = msgspec.json.Encoder()
_pub_decoder = msgspec.json.Decoder(Publication)
_info_decoder = msgspec.json.Decoder(ClientInfo)


class RedisEngine:
    """Broker + presence in Redis; many nodes share one (or several sharded) deployments."""

    def __init__(self, cfg: RedisConfig, *, presence: RedisConfig | None = None) -> None:
        self.cfg = cfg
        self.prefix = cfg.prefix
        self.presence_ttl = (presence or cfg).presence_ttl
        self.idempotency_ttl = IDEMPOTENCY_TTL
        self.pubsub_errors: Counter[str] = Counter()  # for /metrics
        self._handler: BrokerEventHandler | None = None
        self.control_channel = f"{self.prefix}.control".encode()
        self.node_channel = f"{self.prefix}.node.".encode()
        self._pub_prefix = f"{self.prefix}.p.".encode()
        self._shards = self._make_shards(cfg, "")
        self._presence_shards = (
            self._make_shards(presence, "presence ") if presence is not None else self._shards
        )
        self._shards[0].control = True  # one subscription to the control channels per node

    def _make_shards(self, cfg: RedisConfig, label: str) -> list[Shard]:
        if cfg.cluster_address:
            endpoints = [parse_address(a, cfg) for a in cfg.cluster_address]
            first = endpoints[0]
            kwargs = client_kwargs(cfg, first)
            cluster = RedisCluster(
                startup_nodes=[ClusterNode(e.host, e.port) for e in endpoints], **kwargs
            )

            async def locate_cluster() -> Endpoint:
                # Classic pub/sub is cluster-wide: any reachable node will do.
                nodes = [n for n in cluster.get_nodes()] or []
                if nodes:
                    node = random.choice(nodes)
                    return Endpoint(host=node.host, port=int(node.port), tls=first.tls,
                                     user=first.user, password=first.password)
                return random.choice(endpoints)

            return [Shard(self, f"{label}cluster", cluster, locate_cluster, cfg)]
        if cfg.sentinel_address:
            sentinels = [parse_address(a, cfg) for a in cfg.sentinel_address]
            sentinel_kwargs = {
                "username": cfg.sentinel_user or None,
                "password": cfg.sentinel_password or None,
                "socket_connect_timeout": cfg.connect_timeout,
                "socket_timeout": cfg.io_timeout,
            }
            master_ep = Endpoint(user=cfg.user, password=cfg.password, db=cfg.db,
                                  tls=cfg.tls.enabled)
            kwargs = client_kwargs(cfg, master_ep)
            sentinel = Sentinel(  # type: ignore[no-untyped-call]
                [(s.host, s.port) for s in sentinels], sentinel_kwargs=sentinel_kwargs,
                db=cfg.db, **kwargs,
            )

            async def locate_master() -> Endpoint:
                host, port = await sentinel.discover_master(cfg.sentinel_master_name)
                return Endpoint(host=str(host), port=int(port), tls=master_ep.tls,
                                user=cfg.user, password=cfg.password, db=cfg.db)

            shard = Shard(self, f"{label}sentinel {cfg.sentinel_master_name}", None,
                           locate_master, cfg)
            shard.also_close = list(sentinel.sentinels)
            return [shard]
        shards = []
        for address in cfg.address:
            ep = parse_address(address, cfg)

            async def locate(ep: Endpoint = ep) -> Endpoint:
                return ep

            shards.append(Shard(self, f"{label}{ep}", None, locate, cfg))
        return shards

    # ---------------------------------------------------------------- keys

    def _shard(self, channel: str) -> Shard:
        shards = self._shards
        return shards[shard_index(channel, len(shards))] if len(shards) > 1 else shards[0]

    def _presence_shard(self, channel: str) -> Shard:
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
            return
        for shard in self._all_shards():
            await shard.warm()

    async def close(self) -> None:
        for shard in self._all_shards():
            await shard.close()

    async def ready(self) -> None:
        """Every shard's pub/sub connection is up and its command connection answers PING
        (the pings run side by side)."""
        shards = self._all_shards()
        for shard in shards:
            if not shard.connected:
                raise EngineError(f"redis {shard.name}: pub/sub not connected")
        answers = await asyncio.gather(*(s.ping() for s in shards),
                                       return_exceptions=True)
        for answer in answers:
            if isinstance(answer, BaseException):
                raise answer

    def _all_shards(self) -> list[Shard]:
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
                    offset, epoch, flag, payload = data.split(b":", 3)
                    pub = _pub_decoder.decode(payload)
                    pub.offset = int(offset)
                    handler.handle_publication(
                        channel, pub, StreamPosition(offset=pub.offset, epoch=epoch.decode()),
                        flag == b"d",
                    )
            elif pubsub_channel in (self.control_channel, self.node_channel):
                handler.handle_control(data)
        except (ValueError, msgspec.DecodeError) as exc:
            self.pubsub_errors["handle_control_message" if pubsub_channel in (
                self.control_channel, self.node_channel) else "handle_client_message"] += 1
            log.error("redis: dropped a malformed message on %r: %s", pubsub_channel, exc,
                      extra={"engine": "redis", "error": str(exc)})
        except Exception:
            # A handler bug must not take the pub/sub connection (and every channel) down.
            log.exception("redis: handling a message on %r failed", pubsub_channel)

    def reconnected(self, shard: Shard) -> None:
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
        self, channel: str, pub: Publication, options: PublishOptions = NO_OPTIONS
    ) -> tuple[StreamPosition, bool]:
        shard = self._shard(channel)
        payload = _pub_encoder.encode(pub)
        history, idempotency_key = options.history, options.idempotency_key
        flag = b"d" if options.delta else b""
        if history is None and not idempotency_key:
            message = b"0::" + flag + b":" + payload
            await shard.call(
                "publish", shard.execute("PUBLISH", self._pubsub_channel(channel), message)
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
            flag,
        )
        script = shard.script(scripts.PUBLISH, keys, args)
        position, suppressed = await shard.call("publish", script)
        offset, _, epoch = position.partition(b":")
        if int(offset):
            pub.offset = int(offset)
        return StreamPosition(offset=int(offset), epoch=epoch.decode()), bool(suppressed)

    async def _publish_raw(self, shard: Shard, channel: bytes, data: bytes) -> None:
        await shard.call("publish", shard.execute("PUBLISH", channel, data))

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
        top, epoch, items = await shard.call("history", shard.script(scripts.HISTORY, keys, args))
        pubs: list[Publication] = []
        for entry_id, fields in items:
            pub = _pub_decoder.decode(fields[1])
            pub.offset = int(entry_id.partition(b"-")[0])
            pubs.append(pub)
        return pubs, StreamPosition(offset=int(top), epoch=epoch.decode())

    async def remove_history(self, channel: str) -> None:
        shard = self._shard(channel)
        await shard.call("history_remove", shard.execute("DEL", self._key("s", channel)))

    # ---------------------------------------------------------------- presence

    async def add_presence(self, channel: str, client_id: str, info: ClientInfo) -> None:
        shard = self._presence_shard(channel)
        keys = (self._key("pz", channel), self._key("ph", channel))
        await shard.call("add_presence", shard.script(
            scripts.PRESENCE_ADD, keys, (client_id, _pub_encoder.encode(info), self.presence_ttl)
        ))

    async def remove_presence(self, channel: str, client_id: str, user: str) -> None:
        shard = self._presence_shard(channel)
        keys = (self._key("pz", channel), self._key("ph", channel))
        await shard.call("remove_presence", shard.script(scripts.PRESENCE_REMOVE, keys,
                                                         (client_id,)))

    async def presence(self, channel: str) -> dict[str, ClientInfo]:
        shard = self._presence_shard(channel)
        keys = (self._key("pz", channel), self._key("ph", channel))
        flat = await shard.call("presence", shard.script(scripts.PRESENCE_GET, keys, ()))
        return {
            flat[i].decode(): _info_decoder.decode(flat[i + 1]) for i in range(0, len(flat), 2)
        }

    async def presence_stats(self, channel: str) -> PresenceStats:
        clients = await self.presence(channel)
        return PresenceStats(len(clients), len({info.user for info in clients.values()}))

    async def add_user_connection(self, user: str, client_id: str, limit: int) -> bool:
        shard = self._presence_shard(user)
        added = await shard.call("add_user_connection", shard.script(
            scripts.USER_CONNECTION_ADD, (self._key("uc", user),),
            (client_id, limit, self.presence_ttl),
        ))
        return bool(added)

    async def remove_user_connection(self, user: str, client_id: str) -> None:
        shard = self._presence_shard(user)
        await shard.call("remove_user_connection",
                         shard.execute("ZREM", self._key("uc", user), client_id))


_: type[Engine] = RedisEngine
