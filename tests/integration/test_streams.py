"""HTTP-streaming, SSE and unidirectional transports, spoken raw (aiohttp, websockets) against
a real ``tidings serve``: framing, the emulation endpoint, CORS, and every kind of bad input.
The centrifuge-js client over the same transports is in tests/e2e."""

from __future__ import annotations

import asyncio
import json
import urllib.parse
import uuid
from typing import Any

import aiohttp
import pytest
import websockets

from tests.support.api import api, api_publish
from tests.support.raw import JsonLines
from tests.support.redisproc import RedisServer
from tests.support.server import (
    BASE_CONFIG,
    ServerFactory,
    ServerProcess,
    deep_merge,
    make_token,
    unique,
)
from tests.support.timing import TIMEOUT_FACTOR, T

ORIGIN = "http://app.example"
STREAMS = {
    "http_stream": {"enabled": True},
    "sse": {"enabled": True},
    "uni_sse": {"enabled": True},
    "uni_http_stream": {"enabled": True},
    "uni_websocket": {"enabled": True},
    "sockjs": {"enabled": True},
    "client": {"allowed_origins": [ORIGIN]},
}


@pytest.fixture
def srv(tidings_server: ServerFactory) -> ServerProcess:
    return tidings_server(STREAMS)


def cf_connect(payload: dict[str, Any]) -> str:
    return urllib.parse.quote(json.dumps(payload))


# ------------------------------------------------------------------ unidirectional


async def test_uni_sse_get_streams_connect_then_publications(
    srv: ServerProcess, http: aiohttp.ClientSession
) -> None:
    token = make_token("u1", channels=["news"])
    url = f"{srv.http_url}/connection/uni_sse?cf_connect={cf_connect({'token': token})}"
    async with http.get(url) as resp:
        assert resp.status == 200
        assert resp.headers["Content-Type"] == "text/event-stream; charset=utf-8"
        assert resp.headers["Cache-Control"].startswith("private, no-cache")
        assert await resp.content.readline() == b"\r\n"  # written right after the headers
        lines = JsonLines(resp, sse=True)
        connect = await lines.next()
        assert set(connect) == {"connect"}
        assert connect["connect"]["subs"]["news"]["positioned"] is True
        assert "pong" not in connect["connect"]
        await api_publish(srv, "news", {"n": 1}, session=http)
        pub = await lines.until(lambda m: "pub" in m)
        assert pub == {"channel": "news", "pub": {"data": {"n": 1}, "offset": 1}}


async def test_uni_http_stream_post_body(srv: ServerProcess, http: aiohttp.ClientSession) -> None:
    token = make_token("u2", channels=["feed"])
    async with http.post(f"{srv.http_url}/connection/uni_http_stream",
                         json={"token": token}) as resp:
        assert resp.status == 200
        lines = JsonLines(resp, sse=False)
        assert "connect" in await lines.next()
        await api_publish(srv, "feed", "hello", session=http)
        assert (await lines.until(lambda m: "pub" in m))["pub"]["data"] == "hello"


async def test_uni_sse_post_body_works_too(srv: ServerProcess, http: aiohttp.ClientSession) -> None:
    token = make_token("u3", channels=["posted"])
    async with http.post(f"{srv.http_url}/connection/uni_sse", json={"token": token}) as resp:
        lines = JsonLines(resp, sse=True)
        assert "connect" in await lines.next()


async def test_uni_websocket_first_message_or_query(srv: ServerProcess) -> None:
    base = f"ws://{srv.host}:{srv.port}/connection/uni_websocket"
    token = make_token("u4", channels=["ws"])
    async with websockets.connect(base) as ws:
        await ws.send(json.dumps({"token": token}))
        connect = json.loads(await asyncio.wait_for(ws.recv(), T))
        assert "connect" in connect and "pong" not in connect["connect"]
    async with websockets.connect(f"{base}?cf_connect={cf_connect({'token': token})}") as ws:
        assert "connect" in json.loads(await asyncio.wait_for(ws.recv(), T))
        await api_publish(srv, "ws", {"n": 7})
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), T))
            if "pub" in message:
                break
        assert message == {"channel": "ws", "pub": {"data": {"n": 7}, "offset": 1}}


@pytest.mark.parametrize(
    ("token", "code"),
    [("not-a-jwt", 3500), (make_token("u", exp=1), 3005)],
    ids=["invalid", "expired"],
)
async def test_uni_connect_errors_are_disconnect_pushes(
    srv: ServerProcess, http: aiohttp.ClientSession, token: str, code: int
) -> None:
    url = f"{srv.http_url}/connection/uni_sse?cf_connect={cf_connect({'token': token})}"
    async with http.get(url) as resp:
        lines = JsonLines(resp, sse=True)
        message = await lines.next()
        assert message["disconnect"]["code"] == code
        with pytest.raises(EOFError):
            await lines.next()  # and the stream ends
    assert srv.proc.poll() is None


async def test_uni_server_disconnect_ends_the_stream(
    srv: ServerProcess, http: aiohttp.ClientSession
) -> None:
    token = make_token("kicked", channels=["k"])
    async with http.post(f"{srv.http_url}/connection/uni_http_stream",
                         json={"token": token}) as resp:
        lines = JsonLines(resp, sse=False)
        await lines.next()
        assert "result" in await api(srv, "disconnect", {"user": "kicked"}, session=http)
        message = await lines.until(lambda m: "disconnect" in m)
        assert message["disconnect"]["code"] == 3503
        with pytest.raises(EOFError):
            await lines.next()


# ------------------------------------------------------------------ bidirectional emulation


async def open_http_stream(
    http: aiohttp.ClientSession, srv: ServerProcess, user: str
) -> tuple[aiohttp.ClientResponse, JsonLines, dict[str, Any]]:
    command = json.dumps({"id": 1, "connect": {"token": make_token(user)}})
    resp = await http.post(f"{srv.http_url}/connection/http_stream", data=command,
                           headers={"Content-Type": "application/json"})
    assert resp.status == 200
    lines = JsonLines(resp, sse=False)
    reply = await lines.next()
    assert reply["id"] == 1
    return resp, lines, reply["connect"]


async def emulate(http: aiohttp.ClientSession, srv: ServerProcess, connect: dict[str, Any],
                  *commands: dict[str, Any], node: str | None = None) -> int:
    body = {"session": connect["session"], "node": node or connect["node"],
            "data": "\n".join(json.dumps(c) for c in commands)}
    async with http.post(f"{srv.http_url}/emulation", json=body) as resp:
        return resp.status


async def test_http_stream_emulation_round_trip(
    srv: ServerProcess, http: aiohttp.ClientSession
) -> None:
    resp, lines, connect = await open_http_stream(http, srv, "e1")
    async with resp:
        assert connect["session"] and connect["node"] and connect["pong"] is True
        status = await emulate(http, srv, connect, {"id": 2, "subscribe": {"channel": "emu"}},
                               {"id": 3, "presence": {"channel": "emu"}})
        assert status == 204
        sub = await lines.until(lambda m: m.get("id") == 2)
        assert sub["subscribe"]["positioned"] is True
        presence = await lines.until(lambda m: m.get("id") == 3)
        assert connect["client"] in presence["presence"]["presence"]
        await api_publish(srv, "emu", {"n": 1}, session=http)
        pub = await lines.until(lambda m: "pub" in m.get("push", {}))
        assert pub["push"] == {"channel": "emu", "pub": {"data": {"n": 1}, "offset": 1}}


async def test_sse_emulation_round_trip(srv: ServerProcess, http: aiohttp.ClientSession) -> None:
    command = {"id": 1, "connect": {"token": make_token("e2")}}
    async with http.get(f"{srv.http_url}/connection/sse?cf_connect={cf_connect(command)}",
                        headers={"Origin": ORIGIN}) as resp:
        assert resp.status == 200
        assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
        lines = JsonLines(resp, sse=True)
        connect = (await lines.next())["connect"]
        assert await emulate(http, srv, connect, {"id": 2, "subscribe": {"channel": "s"}}) == 204
        assert (await lines.until(lambda m: m.get("id") == 2))["subscribe"]["positioned"]
        await api_publish(srv, "s", [1, 2], session=http)
        pub = await lines.until(lambda m: "pub" in m.get("push", {}))
        assert pub["push"]["pub"]["data"] == [1, 2]


async def test_session_is_gone_when_the_stream_closes(
    srv: ServerProcess, http: aiohttp.ClientSession
) -> None:
    resp, _, connect = await open_http_stream(http, srv, "gone")
    resp.close()  # the client aborts the stream
    for _ in range(int(50 * TIMEOUT_FACTOR)):
        status = await emulate(http, srv, connect, {"id": 2, "presence": {"channel": "x"}})
        if status == 404:
            break
        await asyncio.sleep(0.05)
    assert status == 404  # nothing leaks: the session died with its stream


@pytest.mark.parametrize(
    ("method", "path", "body", "headers", "status"),
    [
        ("POST", "/emulation", b"{not json", {"Content-Type": "application/json"}, 400),
        ("POST", "/emulation", b'{"session": 1}', {"Content-Type": "application/json"}, 400),
        ("POST", "/emulation", json.dumps({"session": "s", "node": "nope", "data": ""}).encode(),
         {"Content-Type": "application/json"}, 404),
        ("POST", "/emulation", b"x" * 70000, {"Content-Type": "application/json"}, 413),
        ("GET", "/emulation", b"", {}, 405),
        ("POST", "/emulation", b"{}", {"Origin": "http://evil.example"}, 403),
        ("GET", "/connection/sse", b"", {}, 400),
        ("GET", "/connection/http_stream", b"", {}, 405),
        ("POST", "/connection/http_stream", b"x" * 70000, {}, 413),
        ("POST", "/connection/uni_http_stream", b"\x08\x01",
         {"Content-Type": "application/octet-stream"}, 501),
    ],
    ids=["malformed", "wrong-types", "unknown-node", "oversized", "get", "bad-origin",
         "sse-no-connect", "stream-get", "stream-oversized", "stream-protobuf"],
)
async def test_bad_requests_get_clear_http_errors(
    srv: ServerProcess, http: aiohttp.ClientSession, method: str, path: str, body: bytes,
    headers: dict[str, str], status: int,
) -> None:
    async with http.request(method, f"{srv.http_url}{path}", data=body,
                            headers=headers) as resp:
        assert resp.status == status, await resp.text()
    # ... and the server keeps serving.
    resp2, _, _ = await open_http_stream(http, srv, "still")
    resp2.close()


async def test_unknown_session_on_this_node_is_404(
    srv: ServerProcess, http: aiohttp.ClientSession
) -> None:
    resp, _, connect = await open_http_stream(http, srv, "s404")
    async with resp:
        fake = dict(connect, session=uuid.uuid4().hex)
        assert await emulate(http, srv, fake, {"id": 2, "presence": {"channel": "x"}}) == 404


async def test_preflight(srv: ServerProcess, http: aiohttp.ClientSession) -> None:
    for path in ("/emulation", "/connection/http_stream", "/connection/sse"):
        async with http.options(f"{srv.http_url}{path}", headers={
            "Origin": ORIGIN, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        }) as resp:
            assert resp.status == 204
            assert resp.headers["Access-Control-Allow-Origin"] == ORIGIN
            assert resp.headers["Access-Control-Allow-Credentials"] == "true"
            assert resp.headers["Access-Control-Allow-Headers"] == "content-type"
            assert "POST" in resp.headers["Access-Control-Allow-Methods"]
            assert resp.headers["Access-Control-Max-Age"] == "300"


async def test_disabled_transports_are_404(
    tidings_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    plain = tidings_server()
    for path in ("/connection/http_stream", "/connection/sse", "/emulation",
                 "/connection/uni_sse", "/connection/uni_http_stream"):
        async with http.post(f"{plain.http_url}{path}", data=b"{}") as resp:
            assert resp.status == 404, path


# ------------------------------------------------------------------ SockJS


async def test_sockjs_xhr_streaming_and_send(
    srv: ServerProcess, http: aiohttp.ClientSession
) -> None:
    base = f"{srv.http_url}/connection/sockjs"
    async with http.get(f"{base}/info") as resp:
        info = await resp.json()
        assert info["websocket"] is False and info["cookie_needed"] is False
    session = f"{base}/123/{uuid.uuid4().hex}"
    async with http.post(f"{session}/xhr_streaming") as stream:
        assert stream.status == 200
        assert await stream.content.readline() == b"h" * 2048 + b"\n"  # the prelude
        assert await stream.content.readline() == b"o\n"

        async def frame() -> bytes:
            async with asyncio.timeout(T):
                return (await stream.content.readline()).strip()

        connect = json.dumps({"id": 1, "connect": {"token": make_token("sj")}})
        subscribe = json.dumps({"id": 2, "subscribe": {"channel": "sj"}})
        async with http.post(f"{session}/xhr_send", data=json.dumps([connect, subscribe])) as r:
            assert r.status == 204
        replies: list[dict[str, Any]] = []
        while len(replies) < 2:
            got = await frame()
            assert got.startswith(b"a["), got
            for message in json.loads(got[1:]):
                replies += [json.loads(line) for line in message.split("\n")]
        assert [r.get("id") for r in replies[:2]] == [1, 2]
        # A second receiving request while one is open is refused, SockJS style.
        async with http.post(f"{session}/xhr") as other:
            assert await other.read() == b'c[2010,"Another connection still open"]\n'
        await api_publish(srv, "sj", {"n": 1}, session=http)

        async def next_pushes() -> list[dict[str, Any]]:
            got = await frame()
            assert got.startswith(b"a["), got
            return [json.loads(line)["push"] for m in json.loads(got[1:])
                    for line in m.split("\n")]

        pushes = await next_pushes()
        while not any("pub" in push for push in pushes):
            pushes = await next_pushes()
        assert [p["pub"]["data"] for p in pushes if "pub" in p] == [{"n": 1}]
        assert "result" in await api(srv, "disconnect", {"user": "sj"}, session=http)
        while not (got := await frame()).startswith(b"c["):
            pass
        assert json.loads(got[1:]) == [3503, "force disconnect"]


@pytest.mark.parametrize(
    ("path", "body", "status", "text"),
    [
        ("/123/unknown/xhr_send", b'["x"]', 404, "unknown session"),
        ("/123/s.1/xhr", b"", 404, "Not Found"),
        ("/123/s1/jsonp", b"", 404, "Not Found"),
        ("/info/extra", b"", 404, "Not Found"),
    ],
)
async def test_sockjs_bad_requests(
    srv: ServerProcess, http: aiohttp.ClientSession, path: str, body: bytes, status: int,
    text: str,
) -> None:
    async with http.post(f"{srv.http_url}/connection/sockjs{path}", data=body) as resp:
        assert resp.status == status
        assert text in await resp.text()


async def test_sockjs_send_needs_json_strings(
    srv: ServerProcess, http: aiohttp.ClientSession
) -> None:
    session = f"{srv.http_url}/connection/sockjs/1/{uuid.uuid4().hex}"
    async with http.post(f"{session}/xhr") as resp:
        assert await resp.read() == b"o\n"
    for body, text in ((b"", "Payload expected."), (b"[1", "Broken JSON encoding."),
                       (b"[1]", "Broken JSON encoding.")):
        async with http.post(f"{session}/xhr_send", data=body) as resp:
            assert (resp.status, await resp.text()) == (500, text)
    # A malformed command inside a well-formed SockJS message is the protocol's 3501.
    async with http.post(f"{session}/xhr_send", data=b'["{nope"]') as resp:
        assert resp.status == 204
    async with http.post(f"{session}/xhr") as resp:
        assert await resp.read() == b'c[3501,"bad request"]\n'


# ------------------------------------------------------------------ across nodes


async def test_emulation_reaches_the_owning_node(
    redis: RedisServer, tidings_server: ServerFactory, http: aiohttp.ClientSession
) -> None:
    """No sticky sessions: /emulation may hit any node; it forwards to the stream's node."""
    prefix = unique("emu")
    config = deep_merge(BASE_CONFIG, {**STREAMS, "engine": {"type": "redis", "redis": {
        "address": [redis.url], "prefix": prefix}}})
    a, b = tidings_server(config=config), tidings_server(config=config)
    resp, lines, connect = await open_http_stream(http, a, "roamer")
    async with resp:
        for _ in range(int(100 * TIMEOUT_FACTOR)):  # B learns A from its heartbeat
            info = await api(b, "info", {}, session=http)
            if len(info["result"]["nodes"]) == 2:
                break
            await asyncio.sleep(0.1)
        assert await emulate(http, b, connect, {"id": 2, "subscribe": {"channel": "r"}}) == 204
        assert (await lines.until(lambda m: m.get("id") == 2))["subscribe"]
        await api_publish(b, "r", "via-b", session=http)
        pub = (await lines.until(lambda m: "pub" in m.get("push", {})))["push"]["pub"]
        assert pub["data"] == "via-b"


async def test_per_transport_counters_in_info(
    srv: ServerProcess, http: aiohttp.ClientSession
) -> None:
    resp, lines, connect = await open_http_stream(http, srv, "counted")
    async with resp:
        assert await emulate(http, srv, connect, {"id": 2, "subscribe": {"channel": "m"}}) == 204
        await lines.until(lambda m: m.get("id") == 2)
        info = (await api(srv, "info", {}, session=http))["result"]["nodes"][0]["transports"]
        stream = info["http_stream"]
        assert stream["messages_received"] == 2  # the connect body and one emulation post
        assert stream["messages_sent"] >= 2 and stream["bytes_sent"] > 100
        assert stream["bytes_received"] > 50
        assert "websocket" not in info
