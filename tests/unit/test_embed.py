"""``tidings.Server`` in the test's own loop and ``tidings.BackgroundServer`` on its thread:
the API's methods in process (typed answers, ``ApiError``), the bound port with port 0, and a
real WebSocket client connecting to the listener it started."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
import websockets

import tidings
from tests.support.server import BASE_CONFIG, deep_merge, make_token
from tests.support.timing import T
from tidings.results import ClientInfo, PresenceStats, PublishResult, StreamPosition

CONFIG: dict[str, Any] = deep_merge(BASE_CONFIG, {"http_server": {"port": 0}})


async def _next(ws: Any, key: str) -> dict[str, Any]:
    """The next message holding ``key`` (a frame may carry several, one per line)."""
    async def find() -> dict[str, Any]:
        while True:
            for line in (await ws.recv()).splitlines():
                message: dict[str, Any] = json.loads(line)
                if key in message or key in message.get("push", {}):
                    return message

    return await asyncio.wait_for(find(), T)


async def _connect(ws: Any, user: str, channel: str) -> str:
    await ws.send(json.dumps({"id": 1, "connect": {"token": make_token(user)}}))
    client: str = (await _next(ws, "connect"))["connect"]["client"]
    await ws.send(json.dumps({"id": 2, "subscribe": {"channel": channel}}))
    assert (await _next(ws, "subscribe"))["id"] == 2
    return client


async def test_embedded_server_answers_in_process_and_over_its_listener() -> None:
    async with tidings.Server(CONFIG) as server:
        assert server.port > 0 and server.url == f"http://127.0.0.1:{server.port}"
        first = await server.publish("news", {"n": 1})
        assert isinstance(first, PublishResult) and first.offset == 1
        position = await server.position("news")
        assert position == StreamPosition(1, first.epoch)

        async with websockets.connect(server.ws_url, open_timeout=T) as ws:
            client = await _connect(ws, "42", "news")
            assert await server.presence("news") == {
                client: ClientInfo(user="42", client=client)}
            assert await server.presence_stats("news") == PresenceStats(1, 1)
            assert (await server.channels())["news"].num_clients == 1
            await server.publish("news", {"n": 2}, idempotency_key="k1")
            push = await _next(ws, "pub")
            assert push["push"]["pub"]["data"] == {"n": 2}
            await server.disconnect("42", code=4000, reason="bye")
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), T)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4000

        history = await server.history("news", limit=-1)
        assert [p.data for p in history.publications] == [{"n": 1}, {"n": 2}]
        since = await server.history("news", limit=-1, since=position)
        assert [p.offset for p in since.publications] == [2]
        # A repeated idempotency key publishes nothing new.
        again = await server.publish("news", {"n": 2}, idempotency_key="k1")
        assert again.offset == 2
        with pytest.raises(tidings.ApiError) as error:
            await server.publish("", {})
        assert error.value.code == 107
        with pytest.raises(tidings.ApiError) as error:
            await server.presence("smallhistory:x")  # no presence in that namespace
        assert error.value.code == 108
        assert [n["uid"] for n in (await server.info())["nodes"]]


async def test_hooks_set_in_code_answer_connects() -> None:
    from tidings.hooks import ConnectRequest, ConnectResult

    seen: list[str] = []

    async def on_connect(request: ConnectRequest) -> ConnectResult:
        seen.append(request.transport)
        return ConnectResult(user="from-hook")

    config = deep_merge(CONFIG, {"client": {"proxy": {"connect": {"enabled": True}}}})
    server = tidings.Server(config)
    server.hooks.set("connect", on_connect)
    async with server, websockets.connect(server.ws_url, open_timeout=T) as ws:
        await ws.send(json.dumps({"id": 1, "connect": {}}))
        reply = json.loads(await ws.recv())
        assert reply["connect"]["client"] and seen == ["websocket"]
        info = await server.presence_stats("news")
        assert info == PresenceStats(0, 0)


def test_background_server_serves_synchronous_code() -> None:
    with tidings.BackgroundServer(CONFIG) as server:
        assert server.publish("sync", [1]).offset == 1
        assert server.position("sync").offset == 1
        assert server.history("sync", limit=-1).publications[0].data == [1]
        assert server.call("publish", {"channel": "", "data": 1})["error"]["code"] == 107
    with pytest.raises(RuntimeError):
        server.publish("sync", [2])


def test_config_from_a_file(tmp_path: Any) -> None:
    path = tmp_path / "tidings.json"
    path.write_text(json.dumps({"http_server": {"port": 9999}, "node": {"name": "filed"}}))
    server = tidings.Server(path)
    assert server.config.node.name == "filed" and server.config.http_server.port == 9999
