"""Several ``tidings serve`` processes sharing one Redis (or two, sharded): what a client or an
API caller does on one node is seen on the other.

Most tests share one module-wide pair of nodes (node A and node B, one Redis) and use channel
and user names of their own; the tests that kill a node or need two Redis instances start
their own. Clients are the real centrifuge-python SDK; the API is called over HTTP.
"""

from __future__ import annotations

import asyncio
import json
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from centrifuge import ClientState, StreamPosition, SubscriptionState

from tests.support.api import api_result
from tests.support.cluster import node_config, running_nodes, wait_cluster
from tests.support.raw import json_websocket
from tests.support.redisproc import RedisServer
from tests.support.sdk import Clients, next_item
from tests.support.server import ServerFactory, ServerProcess, make_token, start_server, unique
from tests.support.timing import TIMEOUT_FACTOR, eventually
from tidings.engine.redis import shard_index

pytestmark = pytest.mark.sdk(max_retry_delay=1.0)
Pair = tuple[ServerProcess, ServerProcess]


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def pair_nodes(
    redis_server: RedisServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pair]:
    tmp = tmp_path_factory.mktemp("nodes")
    prefix = unique("t")
    configs = [node_config([redis_server], prefix, name) for name in ("node-a", "node-b")]
    with running_nodes(lambda cfg: start_server(tmp, cfg), configs) as (a, b):
        yield a, b


@pytest.fixture
async def pair(pair_nodes: Pair) -> Pair:
    """Node A and node B, both alive and listing each other in ``info``."""
    for node in pair_nodes:
        assert node.proc.poll() is None, node.log_text()
    await wait_cluster(list(pair_nodes))
    return pair_nodes


async def publish(
    node: ServerProcess, channel: str, data: Any, session: aiohttp.ClientSession, **extra: Any
) -> dict[str, Any]:
    return await api_result(
        node, "publish", {"channel": channel, "data": data, **extra}, session=session
    )


async def test_api_publish_reaches_subscribers_on_both_nodes(
    pair: Pair, clients: Clients, http: aiohttp.ClientSession
) -> None:
    a, b = pair
    channel = unique("news")
    on_a, _ = await clients.connect(a, "1")
    on_b, _ = await clients.connect(b, "2")
    _, events_a, ctx_a = await clients.subscribe(on_a, channel)
    _, events_b, ctx_b = await clients.subscribe(on_b, channel)
    assert ctx_a.stream_position.epoch == ctx_b.stream_position.epoch != ""

    for n in (1, 2, 3):
        result = await publish(b, channel, {"n": n}, http)
        assert (result["offset"], result["epoch"]) == (n, ctx_a.stream_position.epoch)
    for events in (events_a, events_b):
        got = [await next_item(events.publications) for _ in range(3)]
        assert [(p.offset, p.data) for p in got] == [(n, {"n": n}) for n in (1, 2, 3)]
    # Published on A this time: still one copy each, in order.
    await publish(a, channel, {"n": 4}, http)
    for events in (events_a, events_b):
        assert (await next_item(events.publications)).offset == 4
        assert events.publications.empty()


async def test_client_publish_reaches_subscriber_on_other_node(
    pair: Pair, clients: Clients
) -> None:
    a, b = pair
    channel = unique("chat")
    publisher, _ = await clients.connect(a, "alice")
    reader, _ = await clients.connect(b, "bob")
    pub_sub, pub_events, _ = await clients.subscribe(publisher, channel)
    _, read_events, _ = await clients.subscribe(reader, channel)

    await pub_sub.publish({"text": "hello from A"})
    await publisher.publish(channel, {"text": "second"})  # client.publish: same path
    for events in (read_events, pub_events):
        first = await next_item(events.publications)
        assert (first.offset, first.data) == (1, {"text": "hello from A"})
        assert first.info is not None
        assert (first.info.user, first.info.client) == ("alice", publisher.client_id)
        second = await next_item(events.publications)
        assert (second.offset, second.data) == (2, {"text": "second"})


async def test_presence_is_the_union_of_both_nodes(
    pair: Pair, clients: Clients, http: aiohttp.ClientSession
) -> None:
    a, b = pair
    channel = unique("room")
    u1, u2 = unique("u1"), unique("u2")
    c1, _ = await clients.connect(a, u1)
    c2, _ = await clients.connect(b, u2)
    c3, _ = await clients.connect(b, u1)  # the same user on the other node
    sub1, _, _ = await clients.subscribe(c1, channel)
    await clients.subscribe(c2, channel)
    sub3, _, _ = await clients.subscribe(c3, channel)
    expected = {c1.client_id: u1, c2.client_id: u2, c3.client_id: u1}

    async def everyone_listed() -> bool:
        # The subscribe reply goes out before the presence entry is written in Redis (see the
        # report): poll until the last subscriber's entry is there.
        reply = await api_result(a, "presence", {"channel": channel}, session=http)
        return set(reply["presence"]) == set(expected)

    assert await eventually(everyone_listed)
    for node in (a, b):
        presence = (await api_result(node, "presence", {"channel": channel}, session=http))[
            "presence"
        ]
        assert {cid: info["user"] for cid, info in presence.items()} == expected
        assert all(cid == info["client"] for cid, info in presence.items())
        stats = await api_result(node, "presence_stats", {"channel": channel}, session=http)
        assert stats == {"num_clients": 3, "num_users": 2}
    # Client-side presence, asked on either node.
    for sub in (sub1, sub3):
        sdk_presence = await sub.presence()
        assert {cid: info.user for cid, info in sdk_presence.clients.items()} == expected
        sdk_stats = await sub.presence_stats()
        assert (sdk_stats.num_clients, sdk_stats.num_users) == (3, 2)

    await sub1.unsubscribe()  # leaving on A removes the entry for B too

    async def two_left() -> bool:
        stats = await api_result(b, "presence_stats", {"channel": channel}, session=http)
        return stats == {"num_clients": 2, "num_users": 2}

    assert await eventually(two_left)


async def test_join_and_leave_cross_nodes(pair: Pair, clients: Clients) -> None:
    a, b = pair
    channel = unique("lobby")
    watcher, _ = await clients.connect(b, "watcher")
    _, watch_events, _ = await clients.subscribe(watcher, channel)
    guest_user = unique("guest")
    guest, _ = await clients.connect(a, guest_user)

    def is_guest(info: Any) -> bool:
        return bool(info.client == guest.client_id)

    guest_sub, guest_events, _ = await clients.subscribe(guest, channel)
    join = await next_item(watch_events.joins, is_guest)
    assert join.user == guest_user
    await guest_sub.unsubscribe()
    leave = await next_item(watch_events.leaves, is_guest)
    assert leave.user == guest_user

    # The other direction: the guest (on A) sees the watcher's second connection (on B) join,
    # and its disconnect as a leave.
    await guest_sub.subscribe()
    await next_item(guest_events.subscribed)
    second, _ = await clients.connect(b, "watcher")
    await clients.subscribe(second, channel)
    join = await next_item(guest_events.joins, lambda i: i.client == second.client_id)
    assert join.user == "watcher"
    await second.disconnect()
    leave = await next_item(guest_events.leaves, lambda i: i.client == join.client)
    assert leave.user == "watcher"


async def test_killed_node_presence_expires(
    redis_server: RedisServer,
    tidings_server: ServerFactory,
    clients: Clients,
    http: aiohttp.ClientSession,
) -> None:
    prefix = unique("t")
    with running_nodes(
        lambda cfg: tidings_server(config=cfg),
        [node_config([redis_server], prefix, name) for name in ("doomed", "survivor")],
    ) as (doomed, survivor):
        channel = "kroom"
        victims = [(await clients.connect(doomed, f"victim{i}"))[0] for i in range(2)]
        keeper, _ = await clients.connect(survivor, "keeper")
        for client in [*victims, keeper]:
            await clients.subscribe(client, channel)
        keeper_added = time.monotonic()

        async def present() -> set[str]:
            reply = await api_result(survivor, "presence", {"channel": channel}, session=http)
            return set(reply["presence"])

        everyone = {c.client_id for c in [*victims, keeper]}

        async def all_present() -> bool:
            return await present() == everyone

        assert await eventually(all_present), await present()
        doomed.stop(signal.SIGKILL)  # no leave, no presence removal: only expiry helps
        assert doomed.proc.returncode == -signal.SIGKILL

        async def only_keeper() -> bool:
            return await present() == {keeper.client_id}

        # presence_ttl is 2 s and the entries were refreshed at most ~0.7 s before the kill:
        # gone within 2 s (the engine keeps whole-second expiry times), allowed 2 s more.
        assert await eventually(only_keeper, within=4 * TIMEOUT_FACTOR, interval=0.1), (
            await present()
        )
        stats = await api_result(survivor, "presence_stats", {"channel": channel}, session=http)
        assert stats == {"num_clients": 1, "num_users": 1}
        # The survivor's own entry outlives the TTL (2 s from its first add): its node keeps
        # refreshing it.
        outlived = keeper_added + 2.5 - time.monotonic()
        if outlived > 0:
            await asyncio.sleep(outlived)
        assert await present() == {keeper.client_id}
        assert survivor.proc.poll() is None


async def test_recovery_on_another_node(
    pair: Pair, clients: Clients, http: aiohttp.ClientSession
) -> None:
    a, b = pair
    channel = unique("recover")
    first, _ = await clients.connect(a, "reader")
    _, events, ctx = await clients.subscribe(first, channel)
    epoch = ctx.stream_position.epoch
    assert ctx.recoverable is True
    await publish(a, channel, {"n": 1}, http)
    assert (await next_item(events.publications)).offset == 1
    await first.disconnect()

    for n in (2, 3, 4):
        assert (await publish(b, channel, {"n": n}, http))["offset"] == n

    # A new connection on node B, subscribing from the position the first one reached.
    second, _ = await clients.connect(b, "reader")
    asked: list[str] = []

    async def get_state(ch: str) -> StreamPosition:
        asked.append(ch)
        return StreamPosition(offset=1, epoch=epoch)

    _, events, ctx = await clients.subscribe(second, channel, get_state=get_state)
    assert asked == [channel]
    assert (ctx.was_recovering, ctx.recovered) == (True, True)
    assert ctx.stream_position.epoch == epoch
    missed = [await next_item(events.publications) for _ in range(3)]
    assert [(p.offset, p.data) for p in missed] == [(n, {"n": n}) for n in (2, 3, 4)]
    await publish(a, channel, {"n": 5}, http)
    live = await next_item(events.publications)
    assert (live.offset, live.data) == (5, {"n": 5})
    assert events.publications.empty()


async def test_info_lists_both_nodes(pair: Pair, http: aiohttp.ClientSession) -> None:
    a, b = pair
    views = [(await api_result(node, "info", {}, session=http))["nodes"] for node in (a, b)]
    for nodes in views:
        assert sorted(n["name"] for n in nodes) == ["node-a", "node-b"]
        assert len({n["uid"] for n in nodes}) == 2
        assert all(n["version"] != "" for n in nodes)
    assert {n["uid"] for n in views[0]} == {n["uid"] for n in views[1]}


async def test_channels_api_sums_both_nodes(
    pair: Pair, clients: Clients, http: aiohttp.ClientSession
) -> None:
    a, b = pair
    base = unique("chans")
    only_a, both = f"{base}_only_a", f"{base}_both"
    for user in ("x1", "x2"):
        client, _ = await clients.connect(a, user)
        await clients.subscribe(client, only_a)
        await clients.subscribe(client, both)
    on_b, _ = await clients.connect(b, "x3")
    await clients.subscribe(on_b, both)

    for node in (b, a):
        result = await api_result(node, "channels", {"pattern": f"{base}_*"}, session=http)
        counts = {name: info["num_clients"] for name, info in result["channels"].items()}
        assert counts == {only_a: 2, both: 3}
    everything = await api_result(b, "channels", {}, session=http)
    assert everything["channels"][only_a] == {"num_clients": 2}


async def test_api_disconnect_on_b_reaches_user_on_a(
    pair: Pair, clients: Clients, http: aiohttp.ClientSession
) -> None:
    a, b = pair
    target = unique("target")
    on_a, events_a = await clients.connect(a, target)
    on_b, events_b = await clients.connect(b, target)
    bystander, bystander_events = await clients.connect(a, unique("bystander"))

    assert await api_result(b, "disconnect", {"user": target}, session=http) == {}
    for events in (events_a, events_b):
        ctx = await next_item(events.disconnected)
        assert (ctx.code, ctx.reason) == (3503, "force disconnect")
    assert on_a.state == on_b.state == ClientState.DISCONNECTED

    # A reconnecting code with a custom reason, by client ID.
    custom = {"code": 3011, "reason": "move along"}
    payload = {"user": "", "client": bystander.client_id, "disconnect": custom}
    assert await api_result(b, "disconnect", payload, session=http) == {}
    ctx = await next_item(bystander_events.connecting, lambda c: c.code != 0)
    assert (ctx.code, ctx.reason) == (3011, "move along")
    await next_item(bystander_events.connected)


async def test_api_unsubscribe_on_b_reaches_user_on_a(
    pair: Pair, clients: Clients, http: aiohttp.ClientSession
) -> None:
    a, b = pair
    target, other = unique("target"), unique("other")
    channel = unique("unsub")
    client, _ = await clients.connect(a, target)
    sub, events, _ = await clients.subscribe(client, channel)
    keeper, _ = await clients.connect(a, other)
    keeper_sub, keeper_events, _ = await clients.subscribe(keeper, channel)

    payload = {"user": target, "channel": channel}
    assert await api_result(b, "unsubscribe", payload, session=http) == {}
    ctx = await next_item(events.unsubscribed)
    assert (ctx.code, ctx.reason) == (2000, "server unsubscribe")
    assert sub.state == SubscriptionState.UNSUBSCRIBED
    assert keeper_sub.state == SubscriptionState.SUBSCRIBED

    async def only_keeper() -> bool:
        reply = await api_result(b, "presence", {"channel": channel}, session=http)
        return set(reply["presence"]) == {keeper.client_id}

    assert await eventually(only_keeper)
    await publish(b, channel, {"after": True}, http)
    assert (await next_item(keeper_events.publications)).data == {"after": True}


async def test_api_subscribe_on_b_reaches_user_on_a(
    pair: Pair, clients: Clients, http: aiohttp.ClientSession
) -> None:
    a, b = pair
    target = unique("target")
    channel = unique("serverside")
    await publish(b, channel, {"n": 1}, http)
    client, events = await clients.connect(a, target)

    payload = {"user": target, "channel": channel}
    assert await api_result(b, "subscribe", payload, session=http) == {}
    ctx = await next_item(events.server_subscribed)
    assert ctx.channel == channel
    assert (ctx.recoverable, ctx.positioned) == (True, True)
    assert ctx.stream_position.offset == 1

    await publish(b, channel, {"n": 2}, http)
    pub_ctx = await next_item(events.server_publications)
    assert pub_ctx.channel == channel
    assert (pub_ctx.pub.offset, pub_ctx.pub.data) == (2, {"n": 2})

    async def listed() -> bool:
        reply = await api_result(b, "presence", {"channel": channel}, session=http)
        return set(reply["presence"]) == {client.client_id}

    assert await eventually(listed)


async def test_api_refresh_expired_on_b_reaches_user_on_a(
    pair: Pair, clients: Clients, http: aiohttp.ClientSession
) -> None:
    a, b = pair
    target = unique("target")
    client, events = await clients.connect(a, target)
    first_id = client.client_id
    bystander, _ = await clients.connect(a, unique("bystander"))

    payload = {"user": target, "expired": True}
    assert await api_result(b, "refresh", payload, session=http) == {}
    ctx = await next_item(events.connecting, lambda c: c.code != 0)
    assert (ctx.code, ctx.reason) == (3005, "connection expired")
    # 3005 makes the SDK reconnect; its token has no expiry, so it gets in again.
    assert (await next_item(events.connected)).client != first_id
    assert bystander.state == ClientState.CONNECTED


async def test_idempotency_key_across_nodes(
    pair: Pair, clients: Clients, http: aiohttp.ClientSession
) -> None:
    a, b = pair
    channel = unique("idem")
    readers = [await clients.connect(node, "reader") for node in (a, b)]
    subs = [await clients.subscribe(client, channel) for client, _ in readers]

    key = unique("key")
    first = await publish(a, channel, {"once": True}, http, idempotency_key=key)
    again = await publish(b, channel, {"once": True}, http, idempotency_key=key)
    assert (
        (again["offset"], again["epoch"])
        == (first["offset"], first["epoch"])
        == (
            1,
            first["epoch"],
        )
    )
    after = await publish(b, channel, {"after": True}, http)
    assert after["offset"] == 2
    for _, events, _ in subs:
        got = [await next_item(events.publications) for _ in range(2)]
        assert [(p.offset, p.data) for p in got] == [(1, {"once": True}), (2, {"after": True})]
    history = await api_result(a, "history", {"channel": channel, "limit": -1}, session=http)
    assert [p["offset"] for p in history["publications"]] == [1, 2]


async def test_sharding_over_two_redis_instances(
    redis_server: RedisServer,
    tmp_path: Path,
    tidings_server: ServerFactory,
    clients: Clients,
    http: aiohttp.ClientSession,
) -> None:
    prefix = unique("t")
    with RedisServer(tmp_path, name="redis-shard-2") as second_redis:
        shards = [redis_server, second_redis]
        with running_nodes(
            lambda cfg: tidings_server(config=cfg),
            [node_config(shards, prefix, name) for name in ("shard-a", "shard-b")],
        ) as (a, b):
            channels = [f"sharded{i}" for i in range(40)]
            reader, _ = await clients.connect(a, "reader")
            subs = {ch: await clients.subscribe(reader, ch) for ch in channels}
            for ch in channels:
                assert (await publish(b, ch, {"ch": ch, "n": 1}, http))["offset"] == 1
            for ch, (_, events, _) in subs.items():
                pub = await next_item(events.publications)
                assert (pub.offset, pub.data) == (1, {"ch": ch, "n": 1})

            # Each instance holds the streams of the channels hashed to it, and only those.
            held: list[set[str]] = []
            for server in shards:
                with server.client() as raw:
                    keys = raw.keys(f"{prefix}.s.*".encode())
                held.append({k.decode()[len(f"{prefix}.s.{{") : -1] for k in keys})
            assert held[0] and held[1], held
            assert held[0] | held[1] == set(channels)
            assert not held[0] & held[1]
            for index, names in enumerate(held):
                assert all(shard_index(ch, 2) == index for ch in names)

            # Recovery from node B of channels on both shards.
            epochs = {ch: ctx.stream_position.epoch for ch, (_, _, ctx) in subs.items()}
            await reader.disconnect()
            for n in (2, 3):
                result = await api_result(
                    a, "broadcast", {"channels": channels, "data": {"n": n}}, session=http
                )
                offsets = [r["result"]["offset"] for r in result["responses"]]
                assert offsets == [n] * len(channels)
            second, _ = await clients.connect(b, "reader")

            async def get_state(ch: str) -> StreamPosition:
                return StreamPosition(offset=1, epoch=epochs[ch])

            for ch in channels:
                _, events, ctx = await clients.subscribe(second, ch, get_state=get_state)
                assert (ctx.was_recovering, ctx.recovered) == (True, True), ch
                got = [await next_item(events.publications) for _ in range(2)]
                assert [(p.offset, p.data) for p in got] == [(2, {"n": 2}), (3, {"n": 3})]
            assert a.proc.poll() is None and b.proc.poll() is None


async def test_unsubscribe_and_subscribe_in_one_frame_keeps_delivering(
    pair: Pair, redis_server: RedisServer, http: aiohttp.ClientSession
) -> None:
    a, _ = pair
    # No presence, no join/leave in this namespace: nothing awaits Redis between the two.
    channel = unique("smallhistory:resub")
    async with json_websocket(a.ws_url, proxy=None) as ws:

        async def send(*commands: dict[str, Any]) -> None:
            await ws.send("\n".join(json.dumps(c) for c in commands))

        async def receive(pred: Callable[[dict[str, Any]], bool]) -> dict[str, Any] | None:
            try:
                return await ws.next(pred, within=2 * TIMEOUT_FACTOR)
            except TimeoutError:
                return None

        await send(
            {"id": 1, "connect": {"token": make_token("resub")}},
            {"id": 2, "subscribe": {"channel": channel}},
        )
        assert await receive(lambda m: m.get("id") == 2) is not None
        await publish(a, channel, {"n": 1}, http)
        assert await receive(lambda m: "push" in m) is not None

        await send(
            {"id": 3, "unsubscribe": {"channel": channel}},
            {"id": 4, "subscribe": {"channel": channel}},
        )
        reply = await receive(lambda m: m.get("id") == 4)
        assert reply is not None and "subscribe" in reply, reply
        assert (await publish(a, channel, {"n": 2}, http))["offset"] == 2
        push = await receive(lambda m: "push" in m)
        with redis_server.client() as raw:
            ((_, numsub),) = raw.pubsub_numsub(
                f"{a.config['engine']['redis']['prefix']}.p.{channel}"
            )
        assert push is not None, f"publication never delivered; PUBSUB NUMSUB = {numsub}"
        assert push["push"]["pub"]["offset"] == 2
