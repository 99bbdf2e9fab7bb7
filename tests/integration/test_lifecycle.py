"""Process-level behaviour: CLI helpers, config errors, shutdown, pings, slow consumers."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import jwt
import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from tests.support.api import api
from tests.support.raw import JsonWebSocket, client_frame, open_json_websocket, upgrade_request
from tests.support.server import ServerFactory, ServerProcess, make_token


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    full_env = {k: v for k, v in os.environ.items() if not k.startswith("TIDINGS_")}
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "tidings", *args],
        capture_output=True, text=True, timeout=30, env=full_env,
    )


async def connect_and_subscribe(srv: ServerProcess, channel: str) -> JsonWebSocket:
    ws = await open_json_websocket(srv.ws_url)
    await ws.command(connect={"token": make_token("42")})
    await ws.command(subscribe={"channel": channel})
    return ws


# ------------------------------------------------------------------ CLI


def test_version_genconfig_checkconfig_gentoken(tmp_path: Path) -> None:
    out = run_cli("version")
    assert out.returncode == 0 and out.stdout.startswith("tidings ")
    cfg = tmp_path / "config.json"
    out = run_cli("genconfig", "-o", str(cfg))
    assert out.returncode == 0, out.stderr
    generated = json.loads(cfg.read_text())
    secret = generated["client"]["token"]["hmac_secret_key"]
    assert len(secret) >= 32 and generated["http_api"]["key"]
    assert run_cli("genconfig", "-o", str(cfg)).returncode == 1  # no silent overwrite
    out = run_cli("checkconfig", "--config", str(cfg))
    assert out.returncode == 0 and "config is valid" in out.stdout
    out = run_cli("gentoken", "--config", str(cfg), "-u", "42", "-t", "60")
    assert out.returncode == 0
    claims = jwt.decode(out.stdout.strip(), secret, algorithms=["HS256"])
    assert claims["sub"] == "42" and claims["exp"] - time.time() <= 60


def test_checkconfig_reports_unknown_keys_and_bad_values(tmp_path: Path) -> None:
    cfg = tmp_path / "c.json"
    cfg.write_text(json.dumps({"client": {"tokn": {}, "insecure": True},
                               "http_server": {"port": 8001}, "http_api": {"key": "k"}}))
    out = run_cli("checkconfig", "--config", str(cfg))
    assert out.returncode == 0
    assert "client.tokn" in out.stderr
    cfg.write_text(json.dumps({"channel": {"namespaces": [{"name": "ok", "history_size": "x"}]}}))
    out = run_cli("checkconfig", "--config", str(cfg))
    assert out.returncode == 1  # 1: problems found; 2: the file cannot be read
    assert "channel.namespaces[0].history_size" in out.stderr
    out = run_cli("checkconfig", env={"TIDINGS_HTTP_SERVER_PORT": "70000"})
    assert out.returncode == 1 and "http_server.port" in out.stderr


def test_env_config_reaches_the_server(tidings_server: ServerFactory) -> None:
    # TIDINGS_* variables override the config file (BASE_CONFIG has key "api_key").
    srv = tidings_server(env_vars={"TIDINGS_HTTP_API_KEY": "key-from-env"})
    req = urllib.request.Request(
        f"{srv.api_url}/info", data=b"{}", headers={"X-API-Key": "key-from-env"}
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert json.loads(resp.read())["result"]["nodes"][0]["uid"]
    stale = urllib.request.Request(f"{srv.api_url}/info", data=b"{}",
                                   headers={"X-API-Key": "api_key"})
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(stale, timeout=10)
    assert exc.value.code == 401
    exc.value.close()


# ------------------------------------------------------------------ shutdown


async def test_sigterm_disconnects_clients_with_3001_and_exits(
    tidings_server: ServerFactory,
) -> None:
    srv = tidings_server({"shutdown": {"timeout": "5s"}})
    ws = await connect_and_subscribe(srv, "bye")
    started = time.monotonic()
    srv.proc.send_signal(signal.SIGTERM)
    assert await ws.expect_close(within=10) == (3001, "shutdown")
    code = await asyncio.to_thread(srv.proc.wait, 10)
    assert code == 0
    assert time.monotonic() - started < 6
    assert await asyncio.to_thread(srv.wait_log, "shutting down")
    await ws.close()


# ------------------------------------------------------------------ ping / pong


async def test_client_without_pong_is_disconnected_3012(tidings_server: ServerFactory) -> None:
    # pong_timeout spans two clock ticks: a loaded machine still answers in time.
    srv = tidings_server({"client": {"ping_interval": "2s", "pong_timeout": "2s"}})
    silent = await connect(srv.ws_url)
    await silent.send(json.dumps({"id": 1, "connect": {"token": make_token("1")}}))
    reply = json.loads(str(await asyncio.wait_for(silent.recv(), 5)))
    assert reply["connect"]["ping"] == 2 and reply["connect"]["pong"] is True
    polite = await connect(srv.ws_url)
    await polite.send(json.dumps({"id": 1, "connect": {"token": make_token("2")}}))
    await asyncio.wait_for(polite.recv(), 5)

    async def answer_pings() -> None:
        while True:
            if str(await polite.recv()) == "{}":
                await polite.send("{}")

    answering = asyncio.ensure_future(answer_pings())
    with pytest.raises(ConnectionClosed) as exc:
        while True:
            await asyncio.wait_for(silent.recv(), 10)
    assert exc.value.rcvd is not None and exc.value.rcvd.code == 3012
    # the polite client got at least one ping, answered, and is still connected
    assert not answering.done()
    await polite.send(json.dumps({"id": 2, "presence_stats": {"channel": "x"}}))
    answering.cancel()
    reply = json.loads(str(await asyncio.wait_for(polite.recv(), 5)))
    while reply.get("id") != 2:
        reply = json.loads(str(await asyncio.wait_for(polite.recv(), 5)))
    # not subscribed, so no presence access: an answer, not a disconnect
    assert reply == {"id": 2, "error": {"code": 103, "message": "permission denied"}}
    await polite.close()
    await silent.close()


async def test_unauthenticated_connection_is_closed_stale(tidings_server: ServerFactory) -> None:
    srv = tidings_server({"client": {"stale_close_delay": "1s"}})
    ws = await connect(srv.ws_url)
    with pytest.raises(ConnectionClosed) as exc:
        await asyncio.wait_for(ws.recv(), 10)
    assert exc.value.rcvd is not None and exc.value.rcvd.code == 3502
    await ws.close()


# ------------------------------------------------------------------ slow consumer


async def test_slow_consumer_is_disconnected_others_keep_receiving(
    tidings_server: ServerFactory,
) -> None:
    srv = tidings_server({"client": {"queue_max_size": 1024 * 1024}})
    healthy = await connect_and_subscribe(srv, "firehose")
    received: list[Any] = []
    done = asyncio.Event()

    async def read_healthy() -> None:
        # A healthy client reads continuously.
        while True:
            for line in str(await healthy.ws.recv()).split("\n"):
                push = json.loads(line).get("push", {})
                if "pub" in push:
                    received.append(push["pub"]["data"])
                    if push["pub"]["data"] == {"n": 1}:
                        done.set()

    reader = asyncio.ensure_future(read_healthy())
    # A raw client with a tiny receive window that never reads after subscribing.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: small window
    sock.connect(("127.0.0.1", srv.port))
    sock.sendall(upgrade_request("x"))
    assert b"101" in sock.recv(4096)
    for payload in (
        json.dumps({"id": 1, "connect": {"token": make_token("slow")}}).encode(),
        json.dumps({"id": 2, "subscribe": {"channel": "firehose"}}).encode(),
    ):
        sock.sendall(client_frame(payload, mask=bytes(4)))
    batch = {"commands": [{"publish": {"channel": "firehose", "data": {"b": "x" * 8000}}}] * 8}
    try:
        for _ in range(200):  # bounded: at most 12.8 MB in total, far over the queue limit
            await api(srv, "batch", batch, within=10)
            if "too slow" in srv.log_text():
                break
        assert "too slow" in srv.log_text()
        assert await asyncio.to_thread(srv.wait_log, "(user 'slow', websocket): 3008 slow")
        assert "(user '42'" not in srv.log_text()  # the healthy client was never disconnected
        await api(srv, "publish", {"channel": "firehose", "data": {"n": 1}}, within=10)
        await asyncio.wait_for(done.wait(), 10)
        assert len(received) >= 9
        assert srv.proc.poll() is None
    finally:
        reader.cancel()
        sock.close()
        await healthy.close()
