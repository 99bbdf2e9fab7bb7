"""Backend hooks end to end: one test body per scenario, run with the hooks over HTTP (a real
aiohttp hook_backend) and in process (``python:`` endpoints inside the server). The client is a
bare JSON WebSocket, so every code it sees is checked as sent."""

from __future__ import annotations

import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from tests.support.api import api_result
from tests.support.hookapp import HookBackend, hook_config, python_endpoint
from tests.support.raw import JsonWebSocket
from tests.support.server import ServerProcess, make_token
from tests.support.timing import T

Factory = Any


@pytest.fixture(params=["http", "python"])
async def hooked(request: pytest.FixtureRequest, tidings_server: Factory,
                 hook_backend: HookBackend) -> ServerProcess:
    """A server whose hooks are the hook_backend's (http) or the same functions in process."""
    endpoint = hook_backend.endpoint if request.param == "http" else python_endpoint
    overrides = hook_config(endpoint)
    overrides["client"].update({"expired_close_delay": "0s", "expired_sub_close_delay": "0s"})
    server: ServerProcess = tidings_server(overrides)
    return server


Opener = Callable[..., Awaitable[JsonWebSocket]]


async def ws(json_ws: Opener, server: ServerProcess, user: str = "alice") -> JsonWebSocket:
    headers = {"Cookie": f"theme=dark; user={user}"} if user else {}
    return await json_ws(server.ws_url, headers)


async def connected(json_ws: Opener, server: ServerProcess, user: str = "alice", **connect: Any
                    ) -> tuple[JsonWebSocket, dict[str, Any]]:
    client = await ws(json_ws, server, user)
    reply = await client.command(connect={"name": "test", **connect})
    assert "connect" in reply, reply
    return client, reply["connect"]


async def test_connect_hook_authenticates_from_the_cookie(
        json_ws: Opener, hooked: ServerProcess) -> None:
    client, result = await connected(json_ws, hooked)
    assert result["data"] == {"welcome": "alice", "client_name": "test"}
    assert "news" in result["subs"]  # channels from the hook: subscribed server-side
    who = await client.command(rpc={"method": "whoami"})
    assert who["rpc"]["data"] == {"user": "alice", "meta": {"tenant": "t1", "expiring": False}}
    # A token wins over the hook: the user is the token's.
    other = await ws(json_ws, hooked, "")
    await other.connect(make_token("42"))
    who = await other.command(rpc={"method": "whoami"})
    assert who["rpc"]["data"]["user"] == "42"


@pytest.mark.parametrize(("mode", "code"), [("error", 1403), ("crash", 100), ("slow", 100)])
async def test_connect_hook_errors_reach_the_client(
        json_ws: Opener, hooked: ServerProcess, mode: str,
                                                    code: int) -> None:
    client = await ws(json_ws, hooked)
    reply = await client.command(connect={"data": {"mode": mode}})
    assert reply["error"]["code"] == code, reply
    assert reply["error"].get("temporary", False) is (code == 100)


async def test_connect_hook_disconnects(json_ws: Opener, hooked: ServerProcess) -> None:
    client = await ws(json_ws, hooked)
    await client.send('{"id":1,"connect":{"data":{"mode":"disconnect"}}}')
    assert await client.expect_close() == (4501, "unauthorized")
    nobody = await ws(json_ws, hooked, "")  # no cookie: the hook says 4501 as well
    await nobody.send('{"id":1,"connect":{}}')
    assert (await nobody.expect_close())[0] == 4501


async def test_subscribe_hook_allows_enriches_and_refuses(
        json_ws: Opener, hooked: ServerProcess) -> None:
    client, _ = await connected(json_ws, hooked)
    ok = await client.command(subscribe={"channel": "hooked:room"})
    assert ok["subscribe"]["data"] == {"motd": "hello alice"}, ok
    refused = await client.command(subscribe={"channel": "hooked:secret"})
    assert refused["error"] == {"code": 403, "message": "permission denied"}
    error = await client.command(subscribe={"channel": "hooked:x", "data": {"mode": "error"}})
    assert error["error"]["code"] == 1403
    # chan_info from the hook (it read the connection's meta); an override turns presence off.
    [entry] = (await api_result(hooked, "presence", {"channel": "hooked:room"}))[
        "presence"].values()
    assert entry["chan_info"] == {"role": "member", "tenant": "t1"}
    await client.command(subscribe={"channel": "hooked:quiet"})
    quiet = await api_result(hooked, "presence", {"channel": "hooked:quiet"})
    assert quiet["presence"] == {}
    private = await client.command(subscribe={"channel": "$hooked:private"})
    assert private["error"]["code"] == 103  # private channels never reach the hook


async def test_publish_hook_rewrites_and_rejects(json_ws: Opener, hooked: ServerProcess) -> None:
    reader, _ = await connected(json_ws, hooked, "bob")
    await reader.command(subscribe={"channel": "hooked:chat"})
    writer, _ = await connected(json_ws, hooked)
    ok = await writer.command(publish={"channel": "hooked:chat", "data": {"text": "hi"}})
    assert ok == {"id": 2, "publish": {}}, ok
    pub = await reader.push("pub", "hooked:chat")
    assert pub["pub"]["data"] == {"text": "HI", "by": "alice"}
    assert pub["pub"]["tags"] == {"checked": "yes"}
    spam = await writer.command(publish={"channel": "hooked:chat", "data": {"text": "spam!"}})
    assert spam["error"] == {"code": 1000, "message": "spam is not allowed"}
    null = await writer.command(publish={"channel": "hooked:chat", "data": {"text": "null"}})
    assert "publish" in null
    assert (await reader.push("pub", "hooked:chat"))["pub"].get("data") is None
    history = await api_result(hooked, "history", {"channel": "hooked:chat", "limit": 10})
    assert len(history["publications"]) == 2  # the refused one is nowhere


async def test_rpc_routing_and_answers(json_ws: Opener, hooked: ServerProcess) -> None:
    client, _ = await connected(json_ws, hooked)
    total = await client.command(rpc={"method": "math:sum", "data": {"numbers": [1, 2, 3]}})
    assert total["rpc"]["data"] == {"sum": 6}
    assert await client.command(rpc={"method": "ping"}) == {"id": 3, "rpc": {}}
    unknown_ns = await client.command(rpc={"method": "nope:x"})
    assert unknown_ns["error"]["code"] == 104
    disabled = await client.command(rpc={"method": "off:x"})
    assert disabled["error"]["code"] == 108
    from_backend = await client.command(rpc={"method": "other"})
    assert from_backend["error"] == {"code": 104, "message": "method not found"}
    dead = await client.command(rpc={"method": "dead:x"})
    assert dead["error"] == {"code": 100, "message": "internal server error", "temporary": True}


async def test_a_slow_hook_keeps_command_order_and_stalls_nobody_else(json_ws: Opener,
        hooked: ServerProcess) -> None:
    slow, _ = await connected(json_ws, hooked)
    fast, _ = await connected(json_ws, hooked, "bob")
    started = time.monotonic()
    await slow.send('{"id":2,"rpc":{"method":"x","data":{"mode":"slow"}}}\n'
                    '{"id":3,"rpc":{"method":"math:sum","data":{"numbers":[1]}}}')
    answered = await fast.command(rpc={"method": "math:sum", "data": {"numbers": [5]}})
    assert answered["rpc"]["data"] == {"sum": 5}
    assert time.monotonic() - started < 0.9  # while the slow call is still in flight
    first, second = await slow.reply(2), await slow.reply(3)
    assert first["error"]["code"] == 100 and second["rpc"]["data"] == {"sum": 1}


async def test_refresh_hook_extends_then_expires(json_ws: Opener, hooked: ServerProcess) -> None:
    client, result = await connected(json_ws, hooked, data={"mode": "expiring"})
    assert result.get("expires") is None  # the server refreshes, not the client
    started = time.monotonic()
    # Extended once at ~2 s (to ~4 s), then the hook says expired: 3005.
    code, _ = await client.expect_close(within=T + 8)
    assert code == 3005
    assert time.monotonic() - started > 3.0
    # With a refresh hook the client must not refresh itself: 3501.
    again, _ = await connected(json_ws, hooked)
    await again.send(json.dumps({"id": 2, "refresh": {"token": make_token("alice")}}))
    assert (await again.expect_close())[0] == 3501
