"""The event seam (``tidings.core.hooks``): each hook observes or answers, in process."""

from __future__ import annotations

import json
import time

from tests.support.inprocess import InProcessServer, in_process_server, settle, websocket
from tests.support.server import make_token
from tidings.core.hooks import (
    ClientEvent,
    ConnectingEvent,
    Credentials,
    DisconnectedEvent,
    PublishingEvent,
    RefreshingEvent,
    RpcEvent,
    SubscribeAnswer,
    SubscribingEvent,
)
from tidings.errors import Disconnect, ErrorCode


async def test_connecting_hook_gives_credentials_without_a_token(
    server: InProcessServer,
) -> None:
    seen: list[ConnectingEvent] = []

    async def connecting(event: ConnectingEvent) -> Credentials | None:
        seen.append(event)
        return Credentials(user="from-cookie", channels=["news"])

    server.node.hooks.connecting = connecting
    ws = await websocket(server)
    cmd_id = ws.command(connect={"data": {"session": "abc"}, "name": "js"})
    await settle()
    result = ws.reply(cmd_id)["connect"]
    assert "news" in result["subs"]
    assert json.loads(seen[0].data or b"") == {"session": "abc"} and seen[0].name == "js"
    assert server.node.registry.users.get("from-cookie")
    token_ws = await websocket(server, make_token("42"))  # a token wins: no hook call
    assert len(seen) == 1 and server.node.registry.users.get("42")
    assert token_ws.close_code() is None


async def test_connecting_hook_can_refuse(server: InProcessServer) -> None:
    async def connecting(event: ConnectingEvent) -> Credentials | None:
        raise Disconnect.PERMISSION_DENIED

    server.node.hooks.connecting = connecting
    ws = await websocket(server)
    ws.command(connect={})
    await settle()
    assert ws.close_code() == 3507


async def test_subscribing_hook_refuses_or_enriches(server: InProcessServer) -> None:
    async def subscribing(event: SubscribingEvent) -> SubscribeAnswer | None:
        if event.channel == "closed":
            raise ErrorCode.PERMISSION_DENIED
        return SubscribeAnswer(data=b'{"welcome":"%s"}' % event.user.encode())

    server.node.hooks.subscribing = subscribing
    ws = await websocket(server, make_token("7"))
    refused = ws.command(subscribe={"channel": "closed"})
    allowed = ws.command(subscribe={"channel": "open"})
    await settle()
    assert ws.reply(refused)["error"]["code"] == 103
    assert ws.reply(allowed)["subscribe"]["data"] == {"welcome": "7"}


async def test_publishing_hook_rewrites_or_refuses(server: InProcessServer) -> None:
    async def publishing(event: PublishingEvent) -> bytes | None:
        data = json.loads(event.data)
        if data["text"] == "spam":
            raise ErrorCode.PERMISSION_DENIED
        if data["text"] == "broken":
            return b'{"not json'  # a hook's bug: the client gets 100, nothing is published
        return json.dumps({**data, "checked": True}).encode()

    server.node.hooks.publishing = publishing
    ws = await websocket(server, make_token("7"))
    ws.command(subscribe={"channel": "chat"})
    await settle()
    ok = ws.command(publish={"channel": "chat", "data": {"text": "hi"}})
    bad = ws.command(publish={"channel": "chat", "data": {"text": "spam"}})
    broken = ws.command(publish={"channel": "chat", "data": {"text": "broken"}})
    await settle()
    assert "publish" in ws.reply(ok) and ws.reply(bad)["error"]["code"] == 103
    assert ws.reply(broken)["error"]["code"] == 100
    pubs = [p["pub"]["data"] for p in ws.pushes() if "pub" in p]
    assert pubs == [{"text": "hi", "checked": True}]


async def test_rpc_hook_answers_and_without_it_108(server: InProcessServer) -> None:
    ws = await websocket(server, make_token("7"))
    before = ws.command(rpc={"method": "sum", "data": [1, 2]})
    await settle()
    assert ws.reply(before)["error"]["code"] == 108

    async def rpc(event: RpcEvent) -> bytes:
        if event.method != "sum":
            raise ErrorCode.METHOD_NOT_FOUND
        return b'{"sum":3,"user":"%s"}' % event.user.encode()

    server.node.hooks.rpc = rpc
    ok = ws.command(rpc={"method": "sum", "data": [1, 2]})
    unknown = ws.command(rpc={"method": "nope"})
    await settle()
    assert ws.reply(ok)["rpc"]["data"] == {"sum": 3, "user": "7"}
    assert ws.reply(unknown)["error"]["code"] == 104


async def test_refreshing_hook_extends_an_expiring_connection() -> None:
    async with in_process_server({"client": {"ping_interval": "0s",
                                             "expired_close_delay": "0s"}}) as srv:
        now = time.time()
        calls: list[RefreshingEvent] = []

        async def refreshing(event: RefreshingEvent) -> int | None:
            calls.append(event)
            return int(now) + 120 if len(calls) == 1 else None

        srv.node.hooks.refreshing = refreshing
        ws = await websocket(srv, make_token("7", exp=int(now) + 30))
        srv.node.timers.tick(1, now + 31)
        await settle()
        assert ws.close_code() is None and calls[0].expires_at == int(now) + 30
        srv.node.timers.tick(2, now + 121)  # the hook declines the second time
        await settle()
        assert ws.close_code() == 3005


async def test_connected_and_disconnected_observers(server: InProcessServer) -> None:
    connected: list[ClientEvent] = []
    disconnected: list[DisconnectedEvent] = []
    server.node.hooks.connected.append(connected.append)
    server.node.hooks.disconnected.append(disconnected.append)

    def broken(event: ClientEvent) -> None:
        raise RuntimeError("an observer's bug")

    server.node.hooks.connected.append(broken)  # logged; the others still run
    ws = await websocket(server, make_token("7"))
    ws.send(b'{"id":5,"bogus":{}}')  # a bad command: closed with 3501
    await settle()
    assert [e.user for e in connected] == ["7"]
    assert [(e.user, e.code) for e in disconnected] == [("7", 3501)]
