"""Structured logs of a real server: ``log.format: json`` lines carry the node and the
connection's context (client, user, transport, channel), start-up says what runs, and no
token, publication payload or cookie value is logged; ``TIDINGS_LOG_LEVEL=trace`` starts."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Awaitable, Callable
from typing import Any

from tests.support.api import api, api_result
from tests.support.raw import JsonWebSocket, http_exchange, upgrade_request
from tests.support.server import ServerFactory, ServerProcess, make_token, unique
from tests.support.timing import T

Record = dict[str, Any]
OpenWs = Callable[..., Awaitable[JsonWebSocket]]

APP = "https://app.example"
LEVELS = {"trace", "debug", "info", "warn", "error"}
RFC3339_UTC = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def records(srv: ServerProcess) -> list[Record]:
    """Every line of the server's output as JSON (a line that is not fails the test)."""
    out = []
    for line in srv.log_text().splitlines():
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                raise AssertionError(f"not a JSON log line: {line!r}") from None
    return out


def find(recs: list[Record], msg: str, **fields: Any) -> Record:
    for rec in recs:
        if rec["msg"] == msg and all(rec.get(k) == v for k, v in fields.items()):
            return rec
    raise AssertionError(f"no {msg!r} record with {fields} in:\n"
                         + "\n".join(json.dumps(r) for r in recs))


async def wait_for(srv: ServerProcess, text: str) -> None:
    assert await asyncio.to_thread(srv.wait_log, text, timeout=T), srv.log_text()[-3000:]


async def test_json_logs_carry_context_and_no_secrets(tidings_server: ServerFactory,
                                                      json_ws: OpenWs) -> None:
    srv = tidings_server({"log": {"level": "debug", "format": "json"},
                          "client": {"allowed_origins": [APP]}})
    user, channel = unique("log-user"), unique("news")
    refused = f"private:{unique('room')}"
    token = make_token(user)
    cookie = unique("cookie-secret")
    payload = unique("payload-secret")

    ws = await json_ws(srv.ws_url, {"Origin": APP, "Cookie": f"session={cookie}"})
    reply = await ws.command(connect={"token": token, "name": "log-sdk", "version": "9.8.7"})
    client_id = reply["connect"]["client"]
    assert "subscribe" in await ws.command(subscribe={"channel": channel})
    denied = await ws.command(subscribe={"channel": refused})
    assert denied["error"]["code"] == 103, denied
    await api_result(srv, "publish", {"channel": channel, "data": {"note": payload}})
    await ws.push("pub", channel, data={"note": payload})
    failed = await api(srv, "publish", {"channel": "nowhere:x", "data": {"note": payload}})
    assert failed["error"]["code"] == 102, failed
    await api_result(srv, "disconnect", {"user": user,
                                         "disconnect": {"code": 4001, "reason": "log test"}})
    assert (await ws.expect_close())[0] == 4001
    evil = ("Origin: https://evil.example\r\n"
            f"Cookie: session={cookie}\r\n")
    status, _, _ = await http_exchange(srv.host, srv.port, upgrade_request("t", extra_headers=evil))
    assert status == 403
    await wait_for(srv, "https://evil.example")

    recs = records(srv)
    for rec in recs:
        assert list(rec)[:5] == ["time", "level", "logger", "msg", "node"], rec
        assert RFC3339_UTC.match(rec["time"]) and rec["level"] in LEVELS, rec
        assert rec["node"] and rec["logger"], rec

    start = find(recs, f"tidings listening on {srv.http_url}")
    assert start["level"] == "info" and start["logger"] == "tidings.server.start"
    assert start["engine"] == "memory" and start["version"] and start["node_id"]
    assert start["config"].endswith(".json") and str(srv.port) in start["listeners"]

    who = {"client": client_id, "user": user, "transport": "websocket"}
    connected = find(recs, "client connected", **who)
    assert (connected["level"], connected["client_name"], connected["client_version"]) == (
        "debug", "log-sdk", "9.8.7")
    find(recs, "client subscribed", channel=channel, **who)
    assert find(recs, "command refused", method="subscribe", channel=refused, code=103,
                **who)["level"] == "debug"
    assert find(recs, "API call", method="publish")["level"] == "debug"
    assert find(recs, "API call failed", method="publish", code=102)["level"] == "info"
    gone = next(r for r in recs if r["msg"].startswith("disconnect client")
                and r.get("client") == client_id)
    assert (gone["level"], gone["user"], gone["transport"], gone["code"], gone["reason"]) == (
        "info", user, "websocket", 4001, "log test")
    origin = find(recs, "origin 'https://evil.example' not allowed (client.allowed_origins): "
                        "/connection/websocket refused")
    assert (origin["level"], origin["origin"]) == ("warn", "https://evil.example")

    text = srv.log_text()
    assert token not in text  # nowhere, at any level
    loud = "\n".join(json.dumps(r) for r in recs if r["level"] not in ("trace", "debug"))
    assert payload not in loud and cookie not in loud


async def test_trace_level_from_env_starts(tidings_server: ServerFactory,
                                           json_ws: OpenWs) -> None:
    srv = tidings_server(env_vars={"TIDINGS_LOG_LEVEL": "trace"})
    ws = await json_ws(srv.ws_url)
    await ws.connect(make_token("trace-user"))
    await wait_for(srv, "client connected")  # debug lines show at trace
    assert "user=trace-user transport=websocket" in srv.log_text()


async def test_start_line_shows_at_error_level(tidings_server: ServerFactory) -> None:
    srv = tidings_server({"log_level": "error", "log": {"format": "json"}})  # the old key
    [start] = records(srv)
    assert start["msg"].startswith("tidings listening on http://"), start
