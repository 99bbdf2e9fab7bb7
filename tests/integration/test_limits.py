"""The protections a production node has (docs/security.md): connection limits and rates at
the door, per-connection and per-user command rate limits, the error limit, the user connection
limit across nodes. Each limit is hit with a real client, its exact code asserted, and a client
that stays within its limits keeps being served."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from centrifuge import ReplyError

from tests.support.api import api_result
from tests.support.cluster import node_config, running_nodes
from tests.support.raw import client_frame, http_exchange, raw_websocket, upgrade_request
from tests.support.redisproc import RedisServer
from tests.support.sdk import Clients, next_item
from tests.support.server import ServerFactory, ServerProcess, make_token, start_server, unique
from tests.support.timing import T

pytestmark = pytest.mark.sdk(max_retry_delay=1.0)


def rule(rate: int, interval: str = "10s") -> dict[str, Any]:
    return {"enabled": True, "buckets": [{"interval": interval, "rate": rate}]}


async def publish_ok(client: Any, channel: str, n: int) -> None:
    await client.publish(channel, {"n": n})


async def test_connection_limit_answers_503_at_the_door(
    tidings_server: ServerFactory, clients: Clients
) -> None:
    srv = tidings_server({"client": {"connection_limit": 2}})
    first, _ = await clients.connect(srv, "1")
    await clients.connect(srv, "2")
    status, _, body = await http_exchange(srv.host, srv.port, upgrade_request(srv.host))
    assert (status, body) == (503, b"")
    await first.disconnect()
    await asyncio.sleep(0)  # the slot frees when the server sees the close
    for _ in range(50):
        status, _, _ = await http_exchange(srv.host, srv.port, upgrade_request(srv.host))
        if status == 101:
            break
        await asyncio.sleep(0.1)
    assert status == 101
    assert srv.wait_log("node connection limit reached")


async def test_connection_rate_limit_answers_503(tidings_server: ServerFactory) -> None:
    srv = tidings_server({"client": {"connection_rate_limit": 5}})
    statuses = [
        (await http_exchange(srv.host, srv.port, upgrade_request(srv.host)))[0] for _ in range(12)
    ]
    assert statuses.count(101) >= 5 and statuses.count(503) >= 5, statuses
    assert set(statuses) == {101, 503}
    assert srv.wait_log("connection rate limit reached")


async def test_sockjs_sessions_count_against_the_connection_limit(
    tidings_server: ServerFactory,
) -> None:
    srv = tidings_server({"sockjs": {"enabled": True}, "client": {"connection_limit": 3}})
    statuses = []
    for i in range(5):
        request = (f"POST /connection/sockjs/0/s{i}/xhr HTTP/1.1\r\nHost: t\r\n"
                   "Content-Length: 0\r\n\r\n").encode()
        statuses.append((await http_exchange(srv.host, srv.port, request))[0])
    assert statuses == [200, 200, 200, 503, 503]
    info = await api_result(srv, "info", {})
    assert info["nodes"][0]["num_sockjs_sessions"] == 3


async def test_client_command_rate_limit_gives_111(
    tidings_server: ServerFactory, clients: Clients
) -> None:
    srv = tidings_server({"client": {"rate_limit": {"client_command": {
        "enabled": True, "publish": rule(3)}}}})
    greedy, _ = await clients.connect(srv, "greedy")
    modest, _ = await clients.connect(srv, "modest")
    for n in range(3):
        await publish_ok(greedy, "news", n)
    with pytest.raises(ReplyError) as refused:
        await publish_ok(greedy, "news", 3)
    assert refused.value.code == 111
    await publish_ok(modest, "news", 0)  # its own bucket
    _, events, _ = await clients.subscribe(greedy, "other")  # other commands are not limited
    await api_result(srv, "publish", {"channel": "other", "data": {"still": "served"}})
    assert (await next_item(events.publications)).data == {"still": "served"}
    info = await api_result(srv, "info", {})
    assert info["nodes"][0]["limits"]["limited_commands"] == 1


async def test_user_command_rate_limit_is_shared_by_the_users_connections(
    tidings_server: ServerFactory, clients: Clients
) -> None:
    srv = tidings_server({"client": {"rate_limit": {"user_command": {
        "enabled": True, "default": rule(4)}}}})
    a, _ = await clients.connect(srv, "u")
    b, _ = await clients.connect(srv, "u")
    other, _ = await clients.connect(srv, "v")
    for n in range(2):
        await publish_ok(a, "news", n)
        await publish_ok(b, "news", n)
    with pytest.raises(ReplyError) as refused:
        await publish_ok(a, "news", 9)
    assert refused.value.code == 111
    await publish_ok(other, "news", 0)


async def test_namespace_override_replaces_the_buckets(tidings_server: ServerFactory) -> None:
    srv = tidings_server({
        "client": {"rate_limit": {"client_command": {
            "enabled": True,
            "publish": {**rule(1), "namespace_overrides": [{"namespace_name": "chat",
                                                            **rule(3)}]},
        }}},
        "channel": {"namespaces": [{"name": "chat", "allow_publish_for_client": True}]},
    })
    codes = []
    async with raw_websocket(srv.host, srv.port, token=make_token("42")) as ws:
        for i, channel in enumerate(["news", "news", *["chat:a"] * 4]):
            await ws.send_json({"id": 10 + i, "publish": {"channel": channel, "data": {}}})
            reply = await ws.reply(10 + i)
            codes.append(reply.get("error", {}).get("code", 0))
    assert codes == [0, 111, 0, 0, 0, 111]


async def test_too_many_errors_disconnects_with_3509(tidings_server: ServerFactory) -> None:
    srv = tidings_server({"client": {"rate_limit": {"client_error": {
        "enabled": True, "total": rule(5, "60s")}}}})
    lines = [json.dumps({"id": 2 + i, "subscribe": {"channel": "$denied"}}) for i in range(50)]
    async with raw_websocket(srv.host, srv.port, token=make_token("42")) as ws:
        await ws.send(client_frame("\n".join(lines).encode()))
        assert await ws.close_code() == 3509
    assert srv.wait_log("caused too many errors")


async def test_uni_stream_connect_over_the_user_rate_gets_3013(
    tidings_server: ServerFactory,
) -> None:
    srv = tidings_server({"uni_http_stream": {"enabled": True}, "client": {"rate_limit": {
        "user_command": {"enabled": True, "connect": rule(2, "60s")}}}})
    body = json.dumps({"token": make_token("7")}).encode()
    request = (b"POST /connection/uni_http_stream HTTP/1.1\r\nHost: t\r\n"
               b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    outcomes = []
    for _ in range(3):
        reader, writer = await asyncio.open_connection(srv.host, srv.port)
        writer.write(request)
        first = await asyncio.wait_for(reader.readuntil(b"}\n"), T)
        outcomes.append(b'"code":3013' in first)
        writer.close()
    assert outcomes == [False, False, True]


# ---------------------------------------------------------------- across nodes (Redis)


async def test_user_connection_limit_holds_across_nodes(
    redis: RedisServer, tmp_path: Path, clients: Clients
) -> None:
    prefix = unique("t")
    configs = [node_config([redis], prefix, name) for name in ("a", "b")]
    for cfg in configs:
        cfg["client"]["user_connection_limit"] = 2

    def start(cfg: dict[str, Any]) -> ServerProcess:
        return start_server(tmp_path, cfg)

    with running_nodes(start, configs) as (a, b):
        first, _ = await clients.connect(a, "limited")
        await clients.connect(b, "limited")
        third, third_events = clients.new(b, make_token("limited"))
        await third.connect()
        ctx = await next_item(third_events.disconnected)
        assert ctx.code == 3504
        await clients.connect(a, "someone-else")  # other users are not affected
        await first.disconnect()  # a slot frees cluster-wide
        fourth, fourth_events = clients.new(b, make_token("limited"))
        await fourth.connect()
        await next_item(fourth_events.connected)
