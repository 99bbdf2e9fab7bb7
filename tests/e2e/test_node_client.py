"""End-to-end: the real centrifuge-js client (npm ``centrifuge``) against ``tidings serve``.

The Node side lives in ``tests/e2e/node/scenario.mjs``; it prints one JSON line with everything it
observed. When ``node_modules`` is missing the test installs the pinned dependencies with
``npm ci`` (once per session) instead of skipping.

Every test runs over each transport of the client: ``websocket`` and the bidirectional emulation
transports ``http_stream`` and ``sse`` (commands sent with ``POST /emulation``; SSE through the npm
``eventsource`` package, as Node has no global ``EventSource``). Set ``TIDINGS_E2E_TRACE=1`` to
get the client's debug log and its HTTP traffic in the failure output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import uuid
from typing import Any

import pytest

from tests.support.npm import NODE_DIR
from tests.support.server import ServerFactory, ServerProcess, make_token, unique
from tests.support.timing import TIMEOUT_FACTOR

SCENARIO = NODE_DIR / "scenario.mjs"
USER = "42"

TRANSPORTS = ("websocket", "http_stream", "sse", "sockjs")
EMULATION = {"http_stream": {"enabled": True}, "sse": {"enabled": True},
             "sockjs": {"enabled": True}}



@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> str:
    name: str = request.param
    return name


@pytest.fixture
def srv(tidings_server: ServerFactory) -> ServerProcess:
    return tidings_server(EMULATION)


def _run_scenario(srv: ServerProcess, scenario: str, transport: str) -> dict[str, Any]:
    node = shutil.which("node")
    assert node is not None, "node is required for the Node e2e test"
    channel = unique("e2e")
    timeout_ms = int(15000 * TIMEOUT_FACTOR)
    cmd = [
        node,
        str(SCENARIO),
        "--ws-url",
        srv.ws_url,
        "--api-url",
        srv.api_url,
        "--api-key",
        srv.api_key,
        "--token",
        make_token(USER),
        "--user",
        USER,
        "--channel",
        channel,
        "--scenario",
        scenario,
        "--transport",
        transport,
        "--timeout-ms",
        str(timeout_ms),
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_E2E_")}
    if os.environ.get("TIDINGS_E2E_TRACE") == "1":
        env["TIDINGS_E2E_TRACE"] = "1"
    proc = subprocess.run(
        cmd,
        cwd=NODE_DIR,
        capture_output=True,
        text=True,
        timeout=60 * TIMEOUT_FACTOR,
        env=env,
        check=False,
    )
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    diag = (
        f"exit={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}\n"
        f"server log (tail):\n{srv.log_text()[-4000:]}"
    )
    assert len(lines) == 1, f"expected exactly one JSON line\n{diag}"
    out: dict[str, Any] = json.loads(lines[0])
    assert out["ok"] is True, f"scenario failed: {out.get('error')}\n{diag}"
    assert proc.returncode == 0, diag
    assert out["channel"] == channel
    assert out["transport"] == transport
    # Every connection used the transport under test (the client reports its name; for SockJS
    # with the SockJS transport it settled on: long polling, as forced).
    reported = "sockjs-xhr-polling" if transport == "sockjs" else transport
    assert out["connectedTransports"] == [reported] * len(out["clientIds"])
    return out


def _assert_first_subscribe(out: dict[str, Any]) -> None:
    first = out["subscribed"][0]
    assert first["recoverable"] is True
    assert first["positioned"] is True
    assert first["wasRecovering"] is False
    assert first["recovered"] is False
    assert isinstance(first["epoch"], str) and first["epoch"]
    # A brand-new channel: the stream top is 0 when the client subscribes.
    assert first["offset"] == 0
    # The live publication arrives with the first offset of the stream.
    assert out["received"][0] == {"data": {"seq": 0, "phase": "live"}, "offset": 1}
    assert out["apiPublishes"][0] == {"seq": 0, "offset": 1, "epoch": first["epoch"]}
    # Presence and history through the transport under test, right after the first publication.
    client_id = out["clientIds"][0]
    _assert_presence_and_history(
        out["afterFirstPublication"],
        client_id,
        [{"data": {"seq": 0, "phase": "live"}, "offset": 1}],
        first["epoch"],
    )


def _assert_presence_and_history(
    seen: dict[str, Any], client_id: str, publications: list[dict[str, Any]], epoch: str
) -> None:
    """Presence holds exactly this connection; history (``limit: -1``) every publication."""
    assert seen["presence"] == [{"key": client_id, "client": client_id, "user": USER}]
    assert seen["presenceStats"] == {"numClients": 1, "numUsers": 1}
    assert seen["history"] == {
        "publications": publications,
        "offset": publications[-1]["offset"],
        "epoch": epoch,
    }


def test_connect_subscribe_publish_and_recover_after_reconnect(
    srv: ServerProcess, transport: str
) -> None:
    # The drop is the client's own disconnect() (closes the WebSocket, aborts the HTTP stream or
    # closes the EventSource); a drop by the server is in the test below.
    out = _run_scenario(srv, "recover", transport)
    _assert_first_subscribe(out)
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
    _assert_presence_and_history(out["atEnd"], out["clientIds"][1], out["received"], epoch)
    assert srv.proc.poll() is None


def test_api_disconnect_3011_makes_client_reconnect_and_recover(
    srv: ServerProcess, transport: str
) -> None:
    # The server drops the connection: on a WebSocket with a close frame 3011, on http_stream/SSE
    # with the disconnect push as the last message of the stream, then the end of the response.
    out = _run_scenario(srv, "force-reconnect", transport)
    _assert_first_subscribe(out)
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
    _assert_presence_and_history(out["atEnd"], out["clientIds"][1], out["received"], epoch)
    assert srv.proc.poll() is None
