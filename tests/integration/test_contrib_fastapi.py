"""``tidings.contrib.fastapi`` in the FastAPI example (examples/fastapi_app) on uvicorn with
Tidings embedded: its endpoints mounted in the app (``/rt``), publishing in process. The real
centrifuge-python client gets its token from the app's router (HTTP Basic login), reads the
page data with the stream position the ``live`` dependency resolved first, and receives both
what was posted between that read and its subscribe (recovered) and what is posted after."""

from __future__ import annotations

import json
import sys
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from centrifuge import StreamPosition

from tests.support.redisproc import free_port
from tests.support.sdk import Clients, next_item
from tests.support.timing import T
from tests.support.webapps import REPO_ROOT, BackendProcess, start_backend
from tidings.testing import test_config

ALICE = {"Authorization": aiohttp.encode_basic_auth("alice", "alice-password")}
BOB = {"Authorization": aiohttp.encode_basic_auth("bob", "bob-password")}


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BackendProcess]:
    tmp = tmp_path_factory.mktemp("fastapi-example")
    config = tmp / "tidings.json"
    config.write_text(json.dumps(test_config()))
    port = free_port()
    cmd = [sys.executable, "-m", "uvicorn", "--app-dir", str(REPO_ROOT / "examples" /
                                                              "fastapi_app"),
           "--host", "127.0.0.1", "--port", str(port), "--timeout-graceful-shutdown", "2",
           "app:app"]
    backend = start_backend("fastapi-example", cmd, port, tmp,
                            {"COMMENTS_TIDINGS_CONFIG": str(config)})
    yield backend
    backend.stop()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=T)) as session:
        yield session


class MountedTidings:
    def __init__(self, app: BackendProcess) -> None:
        self.ws_url = app.url.replace("http", "ws", 1) + "/rt/connection/websocket"


async def test_embedded_app_serves_tokens_the_page_and_publications(
        app: BackendProcess, http: aiohttp.ClientSession, clients: Clients) -> None:
    async with http.get(f"{app.url}/comments", headers=ALICE) as resp:
        assert resp.status == 200, await resp.text()
        live: dict[str, Any] = (await resp.json())["live"]
    assert live["url"] == "/rt/connection/websocket" and live["tokenUrl"] == "/tidings/token"
    async with http.post(f"{app.url}/comments", json={"text": "in the gap"}, headers=BOB) as resp:
        assert resp.status == 201

    async def token() -> str:
        async with http.get(f"{app.url}/tidings/token", headers=ALICE) as resp:
            assert resp.status == 200
            value: str = (await resp.json())["token"]
            return value

    async def position(_channel: str) -> StreamPosition:
        return StreamPosition(offset=live["since"]["offset"], epoch=live["since"]["epoch"])

    client, _ = clients.new(MountedTidings(app), get_token=token)
    await client.connect()
    _, events, ctx = await clients.subscribe(client, "comments", get_state=position)
    assert ctx.recovered
    assert (await next_item(events.publications)).data["text"] == "in the gap"
    async with http.post(f"{app.url}/comments", json={"text": "live"}, headers=ALICE) as resp:
        assert resp.status == 201
    pub = await next_item(events.publications)
    assert pub.data == {"id": 2, "author": "alice", "text": "live"}


async def test_token_endpoints_refuse_whom_they_must(app: BackendProcess,
                                                     http: aiohttp.ClientSession) -> None:
    async with http.get(f"{app.url}/tidings/token") as resp:
        assert resp.status == 401
    async with http.post(f"{app.url}/tidings/subscription-token", json={"channel": "notes:bob"},
                         headers=ALICE) as resp:
        assert resp.status == 403
    async with http.post(f"{app.url}/tidings/subscription-token",
                         json={"channel": "notes:alice"}, headers=ALICE) as resp:
        assert resp.status == 200 and (await resp.json())["token"]
