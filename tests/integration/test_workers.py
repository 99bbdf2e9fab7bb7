"""``tidings serve --workers 2`` on a private Redis: two processes sharing one port, each a
node of its own; real centrifuge-python clients on both workers (where each landed is read
from the server's log, tests/support/workers.py).

Most tests share one module-wide server; the tests that kill a worker or stop the server
start their own.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from centrifuge import ClientState

from tests.support.api import api_result
from tests.support.redisproc import RedisServer
from tests.support.sdk import Clients, next_item
from tests.support.server import ServerFactory, ServerProcess, make_token, start_server, unique
from tests.support.timing import TIMEOUT_FACTOR, T, eventually
from tests.support.workers import (
    NAME,
    connect_on,
    on_every_worker,
    worker_of,
    worker_pids,
    workers_config,
)

pytestmark = pytest.mark.sdk(max_retry_delay=0.5)
WORKERS = ["--workers", "2"]
NODES = [f"{NAME}-w0", f"{NAME}-w1"]


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    with RedisServer(tmp_path_factory.mktemp("redis")) as server:
        yield server


@pytest.fixture(scope="module")
def shared(redis_server: RedisServer,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    """One two-worker server for the tests that leave it running."""
    config = workers_config(redis_server, unique("w"))
    server = start_server(tmp_path_factory.mktemp("workers"), config, extra_args=WORKERS)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
async def srv(shared: ServerProcess) -> ServerProcess:
    """The shared server, alive, with both workers listed as nodes by ``info``."""
    assert shared.proc.poll() is None, shared.log_text()

    async def both_listed() -> bool:
        # Each call on a new connection (either worker): both must have heard of the other.
        for _ in range(6):
            nodes = (await api_result(shared, "info", {}))["nodes"]
            if sorted(n["name"] for n in nodes) != NODES:
                return False
        return True

    assert await eventually(both_listed, within=10 * TIMEOUT_FACTOR, interval=0.2)
    return shared


def _api_calls(server: ServerProcess, method: str) -> dict[str, int]:
    """How many API calls of ``method`` each worker logged."""
    found = re.findall(rf"API call node=(\S+) method={method}\b", server.log_text())
    return {node: found.count(node) for node in NODES}


async def test_one_start_line_and_every_worker_a_node(srv: ServerProcess) -> None:
    text = srv.log_text()
    assert len(re.findall(r"listening on http://", text)) == 1
    assert f"listening on http://127.0.0.1:{srv.port} " in text
    assert "workers=2" in text
    assert sorted(worker_pids(srv)) == [0, 1]
    info = await api_result(srv, "info", {})
    assert len({n["uid"] for n in info["nodes"]}) == 2


async def test_publish_through_either_worker_reaches_all(
    srv: ServerProcess, clients: Clients
) -> None:
    channel = unique("fan")
    on = await on_every_worker(clients, srv, 2, "u1")
    subs = {node: await clients.subscribe(client, channel) for node, (client, _) in on.items()}
    # A client publishes through its own worker: each reaches the other worker's subscriber.
    for node, (client, _) in on.items():
        await client.publish(channel, {"from": node})
        for _, events, _ in subs.values():
            pub = await next_item(events.publications)
            assert pub.data == {"from": node}
    # The API, each call on a new connection, until both workers have answered one.
    before = _api_calls(srv, "publish")
    for n in range(40):
        await api_result(srv, "publish", {"channel": channel, "data": {"n": n}})
        for _, events, _ in subs.values():
            assert (await next_item(events.publications)).data == {"n": n}
        await asyncio.to_thread(srv.wait_log, "method=publish", timeout=T)
        after = _api_calls(srv, "publish")
        if all(after[node] > before[node] for node in NODES):
            break
    else:
        raise AssertionError(f"every API publish went to one worker: {after}")


async def test_presence_is_the_union(srv: ServerProcess, clients: Clients) -> None:
    channel = unique("room")
    on = await on_every_worker(clients, srv, 2, "p1")
    for client, _ in on.values():
        await clients.subscribe(client, channel)
    expected = {client.client_id for client, _ in on.values()}

    async def union() -> bool:
        reply = await api_result(srv, "presence", {"channel": channel})
        return set(reply["presence"]) == expected

    assert await eventually(union)
    # Asked through either worker (a client's presence goes to its own worker).
    for client, _ in on.values():
        sub = client.get_subscription(channel)
        assert set((await sub.presence()).clients) == expected


async def test_recovery_when_the_client_reconnects_onto_the_other_worker(
    srv: ServerProcess, clients: Clients
) -> None:
    channel = unique("rec")
    client, _ = await connect_on(clients, srv, NODES[0], "r1")
    _, events, ctx = await clients.subscribe(client, channel)
    assert ctx.recoverable is True
    first = NODES[0]
    n = 0
    for _ in range(40):
        await client.disconnect()
        missed = []
        for _ in range(2):
            n += 1
            missed.append((await api_result(srv, "publish", {"channel": channel,
                                                               "data": {"n": n}}))["offset"])
        await client.connect()
        ctx = await next_item(events.subscribed)
        assert (ctx.was_recovering, ctx.recovered) == (True, True)
        got = [await next_item(events.publications) for _ in missed]
        assert [p.offset for p in got] == missed
        if await worker_of(srv, client.client_id) != first:
            return  # recovered on the other worker
    raise AssertionError("every reconnect landed on the same worker")


def test_memory_engine_is_refused(tmp_path: Path) -> None:
    cfg = tmp_path / "mem.json"
    cfg.write_text(json.dumps({"client": {"token": {"hmac_secret_key": "s" * 32}}}))
    for workers in ("2", "auto"):
        proc = subprocess.run(
            [sys.executable, "-m", "tidings", "serve", "--config", str(cfg), "--port", "0",
             "--workers", workers], capture_output=True, text=True, timeout=30, check=False)
        assert proc.returncode == 2, proc
        assert proc.stderr.count("\n") == 1, proc.stderr
        assert "needs a distributed engine (engine.type redis)" in proc.stderr


async def test_killed_worker_is_restarted_and_its_clients_recover(
    redis_server: RedisServer, tidings_server: ServerFactory, clients: Clients
) -> None:
    server = tidings_server(config=workers_config(redis_server, unique("k")),
                            extra_args=WORKERS)
    channel = unique("kill")
    on = await on_every_worker(clients, server, 2, "k1")
    subs = {node: await clients.subscribe(client, channel) for node, (client, _) in on.items()}
    victim, victim_events = on[NODES[1]]
    _, victim_sub, _ = subs[NODES[1]]
    old = worker_pids(server)[1]
    gate = victim_events.gate = asyncio.Event()  # hold its reconnect: publish while it is away
    victim_events.held.clear()
    server_pid = server.proc.pid
    os.kill(old, signal.SIGKILL)
    await asyncio.wait_for(victim_events.held.wait(), T)
    assert victim.state == ClientState.CONNECTING
    offsets = [(await api_result(server, "publish", {"channel": channel, "data": {"n": n}}))[
        "offset"] for n in range(3)]
    victim_events.gate = None
    gate.set()
    ctx = await next_item(victim_sub.subscribed)
    assert (ctx.was_recovering, ctx.recovered) == (True, True)
    assert [(await next_item(victim_sub.publications)).offset for _ in offsets] == offsets
    # The supervisor saw it and started worker 1 again; the survivor kept every publication.
    assert server.wait_log("worker 1 exited with signal SIGKILL")
    new = await _restarted(server, 1, old)
    assert server.wait_log(f"tidings worker 1 of 2 (pid {new}) serving")
    _, survivor_sub, _ = subs[NODES[0]]
    assert [(await next_item(survivor_sub.publications)).offset for _ in offsets] == offsets
    # The new worker 1 serves: a client that lands there gets publications.
    client, _ = await connect_on(clients, server, NODES[1], "k2")
    _, events, _ = await clients.subscribe(client, channel)
    await api_result(server, "publish", {"channel": channel, "data": "after"})
    assert (await next_item(events.publications)).data == "after"
    assert server.proc.poll() is None and server.proc.pid == server_pid


async def _restarted(server: ServerProcess, index: int, old: int) -> int:
    def new_pid() -> bool:
        return worker_pids(server).get(index, old) != old

    assert await eventually(new_pid, within=10 * TIMEOUT_FACTOR, interval=0.1), (
        server.log_text())
    return worker_pids(server)[index]


async def test_sigterm_drains_every_worker(
    redis_server: RedisServer, tidings_server: ServerFactory, clients: Clients
) -> None:
    config = workers_config(redis_server, unique("t"),
                            http_server={"internal_port": "0"})
    server = tidings_server(config=config, extra_args=WORKERS)
    async with aiohttp.ClientSession() as http:  # the internal listener is shared too
        async with http.get(f"{server.internal_url}/health") as resp:
            assert resp.status == 200
    on = await on_every_worker(clients, server, 2, "t1")
    pids = worker_pids(server)
    assert server.stop(signal.SIGTERM) == 0, server.log_text()
    for _, events in on.values():
        ctx = await next_item(events.connecting, lambda c: c.code != 0)
        assert (ctx.code, ctx.reason) == (3001, "shutdown")
    text = server.log_text()
    assert text.count("shutting down") == 2 and "all workers stopped" in text
    assert all(_gone(pid) for pid in pids.values())  # no worker outlived the supervisor


def _gone(pid: int) -> bool:
    """No such process, or only its exit status is left (a zombie)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] == "Z"
    except OSError:
        return True


def _sockjs_send(messages: list[dict[str, Any]]) -> str:
    return json.dumps([json.dumps(m) for m in messages])


async def test_sockjs_session_requests_reach_the_owning_worker(srv: ServerProcess) -> None:
    """Every request on a new connection (any worker): the session's sends and polls are
    handed to the worker that holds it."""
    base = f"{srv.http_url}/connection/sockjs/123/{unique('s')}"
    channel = unique("sj")
    commands = [{"id": 1, "connect": {"token": make_token("s1")}},
                {"id": 2, "subscribe": {"channel": channel}}]
    commands += [{"id": i, "publish": {"channel": channel, "data": {"i": i}}}
                 for i in range(3, 13)]
    connector = aiohttp.TCPConnector(force_close=True)  # a new connection per request
    async with aiohttp.ClientSession(connector=connector) as http:
        async with http.post(f"{base}/xhr") as resp:
            assert (resp.status, await resp.read()) == (200, b"o\n")
        for command in commands:
            async with http.post(f"{base}/xhr_send", data=_sockjs_send([command])) as resp:
                assert resp.status == 204, await resp.read()
        replies: set[int] = set()
        async with asyncio.timeout(2 * T):
            while len(replies) < len(commands):
                replies |= await _poll(http, f"{base}/xhr")
        assert replies == {c["id"] for c in commands}

    async def handed_over() -> bool:  # (a node's view of the other is up to 3 s old)
        nodes = (await api_result(srv, "info", {}))["nodes"]
        sent: int = sum(n.get("handoffs", {}).get("sent", 0) for n in nodes)
        return sent > 0

    assert await eventually(handed_over, within=2 * T, interval=0.2)


async def _poll(http: aiohttp.ClientSession, url: str) -> set[int]:
    """One SockJS poll: the IDs of the replies it brought (pushes have none)."""
    async with http.post(url) as resp:
        body = (await resp.read()).decode()
    assert body.startswith(("a[", "h")), body
    ids: set[int] = set()
    for message in json.loads(body[1:]) if body.startswith("a[") else ():
        for line in message.split("\n"):
            reply = json.loads(line)
            assert "error" not in reply, reply
            if "id" in reply:
                ids.add(reply["id"])
    return ids
