"""End-to-end: the real centrifuge-js client (npm ``centrifuge``) against ``tidings serve``.

The Node side lives in ``tests/e2e/node/scenario.mjs``; it prints one JSON line with everything it
observed. When ``node_modules`` is missing the test installs the pinned dependencies with
``npm ci`` (once per session) instead of skipping.

Every test runs against ``tidings serve`` and against Tidings mounted in a FastAPI app on uvicorn
(``tidings.asgi``: the same endpoints through the ASGI byte bridge), over each transport of the
client: ``websocket``, the bidirectional emulation transports ``http_stream`` and ``sse``
(commands sent with ``POST /emulation``; SSE through the npm ``eventsource`` package, as Node
has no global ``EventSource``) and SockJS. Set ``TIDINGS_E2E_TRACE=1`` to
get the client's debug log and its HTTP traffic in the failure output.
"""

from __future__ import annotations

import json
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from tests.support.jsscenario import (
    assert_first_subscribe,
    assert_presence_and_history,
    run_scenario,
)
from tests.support.server import API_KEY, BASE_CONFIG, ServerFactory, ServerProcess, deep_merge
from tests.support.webapps import BackendProcess, start_asgi_mount

TRANSPORTS = ("websocket", "http_stream", "sse", "sockjs")
EMULATION = {"http_stream": {"enabled": True}, "sse": {"enabled": True},
             "sockjs": {"enabled": True}}


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@dataclass
class MountedTarget:
    """Tidings mounted at ``/rt`` in a FastAPI app on uvicorn (``tidings.asgi``)."""

    backend: BackendProcess
    api_key: str

    @property
    def proc(self) -> subprocess.Popen[bytes]:
        return self.backend.proc

    @property
    def ws_url(self) -> str:
        return self.backend.url.replace("http", "ws", 1) + "/rt/connection/websocket"

    @property
    def api_url(self) -> str:
        return self.backend.url + "/rt/api"

    def log_text(self) -> str:
        return self.backend.log_tail(80)


Target = ServerProcess | MountedTarget


@pytest.fixture(scope="module")
def mounted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MountedTarget]:
    config = tmp_path_factory.mktemp("asgi") / "config.json"
    config.write_text(json.dumps(deep_merge(BASE_CONFIG, EMULATION)))
    backend = start_asgi_mount(config.parent, config)
    yield MountedTarget(backend, API_KEY)
    backend.stop()


@pytest.fixture(params=["standalone", "asgi"])
def srv(request: pytest.FixtureRequest, tidings_server: ServerFactory) -> Target:
    """The same scenarios against ``tidings serve`` and against Tidings mounted in an ASGI
    app (every transport through the byte bridge of ``tidings.asgi``)."""
    if request.param == "asgi":
        target: MountedTarget = request.getfixturevalue("mounted")
        return target
    return tidings_server(EMULATION)


def test_connect_subscribe_publish_and_recover_after_reconnect(
    srv: Target, transport: str
) -> None:
    # The drop is the client's own disconnect() (closes the WebSocket, aborts the HTTP stream or
    # closes the EventSource); a drop by the server is in the test below.
    out = run_scenario(srv, "recover", transport)
    assert_first_subscribe(out)
    epoch = out["subscribed"][0]["epoch"]

    # Exactly the live pub, the 3 missed ones (recovered, in order), then the next live one.
    assert out["received"] == [
        {"data": {"seq": 0, "phase": "live"}, "offset": 1},
        {"data": {"seq": 1, "phase": "away"}, "offset": 2},
        {"data": {"seq": 2, "phase": "away"}, "offset": 3},
        {"data": {"seq": 3, "phase": "away"}, "offset": 4},
        {"data": {"seq": 4, "phase": "after-recovery"}, "offset": 5},
    ]
    assert [p["offset"] for p in out["apiPublishes"]] == [1, 2, 3, 4, 5]
    assert {p["epoch"] for p in out["apiPublishes"]} == {epoch}

    # The second subscribe recovered from offset 1 in the same epoch.
    assert len(out["subscribed"]) == 2
    rec = out["recovery"]
    assert rec["wasRecovering"] is True
    assert rec["recovered"] is True
    assert rec["hasRecoveredPublications"] is True
    assert rec["recoverable"] is True
    assert rec["epoch"] == epoch
    # §6.3: a successful recovery replies with the client's own position (offset 1 here); the
    # client then advances through the recovered publications.
    assert rec["offset"] == 1
    assert out["wasRecovering"] is True and out["recovered"] is True

    # Two connections, each with its own client ID; the only disconnect was ours (code 0).
    assert len(out["clientIds"]) == 2
    assert len(set(out["clientIds"])) == 2
    for client_id in out["clientIds"]:
        assert str(uuid.UUID(client_id)) == client_id
    assert out["disconnected"][0] == {"code": 0, "reason": "disconnect called"}
    # At the end only the second connection is present (the first one left), and the history
    # holds all five publications.
    assert_presence_and_history(out["atEnd"], out["clientIds"][1], out["received"], epoch)
    assert srv.proc.poll() is None


def test_api_disconnect_3011_makes_client_reconnect_and_recover(
    srv: Target, transport: str
) -> None:
    # The server drops the connection: on a WebSocket with a close frame 3011, on http_stream/SSE
    # with the disconnect push as the last message of the stream, then the end of the response.
    out = run_scenario(srv, "force-reconnect", transport)
    assert_first_subscribe(out)
    epoch = out["subscribed"][0]["epoch"]

    assert out["forceDisconnectReply"] == {}
    force = out["forceReconnect"]
    # The close frame (or the disconnect push) carried code 3011 and the plain reason; the client
    # reconnected by itself.
    assert force["code"] == 3011
    assert force["reason"] == "force reconnect"
    resub = force["subscribed"]
    assert resub["wasRecovering"] is True
    assert resub["recovered"] is True
    assert resub["hasRecoveredPublications"] is False
    assert resub["epoch"] == epoch
    assert resub["offset"] == 1

    assert out["received"] == [
        {"data": {"seq": 0, "phase": "live"}, "offset": 1},
        {"data": {"seq": 10, "phase": "after-force-reconnect"}, "offset": 2},
    ]
    assert len(out["clientIds"]) == 2 and len(set(out["clientIds"])) == 2
    # The client never went to the disconnected state: it went straight to connecting.
    assert out["disconnected"] == []
    assert_presence_and_history(out["atEnd"], out["clientIds"][1], out["received"], epoch)
    assert srv.proc.poll() is None
