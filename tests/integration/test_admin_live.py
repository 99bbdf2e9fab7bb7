"""The admin's live tail and connections inspector over plain HTTP, with real centrifuge-python
clients: the tail streams a channel's publications, joins and leaves and leaves the channel
with its reader; ``connections`` describes a user's connections (transport, protocol, since,
channels)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import aiohttp
import pytest

from tests.support.admin import ADMIN, admin_api, admin_login, open_tail
from tests.support.api import api_result
from tests.support.cluster import wait_log
from tests.support.sdk import Clients, next_item
from tests.support.server import BASE_CONFIG, ServerProcess, deep_merge, start_server, unique
from tests.support.timing import eventually


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    srv = start_server(tmp_path_factory.mktemp("admin"), deep_merge(BASE_CONFIG, ADMIN))
    yield srv
    srv.stop()


async def test_tail_streams_publications_joins_and_leaves(
    server: ServerProcess, clients: Clients, http: aiohttp.ClientSession
) -> None:
    base = server.http_url
    token = await admin_login(http, base)
    channel, user = unique("tail"), unique("watched")
    async with open_tail(http, base, token, channel) as tail:
        # The tail is the channel's one subscriber on the node.
        counts = await api_result(server, "channels", {"pattern": channel})
        assert counts["channels"] == {channel: {"num_clients": 1}}
        client, _ = await clients.connect(server, user)
        sub, _, _ = await clients.subscribe(client, channel)
        name, join = await tail.next()
        assert name == "message" and join["channel"] == channel
        assert join["join"]["info"]["user"] == user
        assert join["join"]["info"]["client"] == client.client_id
        published = await api_result(server, "publish",
                                     {"channel": channel, "data": {"text": "seen"}})
        name, pub = await tail.next()
        assert pub == {"channel": channel,
                       "pub": {"data": {"text": "seen"}, "offset": published["offset"]}}
        await sub.unsubscribe()
        name, leave = await tail.next()
        assert leave["leave"]["info"]["client"] == client.client_id

    async def gone() -> bool:  # the tail left the channel with its reader
        result = await api_result(server, "channels", {"pattern": channel})
        return not result["channels"]

    assert await eventually(gone)
    assert await wait_log(server, f"live tail of {channel} closed (3 events, 0 dropped)")


async def test_connections_describes_a_users_connections(
    server: ServerProcess, clients: Clients, pb: Clients, http: aiohttp.ClientSession
) -> None:
    base = server.http_url
    token = await admin_login(http, base)
    user, channel = unique("inspected"), unique("room")
    before = time.time()
    json_client, _ = await clients.connect(server, user)
    await clients.subscribe(json_client, channel)
    pb_client, _ = await pb.connect(server, user)
    other, _ = await clients.connect(server, unique("someone-else"))

    reply = await admin_api(http, base, token, "connections", {"user": user})
    found = reply["result"]["connections"]
    assert reply["result"]["total"] == 2
    by_client = {c["client"]: c for c in found}
    assert set(by_client) == {json_client.client_id, pb_client.client_id}
    described = by_client[json_client.client_id]
    assert described["user"] == user
    assert (described["transport"], described["protocol"]) == ("websocket", "json")
    assert described["channels"] == [channel]
    assert before - 1 <= described["connected_at"] <= time.time() + 1
    assert described["node_name"] and described["node"]
    assert by_client[pb_client.client_id]["protocol"] == "protobuf"
    assert found[0]["client"] == pb_client.client_id  # newest first

    # One client by ID; a limit says how many more there were.
    one = await admin_api(http, base, token, "connections", {"client": other.client_id})
    assert [c["client"] for c in one["result"]["connections"]] == [other.client_id]
    capped = await admin_api(http, base, token, "connections", {"limit": 1})
    assert len(capped["result"]["connections"]) == 1
    assert capped["result"]["total"] >= 3

    # Disconnect one of the user's connections by its client ID, as the inspector does.
    done = await admin_api(http, base, token, "disconnect", {
        "user": user, "client": pb_client.client_id,
        "disconnect": {"code": 4501, "reason": "inspected"}})
    assert done == {"result": {}}
    events = pb.created[0][1]
    ctx = await next_item(events.disconnected)
    assert (ctx.code, ctx.reason) == (4501, "inspected")

    async def one_left() -> bool:
        left = await admin_api(http, base, token, "connections", {"user": user})
        return [c["client"] for c in left["result"]["connections"]] == [json_client.client_id]

    assert await eventually(one_left)
