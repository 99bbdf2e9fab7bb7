"""The Redis engine in process, against real Redis deployments the tests start: two engines as
two nodes, every way of addressing Redis (TCP with a password, unix socket, shards, Sentinel,
Cluster), and what happens when Redis goes away and comes back."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import msgspec
import pytest

from tests.support.engine import Recorder, redis_config
from tests.support.redisproc import RedisCluster, RedisSentinel, RedisServer
from tidings.config import RedisConfig
from tidings.engine.base import EngineError, HistoryOptions, PublishOptions
from tidings.engine.redis import RedisEngine, jump_hash, shard_index
from tidings.protocol.messages import ClientInfo, Publication

OPTS = HistoryOptions(size=10, ttl=60.0, meta_ttl=600.0)


def pub(n: int) -> Publication:
    return Publication(data=msgspec.Raw(b'{"n":%d}' % n))


def config(**fields: object) -> RedisConfig:
    """Short connect and I/O timeouts: Redis goes away in some of these tests."""
    return redis_config(**{"connect_timeout": 0.5, "io_timeout": 1.0, **fields})


@asynccontextmanager
async def node(cfg: RedisConfig) -> AsyncIterator[tuple[RedisEngine, Recorder]]:
    engine = RedisEngine(cfg)
    events = Recorder()
    engine.register_handler(events, uuid.uuid4().hex)
    await engine.start()
    try:
        assert await engine.wait_connected(10.0)
        yield engine, events
    finally:
        await engine.close()


async def check_two_nodes(cfg: RedisConfig, channels: list[str]) -> None:
    """Publications, history and presence of each channel are shared by two engines."""
    async with node(cfg) as (a, a_events), node(cfg) as (b, b_events):
        for ch in channels:
            await b.subscribe(ch)
        for i, ch in enumerate(channels):
            position, _ = await a.publish(ch, pub(i), PublishOptions(history=OPTS))
            assert position.offset == 1 and position.epoch
            await a.add_presence(ch, f"c{i}", ClientInfo(user="u", client=f"c{i}"))
        await b_events.wait_for(lambda: len(b_events.publications) == len(channels))
        assert sorted(c for c, _, _ in b_events.publications) == sorted(channels)
        for i, ch in enumerate(channels):
            pubs, top = await b.history(ch, options=OPTS, limit=-1)
            assert [bytes(p.data) for p in pubs] == [b'{"n":%d}' % i]
            assert top.offset == 1
            assert list(await b.presence(ch)) == [f"c{i}"]
        assert a_events.publications == []  # a never subscribed


def test_jump_hash_is_consistent() -> None:
    keys = range(2000)
    two = [jump_hash(k * 7919, 2) for k in keys]
    three = [jump_hash(k * 7919, 3) for k in keys]
    assert set(two) == {0, 1} and set(three) == {0, 1, 2}
    moved = sum(1 for x, y in zip(two, three, strict=True) if x != y)
    assert all(y == 2 for x, y in zip(two, three, strict=True) if x != y)  # only to the new one
    assert 500 < moved < 850  # about a third
    assert shard_index("news", 1) == 0


async def test_two_nodes_share_everything_over_tcp_with_password(tmp_path: Path) -> None:
    with RedisServer(tmp_path, password="s3cret") as server:
        await check_two_nodes(config(address=[server.url]), ["a", "b:c", "{weird}"])


async def test_unix_socket_address(tmp_path: Path) -> None:
    sock = tmp_path / "r.sock"
    with RedisServer(tmp_path, extra_args=["--unixsocket", str(sock)]):
        await check_two_nodes(config(address=[f"unix://{sock}"]), ["u1", "u2"])


async def test_control_messages_reach_every_node_or_one(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as server:
        cfg = config(address=[server.url])
        async with node(cfg) as (a, a_events), node(cfg) as (b, b_events):
            await a.publish_control(b"all")
            await a_events.wait_for(lambda: a_events.controls == [b"all"])
            await b_events.wait_for(lambda: b_events.controls == [b"all"])
            b_id = b.node_channel.decode().rsplit(".", 1)[1]
            await a.publish_control(b"only-b", node_id=b_id)
            await b_events.wait_for(lambda: b_events.controls == [b"all", b"only-b"])
            await a.publish_control(b"all-2")
            await a_events.wait_for(lambda: a_events.controls == [b"all", b"all-2"])


async def test_shards_spread_channels_and_keep_each_on_one(tmp_path: Path) -> None:
    with RedisServer(tmp_path, name="r1") as r1, RedisServer(tmp_path, name="r2") as r2:
        cfg = config(address=[r1.url, r2.url])
        channels = [f"chan{i}" for i in range(30)]
        await check_two_nodes(cfg, channels)
        held = []
        for server in (r1, r2):
            with server.client() as c:
                held.append({k.decode() for k in c.keys(f"{cfg.prefix}.s.*")})
        assert held[0] and held[1], "both shards hold some streams"
        assert not held[0] & held[1]
        assert len(held[0] | held[1]) == len(channels)
        for ch in channels:
            expected = shard_index(ch, 2)
            assert f"{cfg.prefix}.s.{{{ch}}}" in held[expected]


async def test_sentinel(tmp_path: Path) -> None:
    with RedisSentinel(tmp_path) as sentinel:
        cfg = config(address=[], sentinel_address=[sentinel.sentinel_address],
                     sentinel_master_name=sentinel.master_name)
        await check_two_nodes(cfg, ["s1", "s2"])


async def test_cluster(tmp_path: Path) -> None:
    with RedisCluster(tmp_path) as cluster:
        cfg = config(address=[], cluster_address=cluster.addresses)
        channels = [f"k{i}" for i in range(12)]
        await check_two_nodes(cfg, channels)
        slots_used = set()
        for n in cluster.nodes:
            with n.client() as c:
                if c.keys(f"{cfg.prefix}.s.*"):
                    slots_used.add(n.port)
        assert len(slots_used) >= 2, "channels live on several cluster masters"


async def test_separate_presence_redis(tmp_path: Path) -> None:
    with RedisServer(tmp_path, name="b") as broker, RedisServer(tmp_path, name="p") as pres:
        engine = RedisEngine(config(address=[broker.url]),
                             presence=config(address=[pres.url], presence_ttl=30.0))
        engine.register_handler(Recorder(), "n")
        await engine.start()
        try:
            await engine.add_presence("ch", "c1", ClientInfo(user="u", client="c1"))
            assert list(await engine.presence("ch")) == ["c1"]
            with pres.client() as c:
                assert c.keys("*.ph.*")
            with broker.client() as c:
                assert not c.keys("*.ph.*")
        finally:
            await engine.close()


async def test_presence_entries_expire(tmp_path: Path) -> None:
    with RedisServer(tmp_path) as server:
        async with node(config(address=[server.url], presence_ttl=1.0)) as (a, _):
            await a.add_presence("p", "gone", ClientInfo(user="u", client="gone"))
            assert list(await a.presence("p")) == ["gone"]
            await asyncio.sleep(1.2)  # the TTL is the point of this test
            assert await a.presence("p") == {}
            assert (await a.presence_stats("p")).num_clients == 0


async def test_sub_second_presence_ttl_is_honoured(tmp_path: Path) -> None:
    # Expiry times keep Redis TIME's microseconds: an entry added now with a 0.5 s TTL is there
    # when read at once (rounded to whole seconds it was gone in about half of the reads).
    with RedisServer(tmp_path) as server:
        async with node(config(address=[server.url], presence_ttl=0.5)) as (a, _):
            for i in range(20):
                await a.add_presence("sub", f"c{i}", ClientInfo(user="u", client=f"c{i}"))
                assert f"c{i}" in await a.presence("sub")


async def timed(call: Callable[[], object]) -> float:
    started = time.monotonic()
    with pytest.raises(EngineError):
        result = call()
        assert asyncio.iscoroutine(result)
        await result
    return time.monotonic() - started


async def test_redis_restart_fails_fast_then_resubscribes_and_reports(tmp_path: Path) -> None:
    with RedisServer(tmp_path, appendonly=True) as server:
        async with node(config(address=[server.url])) as (a, a_events):
            await a.subscribe("live")
            await a.publish("live", pub(1), PublishOptions(history=OPTS))
            await a_events.wait_for(lambda: len(a_events.publications) == 1)
            server.stop()
            # Every operation fails with a clear error within the I/O timeout, none hangs.
            stream = PublishOptions(history=OPTS)
            assert await timed(lambda: a.publish("live", pub(2), stream)) < 3.0
            assert await timed(lambda: a.history("live", options=OPTS, limit=-1)) < 3.0
            assert await timed(lambda: a.presence("live")) < 3.0
            assert await timed(lambda: a.subscribe("other")) < 3.0
            await a.unsubscribe("other")
            server.restart()
            await a_events.wait_for(lambda: a_events.reconnects == [["live"]], within=15)
            position, _ = await a.publish("live", pub(3), PublishOptions(history=OPTS))
            assert position.offset == 2  # appendonly: the stream survived the restart
            await a_events.wait_for(lambda: len(a_events.publications) == 2)
            assert a_events.publications[-1][2].offset == 2


def self_signed_cert(directory: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 and its key, made with ``cryptography``."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ))
    return cert_path, key_path


async def test_tls(tmp_path: Path) -> None:
    from tests.support.redisproc import free_port
    from tidings.config import RedisTLSConfig

    cert, key = self_signed_cert(tmp_path)
    tls_port = free_port()
    args = ["--tls-port", str(tls_port), "--tls-cert-file", str(cert), "--tls-key-file", str(key),
            "--tls-auth-clients", "no"]
    with RedisServer(tmp_path, extra_args=args):
        cfg = config(address=[f"rediss://127.0.0.1:{tls_port}"],
                     tls=RedisTLSConfig(server_ca_pem_file=str(cert)))
        await check_two_nodes(cfg, ["secure"])
        # Without trusting the certificate the connection is refused, with a clear error.
        untrusted = RedisEngine(config(address=[f"rediss://127.0.0.1:{tls_port}"]))
        untrusted.register_handler(Recorder(), "x")
        await untrusted.start()
        try:
            with pytest.raises(EngineError, match="certificate"):
                await untrusted.publish("secure", pub(1))
        finally:
            await untrusted.close()


async def test_sentinel_failover_is_followed(tmp_path: Path) -> None:
    """The master dies; the sentinel promotes the replica; the engine finds the new master by
    asking the sentinel again on reconnect, and pub/sub and history work there."""
    from tests.support.redisproc import _SentinelProcess

    master = RedisServer(tmp_path, name="m").start()
    replica = RedisServer(tmp_path, name="r",
                          extra_args=["--replicaof", "127.0.0.1", str(master.port)]).start()
    sentinel = _SentinelProcess(tmp_path / "s", "mymaster", master.port).start()
    try:
        with replica.client() as c:  # replicating before the master goes away
            for _ in range(200):
                if c.info("replication").get("master_link_status") == "up":
                    break
                await asyncio.sleep(0.05)
            assert c.info("replication").get("master_link_status") == "up"
        cfg = config(address=[], sentinel_address=[f"127.0.0.1:{sentinel.port}"],
                     sentinel_master_name="mymaster")
        async with node(cfg) as (a, _), node(cfg) as (b, b_events):
            await b.subscribe("f")
            await a.publish("f", pub(1), PublishOptions(history=OPTS))
            await b_events.wait_for(lambda: len(b_events.publications) == 1)
            with master.client() as c:  # replication is asynchronous: let the replica catch up
                assert c.execute_command("WAIT", 1, 5000) == 1
            master.kill()
            position = None
            for _ in range(300):  # down-after 2 s, then the failover: bounded at ~30 s
                try:
                    position, _ = await a.publish("f", pub(2), PublishOptions(history=OPTS))
                    break
                except EngineError:
                    await asyncio.sleep(0.1)
            assert position is not None, "no failover within 30 s"
            with replica.client() as c:
                assert c.info("replication")["role"] == "master"
            assert position.offset == 2  # the replica had the stream
            # b's pub/sub finds the new master too and reports the interruption (offset 2 may
            # have been published before it resubscribed: that is what the report is for).
            await b_events.wait_for(lambda: ["f"] in b_events.reconnects, within=15)
            await a.publish("f", pub(3), PublishOptions(history=OPTS))
            await b_events.wait_for(
                lambda: any(pos.offset == 3 for _, _, pos in b_events.publications), within=5
            )
            pubs, _ = await b.history("f", options=OPTS, limit=-1)
            assert [p.offset for p in pubs] == [1, 2, 3]
    finally:
        sentinel.stop()
        replica.stop()
        master.stop()
