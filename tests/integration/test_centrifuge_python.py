"""The real centrifuge-python 0.7.0 SDK against a ``tidings serve`` subprocess.

Every wait is bounded by ``asyncio.wait_for``; reconnects are held back deterministically by
blocking the SDK's ``on_connecting`` handler (the SDK awaits it before scheduling a reconnect).
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from centrifuge import ClientState, ReplyError, StreamPosition, SubscriptionState

from tests.support.api import api, api_publish
from tests.support.sdk import Clients, SubEvents, drop_transport, next_item
from tests.support.server import ServerProcess, make_token


async def test_connect_with_token(server: ServerProcess, clients: Clients) -> None:
    client, events = clients.new(server, make_token("42"))
    await client.connect()
    ctx = await next_item(events.connected)
    assert ctx.client == client.client_id
    assert uuid.UUID(ctx.client).version == 4
    assert ctx.version != ""
    assert client.state == ClientState.CONNECTED
    other, _ = await clients.connect(server, "42")
    assert other.client_id != client.client_id


async def test_subscribe_and_publish_from_client(server: ServerProcess, clients: Clients) -> None:
    client, _ = await clients.connect(server)
    sub, events, ctx = await clients.subscribe(client, "chat")
    assert (ctx.recoverable, ctx.positioned) == (True, True)  # force_recovery in BASE_CONFIG
    assert (ctx.was_recovering, ctx.recovered) == (False, False)
    assert ctx.stream_position.epoch != ""
    await sub.publish({"input": "hello"})
    pub = await next_item(events.publications)
    assert pub.data == {"input": "hello"}
    assert pub.offset == 1
    assert pub.info is not None
    assert (pub.info.user, pub.info.client) == ("42", client.client_id)


async def test_api_publish_reaches_subscriber(server: ServerProcess, clients: Clients) -> None:
    client, _ = await clients.connect(server)
    _, events, ctx = await clients.subscribe(client, "news")
    result = await api_publish(server, "news", {"text": "from api"})
    assert result["offset"] == 1
    assert result["epoch"] == ctx.stream_position.epoch
    pub = await next_item(events.publications)
    assert pub.data == {"text": "from api"}
    assert pub.offset == 1
    assert pub.info is None  # server-API publications carry no ClientInfo


async def test_history(server: ServerProcess, clients: Clients) -> None:
    client, _ = await clients.connect(server)
    sub, events, ctx = await clients.subscribe(client, "hist")
    epoch = ctx.stream_position.epoch
    for n in range(1, 6):
        await sub.publish({"n": n})
    for n in range(1, 6):
        assert (await next_item(events.publications)).offset == n

    full = await sub.history(limit=-1)
    assert [p.offset for p in full.publications] == [1, 2, 3, 4, 5]
    assert [p.data for p in full.publications] == [{"n": n} for n in range(1, 6)]
    assert (full.offset, full.epoch) == (5, epoch)

    two = await sub.history(limit=2)
    assert [p.offset for p in two.publications] == [1, 2]
    assert two.offset == 5

    position_only = await sub.history(limit=0)
    assert (position_only.publications, position_only.offset) == ([], 5)

    pages: list[list[int]] = []
    since = StreamPosition(offset=0, epoch=epoch)
    while True:
        page = await sub.history(limit=2, since=since)
        if not page.publications:
            break
        pages.append([p.offset for p in page.publications])
        since = StreamPosition(offset=page.publications[-1].offset, epoch=epoch)
        assert len(pages) <= 5, pages
    assert pages == [[1, 2], [3, 4], [5]]  # no overlap, nothing missed

    rev = await sub.history(limit=-1, reverse=True)
    assert [p.offset for p in rev.publications] == [5, 4, 3, 2, 1]
    rev_page = await sub.history(limit=2, reverse=True, since=StreamPosition(offset=4, epoch=epoch))
    assert [p.offset for p in rev_page.publications] == [3, 2]

    with pytest.raises(ReplyError) as exc:
        await sub.history(limit=-1, since=StreamPosition(offset=1, epoch="wrong-epoch"))
    assert exc.value.code == 112


async def test_presence_and_presence_stats(server: ServerProcess, clients: Clients) -> None:
    c1, _ = await clients.connect(server, "42")
    c2, _ = await clients.connect(server, "43")
    sub1, _, _ = await clients.subscribe(c1, "room")
    await clients.subscribe(c2, "room")

    presence = await sub1.presence()
    assert set(presence.clients) == {c1.client_id, c2.client_id}
    assert {k: v.user for k, v in presence.clients.items()} == {
        c1.client_id: "42",
        c2.client_id: "43",
    }
    assert all(k == v.client for k, v in presence.clients.items())
    stats = await sub1.presence_stats()
    assert (stats.num_clients, stats.num_users) == (2, 2)

    c3, _ = await clients.connect(server, "42")  # same user, second connection
    await clients.subscribe(c3, "room")
    stats = await sub1.presence_stats()
    assert (stats.num_clients, stats.num_users) == (3, 2)


async def test_join_and_leave_events(server: ServerProcess, clients: Clients) -> None:
    watcher, _ = await clients.connect(server, "42")
    _, watch_events, _ = await clients.subscribe(watcher, "lobby")
    other, _ = await clients.connect(server, "43")

    def not_self(info: Any) -> bool:
        return bool(info.client != watcher.client_id)

    other_sub, _, _ = await clients.subscribe(other, "lobby")
    join = await next_item(watch_events.joins, not_self)
    assert (join.user, join.client) == ("43", other.client_id)

    await other_sub.unsubscribe()
    leave = await next_item(watch_events.leaves, not_self)
    assert (leave.user, leave.client) == ("43", other.client_id)

    await other_sub.subscribe()
    join = await next_item(watch_events.joins, not_self)
    assert join.client == other.client_id
    await other.disconnect()  # a closed connection leaves its channels too
    leave = await next_item(watch_events.leaves, not_self)
    assert (leave.user, leave.client) == ("43", join.client)


async def test_recovery_after_dropped_connection(server: ServerProcess, clients: Clients) -> None:
    client, events = await clients.connect(server)
    _, sub_events, ctx = await clients.subscribe(client, "recover")
    epoch = ctx.stream_position.epoch
    assert (await api_publish(server, "recover", {"n": 1}))["offset"] == 1
    assert (await next_item(sub_events.publications)).data == {"n": 1}

    release = await drop_transport(client, events)
    for n in (2, 3, 4):
        assert (await api_publish(server, "recover", {"n": n}))["offset"] == n
    assert client.state == ClientState.CONNECTING  # the publishes really happened while away
    release()

    resub = await next_item(sub_events.subscribed)
    assert (resub.was_recovering, resub.recovered) == (True, True)
    assert resub.stream_position.epoch == epoch
    assert resub.stream_position.offset == 1  # spec 6.3: the client's own position
    missed = [await next_item(sub_events.publications) for _ in range(3)]
    assert [(p.offset, p.data) for p in missed] == [(n, {"n": n}) for n in (2, 3, 4)]

    await api_publish(server, "recover", {"n": 5})
    live = await next_item(sub_events.publications)
    assert (live.offset, live.data) == (5, {"n": 5})  # no duplicate of a recovered one
    assert sub_events.publications.empty()


async def test_recovery_fails_when_history_too_short(
    server: ServerProcess, clients: Clients
) -> None:
    channel = "smallhistory:feed"
    client, events = await clients.connect(server)
    _, sub_events, ctx = await clients.subscribe(client, channel)
    assert ctx.recoverable is True
    await api_publish(server, channel, {"n": 1})
    assert (await next_item(sub_events.publications)).offset == 1

    release = await drop_transport(client, events)
    for n in range(2, 7):
        await api_publish(server, channel, {"n": n})
    assert client.state == ClientState.CONNECTING
    release()

    resub = await next_item(sub_events.subscribed)
    assert (resub.was_recovering, resub.recovered) == (True, False)
    assert resub.stream_position.offset == 6  # the stream top on failure
    await api_publish(server, channel, {"n": 7})
    live = await next_item(sub_events.publications)
    assert (live.offset, live.data) == (7, {"n": 7})  # nothing from the lost window came


BAD_TOKENS = {
    "garbage": ("invalid_token", 3500),
    "wrong_secret": (make_token("42", secret="not-the-secret"), 3500),
    "channel_claim": (make_token("42", channel="news"), 3500),
    "no_token": ("", 3501),
}


@pytest.mark.parametrize(("token", "code"), BAD_TOKENS.values(), ids=BAD_TOKENS.keys())
async def test_bad_credentials_disconnect(
    server: ServerProcess, clients: Clients, token: str, code: int
) -> None:
    client, events = clients.new(server, token)
    await client.connect()
    ctx = await next_item(events.disconnected)
    assert ctx.code == code
    assert client.state == ClientState.DISCONNECTED
    assert events.connected.empty()


async def test_expired_token_without_get_token(server: ServerProcess, clients: Clients) -> None:
    client, events = clients.new(server, make_token("42", exp=int(time.time()) - 10))
    await client.connect()
    err = await next_item(events.errors, lambda e: isinstance(e.error, ReplyError))
    assert err.error.code == 109  # "token expired" reply to connect
    ctx = await next_item(events.disconnected)
    assert ctx.code == 1  # the SDK's own "unauthorized": it has no get_token to refresh with
    assert events.connected.empty()


async def test_expired_token_refreshed_with_get_token(
    server: ServerProcess, clients: Clients
) -> None:
    calls: list[str] = []

    async def get_token() -> str:
        calls.append("called")
        return make_token("42")

    expired = make_token("42", exp=int(time.time()) - 10)
    client, events = clients.new(server, expired, get_token=get_token)
    await client.connect()
    await next_item(events.connected)
    err = await next_item(events.errors)
    assert isinstance(err.error, ReplyError)
    assert err.error.code == 109
    assert calls == ["called"]


@pytest.mark.parametrize("token", ["", "invalid_token"], ids=["no_token", "invalid_token"])
async def test_private_channel_denied(server: ServerProcess, clients: Clients, token: str) -> None:
    client, _ = await clients.connect(server)
    events = SubEvents()
    sub = client.new_subscription("private:x", events=events, token=token)
    await sub.subscribe()
    ctx = await next_item(events.unsubscribed)
    assert ctx.code == 103
    assert sub.state == SubscriptionState.UNSUBSCRIBED
    assert events.subscribed.empty()
    assert client.state == ClientState.CONNECTED


async def test_private_channel_with_sub_token(server: ServerProcess, clients: Clients) -> None:
    client, events = await clients.connect(server)
    sub_token = make_token("42", channel="private:x")
    sub, _, _ = await clients.subscribe(client, "private:x", token=sub_token)
    assert sub.state == SubscriptionState.SUBSCRIBED
    # A token for another channel is not just refused: the connection is closed (spec 2.2).
    other = client.new_subscription("private:y", token=make_token("42", channel="private:z"))
    await other.subscribe()
    assert (await next_item(events.disconnected)).code == 3500


async def test_client_command_errors(server: ServerProcess, clients: Clients) -> None:
    client, _ = await clients.connect(server)
    with pytest.raises(ReplyError) as exc:
        await client.publish("undefined:channel", {"a": 1})
    assert exc.value.code == 102  # unknown namespace
    with pytest.raises(ReplyError) as exc:
        await client.publish("private:x", {"a": 1})
    assert exc.value.code == 103  # no publish permission in `private`
    with pytest.raises(ReplyError) as exc:
        await client.rpc("any_method", {})
    assert exc.value.code == 108  # no RPC handler
    assert client.state == ClientState.CONNECTED


async def test_api_disconnect(server: ServerProcess, clients: Clients) -> None:
    client, events = await clients.connect(server, "42")
    bystander, bystander_events = await clients.connect(server, "43")
    first_id = client.client_id
    custom = {"code": 3011, "reason": "force reconnect"}
    reply = await api(server, "disconnect", {"user": "42", "disconnect": custom})
    assert reply == {"result": {}}
    ctx = await next_item(events.connecting, lambda c: c.code != 0)
    assert (ctx.code, ctx.reason) == (3011, "force reconnect")  # a reconnecting code
    assert (await next_item(events.connected)).client != first_id
    assert bystander.state == ClientState.CONNECTED

    assert await api(server, "disconnect", {"user": "43"}) == {"result": {}}
    ctx = await next_item(bystander_events.disconnected)
    assert (ctx.code, ctx.reason) == (3503, "force disconnect")  # the terminal default
    assert bystander.state == ClientState.DISCONNECTED
    assert client.state == ClientState.CONNECTED
    assert events.disconnected.empty()
