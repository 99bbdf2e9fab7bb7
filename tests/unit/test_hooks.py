"""Backend hooks in process: set in code (``node.hooks.set``), gated by the config as
Centrifugo's proxies are, plain and ``async`` functions, and what a broken hook costs."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
import time
from typing import Any

from tests.support.inprocess import InProcessServer, in_process_server, settle, websocket
from tests.support.server import make_token
from tests.support.timing import eventually
from tidings.core.hooks import ClientEvent, DisconnectedEvent
from tidings.hooks import (
    ConnectRequest,
    ConnectResult,
    HookDisconnect,
    HookError,
    PublishRequest,
    PublishResult,
    RefreshRequest,
    RefreshResult,
    RPCRequest,
    RPCResult,
    SubscribeRequest,
    SubscribeResult,
)

HOOKED = {"channel": {"namespaces": [
    {"name": "hooked", "subscribe_proxy_enabled": True, "publish_proxy_enabled": True}]},
    "rpc": {"without_namespace": {"proxy_enabled": True}},
    "client": {"ping_interval": "0s", "expired_close_delay": "0s"}}


async def test_connect_hook_reads_headers_and_a_token_still_wins(
        server: InProcessServer) -> None:
    seen: list[ConnectRequest] = []

    async def connect(req: ConnectRequest) -> ConnectResult:
        seen.append(req)
        return ConnectResult(user=req.headers["cookie"].removeprefix("user="),
                             channels=["news"], data={"hi": req.data["n"]})

    server.node.hooks.set("connect", connect)
    ws = await websocket(server, headers={"Cookie": "user=ann", "X-Other": "no"})
    cmd_id = ws.command(connect={"data": {"n": 1}, "name": "js"})
    await settle()
    result = ws.reply(cmd_id)["connect"]
    assert result["data"] == {"hi": 1} and "news" in result["subs"]
    assert server.node.registry.users.get("ann")
    req = seen[0]
    assert (req.name, req.transport, req.protocol, req.encoding) == (
        "js", "websocket", "json", "json")
    assert req.headers == {"cookie": "user=ann"}  # only the allowed ones are forwarded
    await websocket(server, make_token("42"))  # a token: the hook is not asked
    assert len(seen) == 1 and server.node.registry.users.get("42")


async def test_a_plain_function_runs_in_a_thread(server: InProcessServer) -> None:
    threads: list[str] = []

    def connect(req: ConnectRequest) -> ConnectResult:
        threads.append(threading.current_thread().name)
        return ConnectResult(user="sync")

    server.node.hooks.set("connect", connect)
    ws = await websocket(server)
    cmd_id = ws.command(connect={})
    assert await eventually(lambda: any(m.get("id") == cmd_id for m in ws.messages()))
    assert "connect" in ws.reply(cmd_id)
    assert threads and threads[0] != threading.main_thread().name


async def test_refusals_and_broken_hooks(server: InProcessServer) -> None:
    def connect(req: ConnectRequest) -> Any:
        mode = req.data["mode"]
        if mode == "error":
            raise HookError(4001, "go away", temporary=True)
        if mode == "disconnect":
            raise HookDisconnect(4501, "no")
        if mode == "wrong":
            return {"user": "a dict is not a result"}
        raise KeyError("a bug")

    server.node.hooks.set("connect", connect)
    answers: dict[str, Any] = {}
    for mode in ("error", "disconnect", "wrong", "bug"):
        ws = await websocket(server)
        cmd_id = ws.command(connect={"data": {"mode": mode}})
        assert await eventually(lambda: ws.close_code() is not None or any(  # noqa: B023
            m.get("id") == cmd_id for m in ws.messages()))  # noqa: B023
        answers[mode] = ws.close_code() or ws.reply(cmd_id)["error"]
    assert answers == {
        "error": {"code": 4001, "message": "go away", "temporary": True},
        "disconnect": 4501,
        "wrong": {"code": 100, "message": "internal server error", "temporary": True},
        "bug": {"code": 100, "message": "internal server error", "temporary": True},
    }


async def test_channel_hooks_apply_where_the_namespace_enables_them() -> None:
    async with in_process_server(HOOKED) as srv:
        asked: list[str] = []

        async def subscribe(req: SubscribeRequest) -> SubscribeResult:
            asked.append(req.channel)
            return SubscribeResult(data={"ok": req.user})

        async def publish(req: PublishRequest) -> PublishResult:
            return PublishResult(data={**req.data, "checked": True})

        srv.node.hooks.set("subscribe", subscribe)
        srv.node.hooks.set("publish", publish)
        ws = await websocket(srv, make_token("7"))
        hooked = ws.command(subscribe={"channel": "hooked:a"})
        plain = ws.command(subscribe={"channel": "plain"})  # the namespace's own rules
        await settle()
        assert ws.reply(hooked)["subscribe"]["data"] == {"ok": "7"}
        assert "subscribe" in ws.reply(plain) and asked == ["hooked:a"]
        ws.command(publish={"channel": "hooked:a", "data": {"text": "hi"}})
        await settle()
        pubs = [p["pub"]["data"] for p in ws.pushes() if "pub" in p]
        assert pubs == [{"text": "hi", "checked": True}]


async def test_rpc_needs_a_hook_where_the_config_enables_it() -> None:
    async with in_process_server(HOOKED) as srv:
        ws = await websocket(srv, make_token("7"))

        async def rpc(req: RPCRequest) -> RPCResult:
            return RPCResult(data={"method": req.method, "user": req.user})

        srv.node.hooks.set("rpc", rpc)
        ok = ws.command(rpc={"method": "sum", "data": [1, 2]})
        other_ns = ws.command(rpc={"method": "ns:sum"})  # no such RPC namespace
        await settle()
        assert ws.reply(ok)["rpc"]["data"] == {"method": "sum", "user": "7"}
        assert ws.reply(other_ns)["error"]["code"] == 104


async def test_refresh_hook_at_expiry() -> None:
    async with in_process_server(HOOKED) as srv:
        now = time.time()
        calls: list[RefreshRequest] = []

        async def refresh(req: RefreshRequest) -> RefreshResult:
            calls.append(req)
            if len(calls) == 1:
                return RefreshResult(expire_at=int(now) + 120, info={"n": 1})
            return RefreshResult(expired=True)

        srv.node.hooks.set("refresh", refresh)
        ws = await websocket(srv, make_token("7", exp=int(now) + 30))
        srv.node.timers.tick(1, now + 31)
        await settle()
        assert ws.close_code() is None and calls[0].user == "7"
        srv.node.timers.tick(2, now + 121)
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
    assert json.dumps([e.client for e in connected])


async def test_a_failed_refresh_keeps_the_connection_and_asks_again() -> None:
    async with in_process_server(HOOKED) as srv:
        now = time.time()
        calls: list[float] = []

        async def refresh(req: RefreshRequest) -> RefreshResult:
            calls.append(time.time())
            if len(calls) == 1:
                raise RuntimeError("the backend is down")
            return RefreshResult(expire_at=int(now) + 600)

        srv.node.hooks.set("refresh", refresh)
        ws = await websocket(srv, make_token("7", exp=int(now) + 30))
        srv.node.timers.tick(1, now + 31)
        await settle()
        assert len(calls) == 1 and ws.close_code() is None
        srv.node.timers.tick(2, now + 60)  # not yet: the retry is RETRY (60 s) later
        await settle()
        assert len(calls) == 1
        srv.node.timers.tick(3, time.time() + 61)
        await settle()
        assert len(calls) == 2 and ws.close_code() is None
        assert srv.node.registry.find(user="7")  # still there


async def test_a_client_gone_during_the_hook_leaves_nothing_behind(
        server: InProcessServer) -> None:
    release = asyncio.Event()

    async def connect(req: ConnectRequest) -> ConnectResult:
        await release.wait()
        return ConnectResult(user="late", channels=["news"])

    server.node.hooks.set("connect", connect, timeout=30)
    ws = await websocket(server)
    ws.command(connect={})
    await settle()
    ws.protocol.connection_lost(None)  # the peer goes while the hook is in flight
    await settle()
    release.set()
    await settle(20)
    assert not server.node.registry.users and not server.node.registry.find(user="late")
    assert not server.node.channels.hub.channels


async def test_answers_are_checked_as_over_http(server: InProcessServer) -> None:
    async def connect(req: ConnectRequest) -> Any:
        mode = req.data["mode"]
        if mode == "not-a-string-user":
            return ConnectResult(user=42)  # type: ignore[arg-type]
        if mode == "code-out-of-range":
            raise HookError(-1, "negative")
        raise HookDisconnect(1000, "not a code a hook may close with")

    server.node.hooks.set("connect", connect)
    seen: dict[str, Any] = {}
    for mode in ("not-a-string-user", "code-out-of-range", "bad-close-code"):
        ws = await websocket(server)
        cmd_id = ws.command(connect={"data": {"mode": mode}})
        await settle()
        seen[mode] = ws.close_code() or ws.reply(cmd_id)["error"]["code"]
    assert seen == {"not-a-string-user": 100, "code-out-of-range": 100, "bad-close-code": 3004}


SEEN: list[PublishRequest] = []


async def binary_publish(req: PublishRequest) -> PublishResult:
    """A publish hook for ``binary_encoding``: payloads travel as base64 both ways."""
    SEEN.append(req)
    return PublishResult(b64data=base64.b64encode(b'{"from":"b64"}').decode())


async def test_binary_encoding_and_user_limited_channels() -> None:
    SEEN.clear()
    async with in_process_server({
        "channel": {"proxy": {"publish": {
            "endpoint": "python:tests.unit.test_hooks:binary_publish", "binary_encoding": True}},
            "namespaces": [{"name": "bin", "publish_proxy_enabled": True,
                            "subscribe_proxy_enabled": True,
                            "allow_user_limited_channels": True}]},
        "client": {"ping_interval": "0s"},
    }) as srv:
        asked: list[str] = []

        async def subscribe(req: SubscribeRequest) -> SubscribeResult:
            asked.append(req.channel)
            return SubscribeResult()

        srv.node.hooks.set("subscribe", subscribe)
        ws = await websocket(srv, make_token("7"))
        mine = ws.command(subscribe={"channel": "bin:room#7"})  # user-limited: the rules
        other = ws.command(subscribe={"channel": "bin:room#8"})
        hooked = ws.command(subscribe={"channel": "bin:room"})
        await settle()
        assert "subscribe" in ws.reply(mine) and ws.reply(other)["error"]["code"] == 103
        assert "subscribe" in ws.reply(hooked) and asked == ["bin:room"]
        ws.command(publish={"channel": "bin:room", "data": {"text": "hi"}})
        await settle()
        req = SEEN[0]
        assert (req.encoding, req.data) == ("binary", None)
        assert json.loads(base64.b64decode(req.b64data)) == {"text": "hi"}
        pubs = [p["pub"]["data"] for p in ws.pushes() if "pub" in p]
        assert pubs == [{"from": "b64"}]


METAS: list[Any] = []


async def meta_subscribe(req: SubscribeRequest) -> SubscribeResult:
    METAS.append(req.meta)
    return SubscribeResult()


async def test_a_tokens_meta_reaches_the_hooks() -> None:
    METAS.clear()
    async with in_process_server({
        "channel": {"proxy": {"subscribe": {
            "endpoint": "python:tests.unit.test_hooks:meta_subscribe",
            "include_connection_meta": True}},
            "namespaces": [{"name": "mm", "subscribe_proxy_enabled": True}]},
        "client": {"ping_interval": "0s"},
    }) as srv:
        ws = await websocket(srv, make_token("7", meta={"tenant": "t1"}))
        cmd = ws.command(subscribe={"channel": "mm:room"})
        await settle()
        assert "subscribe" in ws.reply(cmd) and METAS == [{"tenant": "t1"}]


async def test_a_refresh_info_that_is_not_json_closes_with_3004() -> None:
    async with in_process_server(HOOKED) as srv:
        now = time.time()

        async def refresh(req: RefreshRequest) -> RefreshResult:
            return RefreshResult(expire_at=int(now) + 600,
                                 b64info=base64.b64encode(b"not\njson").decode())

        srv.node.hooks.set("refresh", refresh)
        ws = await websocket(srv, make_token("7", exp=int(now) + 30))
        srv.node.timers.tick(1, now + 31)
        await settle()
        assert ws.close_code() == 3004  # conn_info reaches JSON subscribers: JSON only
