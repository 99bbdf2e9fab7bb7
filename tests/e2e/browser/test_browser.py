"""End-to-end in a real browser: headless Chromium against ``tidings serve``.

Two kinds of page, served from a small static HTTP server on another port (another origin, so
``client.allowed_origins`` and CORS are exercised the way a web app hits them):

- ``sdk.html`` loads the real centrifuge-js browser build (``centrifuge/dist/centrifuge.js``
  from ``tests/e2e/node/node_modules``), connects with exactly one transport (``websocket``,
  ``http_stream`` or ``sse``), subscribes, and answers the first publication with a publish of
  its own;
- ``uni_sse.html`` uses only the browser's ``EventSource`` on ``/connection/uni_sse`` with a token
  whose ``channels`` claim subscribes it server-side.

``run_page.mjs`` drives Chromium through playwright-core (Debian's ``/usr/bin/chromium``; nothing
is downloaded). It prints a ``ready`` line when the page is subscribed; the test then publishes
through the server API and waits for the final ``done`` line with the page state, console
messages and the requests the page made to the server.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
import urllib.parse
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

from tests.support.api import api_sync
from tests.support.npm import NODE_DIR
from tests.support.server import ServerFactory, ServerProcess, make_token, unique
from tests.support.timing import TIMEOUT_FACTOR

HERE = Path(__file__).parent
RUN_PAGE = HERE / "run_page.mjs"
CENTRIFUGE_JS = NODE_DIR / "node_modules" / "centrifuge" / "dist" / "centrifuge.js"
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
USER = "42"
# The page's own (static) server and Tidings listen on different ports of 127.0.0.1.
PAGE_ORIGINS = ["http://127.0.0.1:*", "http://localhost:*"]
TRANSPORTS = ["websocket", "http_stream", "sse"]
PAGE_TIMEOUT_S = 8.0 * TIMEOUT_FACTOR



class _StaticHandler(BaseHTTPRequestHandler):
    """The pages and the centrifuge-js build; nothing else."""

    routes: dict[str, tuple[Path, str]] = {
        "/sdk.html": (HERE / "sdk.html", "text/html; charset=utf-8"),
        "/uni_sse.html": (HERE / "uni_sse.html", "text/html; charset=utf-8"),
        "/centrifuge.js": (CENTRIFUGE_JS, "text/javascript; charset=utf-8"),
    }

    def do_GET(self) -> None:
        route = self.routes.get(urllib.parse.urlsplit(self.path).path)
        if route is None:
            self.send_error(404)
            return
        body = route[0].read_bytes()
        self.send_response(200)
        self.send_header("Content-Type", route[1])
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def page_origin() -> Iterator[str]:
    """``http://127.0.0.1:PORT`` of a static server for the test pages."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _StaticHandler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.1})
    thread.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
    finally:
        httpd.shutdown()
        thread.join(timeout=5)
        httpd.server_close()


@pytest.fixture
def srv(tidings_server: ServerFactory) -> ServerProcess:
    return tidings_server(
        {
            "http_stream": {"enabled": True},
            "sse": {"enabled": True},
            "uni_sse": {"enabled": True},
            "client": {"allowed_origins": PAGE_ORIGINS},
        }
    )


class PageRun:
    """One ``run_page.mjs`` process; its stdout lines are parsed into ``events``."""

    def __init__(self, srv: ServerProcess, url: str, *, done: str | None = None) -> None:
        node = shutil.which("node")
        assert node is not None, "node is required for the browser e2e tests"
        assert Path(CHROMIUM).is_file(), (
            f"{CHROMIUM} not found: install Debian's chromium (scripts/test does)"
        )
        self.srv = srv
        self.timeout_s = PAGE_TIMEOUT_S
        cmd = [
            node,
            str(RUN_PAGE),
            "--url",
            url,
            "--timeout-ms",
            str(int(self.timeout_s * 1000)),
            "--chromium",
            CHROMIUM,
            "--watch-origin",
            srv.http_url,
        ]
        if done is not None:
            cmd += ["--done", done]
        self.deadline = time.monotonic() + self.timeout_s + 10 * TIMEOUT_FACTOR
        self.proc = subprocess.Popen(
            cmd,
            cwd=HERE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.stdout: list[str] = []
        self.stderr: list[str] = []
        self._threads = [
            threading.Thread(target=self._pump_stdout, daemon=True),
            threading.Thread(target=self._pump_stderr, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _pump_stdout(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.stdout.append(line)
            self.lines.put(line)
        self.lines.put(None)

    def _pump_stderr(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.stderr.append(line)

    def diag(self) -> str:
        return (
            f"exit={self.proc.poll()}\nstdout:\n{''.join(self.stdout)}\n"
            f"stderr:\n{''.join(self.stderr)[-4000:]}\n"
            f"server log (tail):\n{self.srv.log_text()[-4000:]}"
        )

    def next_event(self) -> dict[str, Any]:
        """The next JSON line; fails (with diagnostics) on EOF or past the deadline."""
        while True:
            try:
                line = self.lines.get(timeout=max(0.01, self.deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"run_page.mjs sent nothing in time\n{self.diag()}")
            if line is None:
                pytest.fail(f"run_page.mjs ended early\n{self.diag()}")
            if line.startswith("{"):
                event: dict[str, Any] = json.loads(line)
                return event

    def wait_ready(self) -> dict[str, Any]:
        event = self.next_event()
        assert event["event"] == "ready", f"page never got ready\n{self.diag()}"
        state: dict[str, Any] = event["state"]
        return state

    def wait_done(self) -> dict[str, Any]:
        event = self.next_event()
        assert event["event"] == "done", self.diag()
        assert event["ok"] is True, f"page did not finish: {event.get('error')}\n{self.diag()}"
        try:
            self.proc.wait(timeout=max(0.1, self.deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            pytest.fail(f"run_page.mjs did not exit\n{self.diag()}")
        assert self.proc.returncode == 0, self.diag()
        return event

    def close(self) -> None:
        if self.proc.poll() is None:
            # Its own process group (start_new_session): run_page.mjs and the Chromium it started.
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for t in self._threads:
            t.join(timeout=5)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()


@pytest.fixture
def run_page() -> Iterator[Callable[..., PageRun]]:
    runs: list[PageRun] = []

    def start(srv: ServerProcess, url: str, *, done: str | None = None) -> PageRun:
        run = PageRun(srv, url, done=done)
        runs.append(run)
        return run

    yield start
    for run in runs:
        run.close()


def _endpoint(srv: ServerProcess, transport: str) -> str:
    if transport == "websocket":
        return srv.ws_url
    return f"{srv.http_url}/connection/{transport}"


def _assert_clean_page(done: dict[str, Any], diag: str) -> None:
    assert done["pageErrors"] == [], diag
    assert [m for m in done["console"] if m["type"] in ("error", "warning")] == [], diag


def _assert_transport_traffic(
    network: list[dict[str, Any]], srv: ServerProcess, transport: str, origin: str, diag: str
) -> None:
    """What the browser itself sent to the server: one connection on the chosen transport and,
    for the emulated ones, the upstream commands as CORS ``POST /emulation`` (204)."""
    assert not [r for r in network if "failed" in r], diag
    if transport == "websocket":
        assert [r["websocket"] for r in network] == [srv.ws_url], diag
        return
    streams = [r for r in network if f"/connection/{transport}" in r["url"]]
    method, content_type = {
        "http_stream": ("POST", None),
        "sse": ("GET", "text/event-stream; charset=utf-8"),
    }[transport]
    assert [(r["method"], r["status"]) for r in streams] == [(method, 200)], diag
    if content_type is not None:
        assert streams[0]["contentType"] == content_type, diag
    emulation = [r for r in network if r["url"] == f"{srv.http_url}/emulation"]
    # At least the subscribe and the page's publish went upstream.
    assert len(emulation) >= 2, diag
    assert {(r["method"], r["status"]) for r in emulation} == {("POST", 204)}, diag
    assert {r["allowOrigin"] for r in streams + emulation} == {origin}, diag
    assert len(streams) + len(emulation) == len(network), diag


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_centrifuge_js_in_chromium_receives_api_publication(
    transport: str,
    srv: ServerProcess,
    page_origin: str,
    run_page: Callable[..., PageRun],
) -> None:
    channel = unique("browser")
    params = {
        "transport": transport,
        "endpoint": _endpoint(srv, transport),
        "token": make_token(USER),
        "channel": channel,
    }
    if transport != "websocket":
        params["emulation"] = f"{srv.http_url}/emulation"
    url = f"{page_origin}/sdk.html?{urllib.parse.urlencode(params)}"
    run = run_page(
        srv,
        url,
        done="window.state.received.length >= 2 && window.state.clientPublish !== null",
    )

    ready = run.wait_ready()
    assert ready["subscribed"]["channel"] == channel
    published = api_sync(srv, "publish", {"channel": channel,
                                          "data": {"text": "hello browser", "via": transport}})
    assert published["offset"] == 1

    done = run.wait_done()
    state = done["state"]
    diag = run.diag()
    # The transport that carried the session is the one asked for (no fallback is configured).
    assert state["connected"]["transport"] == transport, diag
    assert state["transportName"] == transport, diag
    assert str(uuid.UUID(state["connected"]["client"])) == state["connected"]["client"]
    assert state["subscribed"]["recoverable"] is True
    assert state["subscribed"]["streamPosition"] == {"offset": 0, "epoch": published["epoch"]}
    # The API publication, then the page's own publish (sent upstream on the same transport).
    assert state["clientPublish"] == {"ok": True, "result": {}}, diag
    assert state["received"] == [
        {"data": {"text": "hello browser", "via": transport}, "offset": 1},
        {"data": {"from": "browser", "reply_to": 1}, "offset": 2},
    ], diag
    assert state["errors"] == [] and state["disconnected"] == [], diag
    assert state["states"] == ["connecting", "connected"], diag
    _assert_clean_page(done, diag)
    _assert_transport_traffic(done["network"], srv, transport, page_origin, diag)
    assert srv.proc.poll() is None


def test_plain_eventsource_on_uni_sse_receives_publication(
    srv: ServerProcess,
    page_origin: str,
    run_page: Callable[..., PageRun],
) -> None:
    channel = unique("news")
    connect_request = {"token": make_token(USER, channels=[channel])}
    uni_url = f"{srv.http_url}/connection/uni_sse?" + urllib.parse.urlencode(
        {"cf_connect": json.dumps(connect_request)}
    )
    url = f"{page_origin}/uni_sse.html?{urllib.parse.urlencode({'url': uni_url})}"
    run = run_page(srv, url)

    ready = run.wait_ready()
    connect = ready["connect"]
    assert str(uuid.UUID(connect["client"])) == connect["client"]
    # The token's `channels` claim subscribed the connection server-side.
    assert channel in connect.get("subs", {}), run.diag()
    published = api_sync(srv, "publish", {"channel": channel, "data": {"headline": "uni"}})

    done = run.wait_done()
    state = done["state"]
    diag = run.diag()
    assert state["received"] == [
        {"channel": channel, "data": {"headline": "uni"}, "offset": published["offset"]}
    ], diag
    # One stream, opened once, never errored (EventSource would otherwise retry).
    assert state["opens"] == 1 and state["errors"] == [], diag
    assert state["disconnect"] is None, diag
    _assert_clean_page(done, diag)
    assert [
        (r["method"], r["status"], r["contentType"], r["allowOrigin"]) for r in done["network"]
    ] == [("GET", 200, "text/event-stream; charset=utf-8", page_origin)], diag
    assert srv.proc.poll() is None
