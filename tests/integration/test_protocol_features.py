"""Protocol features over a raw WebSocket client: server-side subscriptions, expiry and refresh,
server API actions that reach live connections, user-limited channels, legacy API."""

from __future__ import annotations

import json
import time

import aiohttp
import pytest
from websockets.asyncio.client import connect

from tests.support.api import api
from tests.support.raw import Json, JsonWebSocket, open_json_websocket
from tests.support.server import ServerFactory, ServerProcess, make_token


async def open_conn(srv: ServerProcess, token: str) -> tuple[JsonWebSocket, Json]:
    """A connection and the reply to its connect command (whatever it is)."""
    conn = await open_json_websocket(srv.ws_url)
    return conn, await conn.command(connect={"token": token})


async def test_server_side_subscriptions_from_token_and_personal_channel(
    tidings_server: ServerFactory,
) -> None:
    srv = tidings_server({"client": {"subscribe_to_user_personal_channel": {"enabled": True}}})
    conn, reply = await open_conn(srv, make_token("7", channels=["alerts"]))
    subs = reply["connect"]["subs"]
    assert set(subs) == {"alerts", "#7"}
    assert subs["alerts"]["recoverable"] is True and subs["alerts"]["epoch"]
    await api(srv, "publish", {"channel": "#7", "data": {"dm": 1}})
    push = await conn.push("pub", "#7")
    assert push["pub"]["data"] == {"dm": 1} and push["pub"]["offset"] == 1
    # reconnect with recovery of the server-side subscription through connect.subs
    await conn.ws.close()
    await api(srv, "publish", {"channel": "alerts", "data": {"a": 1}})
    await api(srv, "publish", {"channel": "alerts", "data": {"a": 2}})
    conn2 = await open_json_websocket(srv.ws_url)
    reply2 = await conn2.command(connect={
        "token": make_token("7", channels=["alerts"]),
        "subs": {"alerts": {"recover": True, "offset": 0, "epoch": subs["alerts"]["epoch"]}},
    })
    alerts = reply2["connect"]["subs"]["alerts"]
    assert alerts["recovered"] is True and alerts["was_recovering"] is True
    assert [p["data"] for p in alerts["publications"]] == [{"a": 1}, {"a": 2}]
    await conn2.ws.close()


async def test_api_subscribe_unsubscribe_disconnect_reach_connections(
    tidings_server: ServerFactory,
) -> None:
    srv = tidings_server()
    conn, _ = await open_conn(srv, make_token("55"))
    assert await api(srv, "subscribe", {"user": "55", "channel": "pushed"}) == {"result": {}}
    sub_push = await conn.push("subscribe", "pushed")
    assert sub_push["subscribe"]["recoverable"] is True
    await api(srv, "publish", {"channel": "pushed", "data": {"x": 1}})
    assert (await conn.push("pub", "pushed"))["pub"]["data"] == {"x": 1}
    await api(srv, "unsubscribe", {"user": "55", "channel": "pushed"})
    unsub = await conn.push("unsubscribe", "pushed")
    assert unsub["unsubscribe"] == {"code": 2000, "reason": "server unsubscribe"}
    channels = await api(srv, "channels", {})
    assert "pushed" not in channels["result"]["channels"]
    await api(srv, "disconnect", {"user": "55"})
    assert await conn.expect_close() == (3503, "force disconnect")


async def test_connection_expiry_and_refresh(tidings_server: ServerFactory) -> None:
    srv = tidings_server({"client": {"expired_close_delay": "0s"}})
    exp = int(time.time()) + 3  # whole seconds: 2-3 s left, so ttl >= 1 even on a slow run
    refreshed, reply = await open_conn(srv, make_token("r", exp=exp))
    assert reply["connect"]["expires"] is True and 0 < reply["connect"]["ttl"] <= 3
    expiring, _ = await open_conn(srv, make_token("e", exp=exp))
    result = await refreshed.command(refresh={"token": make_token("r", exp=exp + 3600)})
    assert result["refresh"]["expires"] is True and result["refresh"]["ttl"] > 3000
    wrong_user = await refreshed.command(presence_stats={"channel": "x"})
    assert wrong_user["error"]["code"] == 103  # still connected
    assert await expiring.expect_close() == (3005, "connection expired")
    bad, _ = await open_conn(srv, make_token("r", exp=exp + 3600))
    await bad.ws.send(json.dumps({"id": 9, "refresh": {"token": make_token("someone-else")}}))
    assert (await bad.expect_close())[0] == 3500
    await refreshed.ws.close()


async def test_subscription_token_expiry_and_sub_refresh(tidings_server: ServerFactory) -> None:
    srv = tidings_server({"client": {"expired_sub_close_delay": "0s"}})
    conn, _ = await open_conn(srv, make_token("9"))
    exp = int(time.time()) + 2
    ok = await conn.command(subscribe={
        "channel": "private:a", "token": make_token("9", channel="private:a", exp=exp)})
    assert ok["subscribe"]["expires"] is True and ok["subscribe"]["ttl"] <= 2
    refreshed = await conn.command(sub_refresh={
        "channel": "private:a", "token": make_token("9", channel="private:a", exp=exp + 600)})
    assert refreshed["sub_refresh"]["expires"] is True
    await conn.command(subscribe={
        "channel": "private:b", "token": make_token("9", channel="private:b", exp=exp)})
    unsub = await conn.push("unsubscribe", "private:b")
    assert unsub["unsubscribe"] == {"code": 2501, "reason": "subscription expired"}
    not_sub = await conn.command(sub_refresh={"channel": "private:zzz", "token": "x"})
    assert not_sub["error"]["code"] == 103
    await conn.ws.close()


async def test_user_limited_channels(tidings_server: ServerFactory) -> None:
    srv = tidings_server({"channel": {"namespaces": [
        {"name": "dm", "allow_user_limited_channels": True, "presence": True},
    ]}})
    alice, _ = await open_conn(srv, make_token("42"))
    assert "subscribe" in await alice.command(subscribe={"channel": "dm:chat#42,43"})
    denied = await alice.command(subscribe={"channel": "dm:chat#43,44"})
    assert denied["error"] == {"code": 103, "message": "permission denied"}
    await alice.ws.close()


async def test_history_command_pagination_and_errors(tidings_server: ServerFactory) -> None:
    srv = tidings_server()
    conn, _ = await open_conn(srv, make_token("h"))
    await conn.command(subscribe={"channel": "hist"})
    for i in range(5):
        await api(srv, "publish", {"channel": "hist", "data": {"i": i}})
    page1 = (await conn.command(history={"channel": "hist", "limit": 2}))["history"]
    epoch = page1["epoch"]
    page2 = (await conn.command(history={"channel": "hist", "limit": 2,
                                         "since": {"offset": 2, "epoch": epoch}}))["history"]
    assert [p["offset"] for p in page1["publications"]] == [1, 2]
    assert [p["offset"] for p in page2["publications"]] == [3, 4]
    rev = (await conn.command(history={"channel": "hist", "limit": -1, "reverse": True}))
    assert [p["offset"] for p in rev["history"]["publications"]] == [5, 4, 3, 2, 1]
    position = (await conn.command(history={"channel": "hist"}))["history"]
    assert position == {"publications": [], "epoch": epoch, "offset": 5}
    wrong = await conn.command(history={"channel": "hist", "since": {"offset": 1, "epoch": "x"}})
    assert wrong["error"]["code"] == 112
    off = await conn.command(history={"channel": "private:x"})
    assert off["error"]["code"] == 108  # no history in that namespace
    rpc = await conn.command(rpc={"method": "m", "data": {}})
    assert rpc["error"] == {"code": 108, "message": "not available"}
    api_hist = await api(srv, "history", {"channel": "hist", "limit": 1, "reverse": True})
    assert api_hist["result"]["publications"][0]["data"] == {"i": 4}
    await api(srv, "history_remove", {"channel": "hist"})
    emptied = await api(srv, "history", {"channel": "hist", "limit": -1})
    assert emptied["result"] == {"publications": [], "epoch": epoch, "offset": 5}
    await conn.ws.close()


async def test_legacy_api_idempotency_and_transport_error_mode(
    tidings_server: ServerFactory,
) -> None:
    srv = tidings_server()
    body = b'{"method":"publish","params":{"channel":"l","data":{"v":1}},"id":1}\n' \
           b'{"method":4,"params":{"channel":"l"},"id":2}'
    async with aiohttp.ClientSession() as http, http.post(
        srv.api_url, data=body, headers={"X-API-Key": srv.api_key}
    ) as resp:
        assert resp.status == 200
        text = await resp.read()
    first, second = (json.loads(line) for line in text.split(b"\n"))
    assert first["id"] == 1 and first["result"]["offset"] == 1
    assert second == {"id": 2, "result": {"presence": {}}}
    once = {"channel": "idem", "data": {"v": 1}, "idempotency_key": "k1"}
    a = await api(srv, "publish", once)
    b = await api(srv, "publish", once)
    assert a == b == {"result": {"offset": 1, "epoch": a["result"]["epoch"]}}
    error = await api(srv, "publish", {"channel": "nope:x", "data": {}},
                      headers={"X-Centrifugo-Error-Mode": "transport"}, expect_status=404)
    assert error == {"code": 102, "message": "unknown channel"}


async def test_origin_check(tidings_server: ServerFactory) -> None:
    from websockets.exceptions import InvalidStatus
    from websockets.typing import Origin

    srv = tidings_server({"client": {"allowed_origins": ["https://*.example.com"]}})
    good = await connect(srv.ws_url, origin=Origin("https://app.example.com"))
    await good.close()
    none = await connect(srv.ws_url)  # no Origin header (server-side clients): accepted
    await none.close()
    with pytest.raises(InvalidStatus) as exc:
        await connect(srv.ws_url, origin=Origin("https://evil.test"))
    assert exc.value.response.status_code == 403
    # No allowed_origins: the page's own host passes (the Host header names it), as behind
    # nginx with `proxy_set_header Host $host`; any other origin is refused.
    strict = tidings_server()
    with pytest.raises(InvalidStatus) as exc:
        await connect(strict.ws_url, origin=Origin("https://app.example.com"))
    assert exc.value.response.status_code == 403
    host = strict.ws_url.split("//", 1)[1].split("/", 1)[0]  # 127.0.0.1:PORT
    same = await connect(strict.ws_url, origin=Origin(f"http://{host}"))
    await same.close()
    with pytest.raises(InvalidStatus) as exc:  # same host name, another port: another origin
        await connect(strict.ws_url, origin=Origin("http://127.0.0.1:1"))
    assert exc.value.response.status_code == 403
