"""End-to-end: centrifuge-js (npm ``centrifuge`` under Node) against ``tidings serve --workers
2`` on a private Redis, over the transports whose one client spans several HTTP requests:
HTTP-streaming and SSE (each ``POST /emulation`` may reach the other worker, which forwards it
through the engine to the node named in the request) and SockJS (each request may reach the
other worker, which hands the connection to the session's owner, transports/handoff.py).

The scenario (tests/e2e/node/scenario.mjs, ``recover``): connect, subscribe, a live
publication, presence and history, disconnect, three publications while away, reconnect and
recover them exactly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from tests.support.jsscenario import assert_first_subscribe, run_scenario
from tests.support.redisproc import RedisServer
from tests.support.server import ServerProcess, start_server, unique
from tests.support.workers import workers_config

TRANSPORTS = ("http_stream", "sse", "sockjs")


@pytest.fixture(scope="module")
def srv(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    tmp = tmp_path_factory.mktemp("workers-e2e")
    with RedisServer(tmp / "redis") as redis:
        server = start_server(tmp, workers_config(redis, unique("e")),
                              extra_args=["--workers", "2"])
        try:
            yield server
        finally:
            server.stop()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_recover_across_workers(srv: ServerProcess, transport: str) -> None:
    out = run_scenario(srv, "recover", transport)
    assert_first_subscribe(out)
    assert [p["offset"] for p in out["received"]] == [1, 2, 3, 4, 5]
    assert out["wasRecovering"] is True and out["recovered"] is True
    # Both workers took part in the run (clients, or emulation/SockJS requests).
    nodes = set(re.findall(r"node=(wk-w\d)", srv.log_text()))
    assert nodes == {"wk-w0", "wk-w1"}
