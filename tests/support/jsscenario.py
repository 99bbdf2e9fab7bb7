"""The centrifuge-js scenario (``tests/e2e/node/scenario.mjs``) run against a Tidings, and the
checks of what it reports: shared by the standalone server's Node tests and the ASGI mount's.

The target is anything with the server's ``ws_url``, ``api_url`` (its routes are those below
``api_url`` minus ``/api``: a server mounted under a prefix works too), ``api_key`` and a
``log_text()`` for failure output.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from typing import Any, Protocol

from tests.support.npm import NODE_DIR
from tests.support.server import make_token, unique
from tests.support.timing import TIMEOUT_FACTOR

__all__ = ["USER", "ScenarioTarget", "assert_first_subscribe", "assert_presence_and_history",
           "run_scenario"]

SCENARIO = NODE_DIR / "scenario.mjs"
USER = "42"


class ScenarioTarget(Protocol):
    @property
    def ws_url(self) -> str: ...

    @property
    def api_url(self) -> str: ...

    @property
    def api_key(self) -> str: ...

    def log_text(self) -> str: ...


def run_scenario(srv: ScenarioTarget, scenario: str, transport: str) -> dict[str, Any]:
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


def assert_first_subscribe(out: dict[str, Any]) -> None:
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
    assert_presence_and_history(
        out["afterFirstPublication"],
        client_id,
        [{"data": {"seq": 0, "phase": "live"}, "offset": 1}],
        first["epoch"],
    )


def assert_presence_and_history(
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
