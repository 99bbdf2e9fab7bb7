"""Tidings mounted in a FastAPI app on uvicorn (``tidings.asgi``), with the real
centrifuge-python client: the app's own routes publish in process, the mounted API and
WebSocket answer as the standalone server's do (their checks included), and a page rendered
with the channel's stream position subscribes from it without a gap.

centrifuge-js over every transport through the mount: tests/e2e/test_node_client.py.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets
from centrifuge import StreamPosition

from tests.support.api import ApiEndpoint, api_result
from tests.support.sdk import Clients, next_item
from tests.support.server import API_KEY, BASE_CONFIG, make_token, unique
from tests.support.timing import T
from tests.support.webapps import BackendProcess, start_asgi_mount


@dataclass(frozen=True)
class Mounted:
    backend: BackendProcess

    @property
    def url(self) -> str:
        return self.backend.url

    @property
    def ws_url(self) -> str:
        return self.url.replace("http", "ws", 1) + "/rt/connection/websocket"

    @property
    def api(self) -> ApiEndpoint:
        return ApiEndpoint(self.url + "/rt/api", API_KEY)


@pytest.fixture(scope="module")
def mounted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Mounted]:
    config: Path = tmp_path_factory.mktemp("asgi") / "config.json"
    config.write_text(json.dumps(BASE_CONFIG))
    backend = start_asgi_mount(config.parent, config)
    yield Mounted(backend)
    backend.stop()


async def _post(url: str, payload: Any) -> dict[str, Any]:
    async with aiohttp.ClientSession() as session, session.post(
            url, json=payload, timeout=aiohttp.ClientTimeout(total=T)) as resp:
        assert resp.status == 200, await resp.text()
        answer: dict[str, Any] = await resp.json()
        return answer


async def _get(url: str) -> tuple[int, bytes]:
    async with aiohttp.ClientSession() as session, session.get(
            url, timeout=aiohttp.ClientTimeout(total=T)) as resp:
        return resp.status, await resp.read()


async def test_app_route_and_mounted_api_publish_to_a_python_client(
        mounted: Mounted, clients: Clients) -> None:
    channel = unique("asgi")
    client, _ = await clients.connect(mounted, "7")
    _, events, _ = await clients.subscribe(client, channel)

    said = await _post(f"{mounted.url}/say/{channel}", {"text": "from a route"})
    pub = await next_item(events.publications)
    assert pub.data == {"text": "from a route"} and pub.offset == said["offset"] == 1

    await api_result(mounted.api, "publish", {"channel": channel, "data": {"text": "api"}})
    assert (await next_item(events.publications)).data == {"text": "api"}

    presence = await api_result(mounted.api, "presence", {"channel": channel})
    assert [(p["user"], p["client"]) for p in presence["presence"].values()] == \
        [("7", client.client_id)]


async def test_render_then_subscribe_misses_nothing(mounted: Mounted, clients: Clients) -> None:
    """The page's data and the stream position are read together; publications made before
    the page subscribes come to it as recovered, in order, and the live ones after them."""
    channel = unique("asgi")
    await _post(f"{mounted.url}/say/{channel}", {"n": 0})  # already in the rendered page
    position = json.loads((await _get(f"{mounted.url}/position/{channel}"))[1])
    assert position["offset"] == 1
    for n in (1, 2, 3):  # between the render and the subscribe
        await _post(f"{mounted.url}/say/{channel}", {"n": n})

    async def rendered_state(_: str) -> StreamPosition:
        return StreamPosition(offset=position["offset"], epoch=position["epoch"])

    client, _ = await clients.connect(mounted, "8")
    _, events, ctx = await clients.subscribe(client, channel, recoverable=True,
                                             positioned=True, get_state=rendered_state)
    assert ctx.was_recovering and ctx.recovered
    await _post(f"{mounted.url}/say/{channel}", {"n": 4})  # live
    got = [(await next_item(events.publications)).data["n"] for _ in range(4)]
    assert got == [1, 2, 3, 4]


async def test_mounted_endpoints_keep_their_checks(mounted: Mounted) -> None:
    assert await _get(f"{mounted.url}/rt/health") == (200, b"{}")
    assert (await _get(f"{mounted.url}/rt/no-such-endpoint"))[0] == 404
    async with aiohttp.ClientSession() as session, session.post(
            f"{mounted.api.api_url}/publish", json={"channel": "x", "data": {}},
            headers={"X-API-Key": "wrong"}, timeout=aiohttp.ClientTimeout(total=T)) as resp:
        assert resp.status == 401  # the key is checked before the body, as standalone
    # A page of another origin is refused as by the standalone server (no allowed_origins).
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(mounted.ws_url, open_timeout=T,
                                      origin=websockets.Origin("http://evil.example")):
            pass
    assert refused.value.response.status_code == 403
    # A page on the app's own host is accepted, and speaks the protocol through the bridge.
    async with websockets.connect(mounted.ws_url, open_timeout=T,
                                  origin=websockets.Origin(mounted.url)) as ws:
        await ws.send(json.dumps({"id": 1, "connect": {"token": make_token("9")}}))
        reply = json.loads(await ws.recv())
        assert reply["id"] == 1 and reply["connect"]["client"]
        await ws.send(json.dumps({"id": 2, "connect": {}}))  # twice: a protocol error
        with pytest.raises(websockets.ConnectionClosedError) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 3501
