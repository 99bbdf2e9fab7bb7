"""Backend hooks over HTTP: every way a hook_backend can fail, and what the client sees for each
(PROXY.md §3.4, §3.5); header forwarding; the server-side subscription refresh. The hook_backend
is a real aiohttp server on loopback (``HookBackend``)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest

from tests.support.api import api_publish, api_result
from tests.support.hookapp import HookBackend, hook_config
from tests.support.probe import rss_mib
from tests.support.raw import JsonLines, JsonWebSocket
from tests.support.server import ServerProcess, deep_merge
from tests.support.timing import T, eventually

Factory = Any
TRANSFORMS: dict[str, Any] = {"http": {"status_to_code_transforms": [
    {"status_code": 403, "to_error": {"code": 403, "message": "forbidden"}},
    {"status_code": 401, "to_disconnect": {"code": 4501, "reason": "unauthorized"}},
]}}


@pytest.fixture
def srv(tidings_server: Factory, hook_backend: HookBackend) -> ServerProcess:
    overrides = deep_merge(hook_config(hook_backend.endpoint), {
        "client": {"proxy": {"connect": {"http": {**TRANSFORMS["http"],
                                                  "static_headers": {"X-From": "tidings"}},
                                         "emulated_headers": ["X-Emulated"]}},
                   "expired_sub_close_delay": "0s"},
        "uni_http_stream": {"enabled": True},
    })
    server: ServerProcess = tidings_server(overrides)
    return server


Opener = Callable[..., Awaitable[JsonWebSocket]]


async def ws(json_ws: Opener, server: ServerProcess, user: str = "alice") -> JsonWebSocket:
    return await json_ws(server.ws_url, {"Cookie": f"user={user}", "X-Not-Listed": "secret"})


INTERNAL = {"code": 100, "message": "internal server error", "temporary": True}


@pytest.mark.parametrize(("mode", "expected"), [
    ("status500", INTERNAL), ("status404", INTERNAL), ("badjson", INTERNAL),
    ("huge", INTERNAL), ("slow", INTERNAL),
    ("status403", {"code": 403, "message": "forbidden"}),  # a status transform
    ("error", {"code": 1403, "message": "custom refusal"}),
])
async def test_connect_failures(
        json_ws: Opener, srv: ServerProcess, hook_backend: HookBackend, mode: str,
                                expected: dict[str, Any]) -> None:
    bystander = await ws(json_ws, srv, "bob")
    assert "connect" in await bystander.command(connect={})
    client = await ws(json_ws, srv)
    await client.send(json.dumps({"id": 1, "connect": {"data": {"mode": mode}}}))
    # Meanwhile another connection is served at once.
    started = time.monotonic()
    assert "rpc" in await bystander.command(rpc={"method": "whoami"})
    assert time.monotonic() - started < 0.9
    reply = await client.reply(1)
    assert reply["error"] == expected
    # After a failed connect only a reconnect helps: any command closes with 3501.
    await client.send('{"id":2,"rpc":{"method":"whoami"}}')
    assert (await client.expect_close())[0] == 3501
    assert srv.proc.poll() is None


async def test_disconnect_answers(json_ws: Opener, srv: ServerProcess) -> None:
    for mode, expected in (("disconnect", (4501, "unauthorized")),
                           ("status401", (4501, "unauthorized"))):  # answer, transform
        client = await ws(json_ws, srv)
        await client.send(json.dumps({"id": 1, "connect": {"data": {"mode": mode}}}))
        assert await client.expect_close() == expected


async def test_headers_forwarded_as_configured(
        json_ws: Opener, srv: ServerProcess, hook_backend: HookBackend
                                               ) -> None:
    client = await ws(json_ws, srv)
    await client.command(connect={"headers": {"X-Emulated": "e", "Cookie": "user=mallory"}})
    sent = hook_backend.headers["connect"]
    assert sent["cookie"] == "user=alice"  # the real header wins over an emulated one
    assert sent["x-emulated"] == "e" and sent["x-from"] == "tidings"
    assert "x-not-listed" not in sent and sent["content-type"] == "application/json"
    await client.command(rpc={"method": "whoami"})
    rpc_sent = hook_backend.headers["rpc"]  # kept for the connection's later hooks
    assert rpc_sent["cookie"] == "user=alice" and "x-emulated" not in rpc_sent


async def test_unreachable_backend(json_ws: Opener, srv: ServerProcess) -> None:
    client = await ws(json_ws, srv)
    await client.command(connect={})
    reply = await client.command(subscribe={"channel": "dead:room"})
    assert reply["error"] == INTERNAL
    assert "rpc" in await client.command(rpc={"method": "math:sum",
                                              "data": {"numbers": [1]}})
    # The node counts each caller's calls and failures (info; metrics read the same).
    [node] = (await api_result(srv, "info", {}))["nodes"]
    assert node["hooks"]["subscribe/dead"]["failures"] == 1
    assert node["hooks"]["rpc/default"]["calls"] == 1
    assert node["hooks"]["connect/default"]["inflight"] == 0


async def test_uni_transport_connect_failure_is_3004(srv: ServerProcess,
                                                     http: aiohttp.ClientSession) -> None:
    body = json.dumps({"data": {"mode": "status500"}})
    async with http.post(f"{srv.http_url}/connection/uni_http_stream", data=body,
                         headers={"Cookie": "user=alice"}) as resp:
        message = await JsonLines(resp, sse=False).next()
    assert message["disconnect"]["code"] == 3004
    async with http.post(f"{srv.http_url}/connection/uni_http_stream", data="{}",
                         headers={"Cookie": "user=alice"}) as resp:
        message = await JsonLines(resp, sse=False).next()
    assert message["connect"]["data"]["welcome"] == "alice"


async def test_huge_and_garbage_answers_leave_memory_flat(
        json_ws: Opener, srv: ServerProcess) -> None:
    async def once(mode: str) -> None:
        client = await ws(json_ws, srv)
        reply = await client.command(connect={"data": {"mode": mode}})
        assert reply["error"] == INTERNAL
        await client.close()

    await once("huge")
    before = rss_mib(srv.proc.pid)
    for _ in range(5):
        await asyncio.gather(*(once(m) for m in ("huge", "badjson", "status500")))
    assert rss_mib(srv.proc.pid) - before < 30
    assert srv.proc.poll() is None


async def test_sub_refresh_hook_keeps_a_subscription(json_ws: Opener, srv: ServerProcess,
                                                     hook_backend: HookBackend) -> None:
    client = await ws(json_ws, srv)
    await client.command(connect={})
    reply = await client.command(subscribe={"channel": "refreshed:expiring"})
    assert "expires" not in reply["subscribe"]  # the server refreshes it, not the client
    assert await eventually(lambda: hook_backend.calls["sub_refresh"] >= 1, within=T)
    # Still subscribed: a publication arrives, no unsubscribe came first.
    await api_publish(srv, "refreshed:expiring", {"still": "here"})
    await client.push("pub", "refreshed:expiring", data={"still": "here"})
    assert not [p for p in client.pushes if "unsubscribe" in p]
    await client.send('{"id":9,"sub_refresh":{"channel":"refreshed:expiring","token":"x"}}')
    assert (await client.expect_close())[0] == 3501  # the client may not refresh it
