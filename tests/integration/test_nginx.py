"""Two Tidings nodes behind nginx, run from the very files in ``examples/scaling/``.

Redis, both nodes (``node1.json``/``node2.json`` with this test's Redis address and a unique
prefix) and nginx (``nginx.conf`` with free ports instead of 8000/8001/8002) run as real
processes. Real ``centrifuge-python`` clients connect through nginx's plain round robin, so they
land on different nodes (each node's own ``info`` counts them); publications and presence calls
that nginx hands to either node (its access log names the node) reach every client, and a client
whose connection drops is steered to the other node on reconnect and recovers what it missed
there. No sticky sessions are needed.

nginx runs in the foreground with ``-p <tmp dir>`` (pid, logs and temp dirs live there), listens
on 127.0.0.1 only and is stopped through its own ``Popen`` handle. As root nginx would run its
workers as ``nobody``, who cannot enter pytest's private temp dir; then ``user root;`` is added
on the command line, which is what a test running as root can do anyway.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from centrifuge import Client, ClientEventHandler, SubscriptionEventHandler

from tests.conftest import TIMEOUT_FACTOR, ServerProcess, deep_merge, make_token, start_server
from tests.redisproc import RedisServer, free_port

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "scaling"
NODE_NAMES = ("node1", "node2")
T = 5.0 * TIMEOUT_FACTOR
NUM_CLIENTS = 4
NUM_PUBLISHES = 4

# A line of the "tidings" log_format in nginx.conf.
_ACCESS_LINE = re.compile(r'"(\S+ \S+) HTTP/1\.1" (\d{3}) upstream=127\.0\.0\.1:(\d+) ')



def nginx_path() -> str:
    """Debian's nginx (scripts/test installs nginx-light); /usr/sbin may be off a user's PATH."""
    found = shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin")
    assert found, "nginx is not installed: run scripts/test (it installs Debian's nginx-light)"
    return found


def example_node_config(name: str) -> dict[str, Any]:
    config = json.loads((EXAMPLE / f"{name}.json").read_text())
    assert isinstance(config, dict)
    return config


def render_nginx_conf(listen_port: int, node_ports: list[int]) -> str:
    """``examples/scaling/nginx.conf`` with this test's ports; each replaced line must exist."""
    text = (EXAMPLE / "nginx.conf").read_text()
    replacements = {"listen 127.0.0.1:8000;": f"listen 127.0.0.1:{listen_port};"}
    for example_port, port in zip((8001, 8002), node_ports, strict=True):
        replacements[f"server 127.0.0.1:{example_port};"] = f"server 127.0.0.1:{port};"
    for old, new in replacements.items():
        assert text.count(old) == 1, f"{old!r} not found exactly once in nginx.conf"
        text = text.replace(old, new)
    return text


class Nginx:
    """``nginx -p PREFIX -c PREFIX/nginx.conf -g 'daemon off;'`` as a child process."""

    def __init__(self, prefix: Path, listen_port: int, node_ports: list[int]) -> None:
        prefix.mkdir()
        self.prefix = prefix
        self.port = listen_port
        conf = prefix / "nginx.conf"
        conf.write_text(render_nginx_conf(listen_port, node_ports))
        globals_ = "daemon off;" + (" user root;" if os.geteuid() == 0 else "")
        nginx = nginx_path()
        self.output = prefix / "nginx.out"
        with self.output.open("wb") as out:
            self.proc = subprocess.Popen(
                [nginx, "-p", str(prefix), "-c", str(conf), "-e", "stderr", "-g", globals_],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its workers share its process group (see stop)
            )
        try:
            self._wait_listening()
        except BaseException:
            self.stop()
            raise

    def _wait_listening(self) -> None:
        deadline = time.monotonic() + 10 * TIMEOUT_FACTOR
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0):
                    return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"nginx did not start:\n{self.logs()}")

    @property
    def http_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/connection/websocket"

    def logs(self) -> str:
        parts = []
        for name in ("nginx.out", "error.log"):
            path = self.prefix / name
            if path.exists():
                parts.append(f"--- {name}\n{path.read_text(errors='replace')}")
        return "\n".join(parts)

    def served(self) -> list[tuple[str, int, int]]:
        """``(request, status, node port)`` per access-log line, in the order requests ended
        (a WebSocket's line is written when it closes)."""
        path = self.prefix / "access.log"
        text = path.read_text() if path.exists() else ""
        return [
            (m.group(1), int(m.group(2)), int(m.group(3)))
            for m in _ACCESS_LINE.finditer(text)
        ]

    def upstreams(self, request: str, status: int = 200) -> list[int]:
        """The node port of each ended ``request`` (e.g. ``POST /api/publish``)."""
        return [port for req, st, port in self.served() if (req, st) == (request, status)]

    def stop(self) -> None:
        """SIGTERM (fast shutdown: open WebSockets are cut, not waited for), then SIGKILL to the
        process group it leads, which holds its workers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=10 * TIMEOUT_FACTOR)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    with RedisServer(tmp_path) as server:
        yield server


@pytest.fixture
def nodes(tmp_path: Path, redis_server: RedisServer) -> Iterator[list[ServerProcess]]:
    """Both example nodes on free ports (``--port 0``), sharing this test's Redis."""
    redis = {"address": [redis_server.url], "prefix": f"tidings-nginx-{uuid.uuid4().hex[:8]}"}
    started: list[ServerProcess] = []
    try:
        for name in NODE_NAMES:
            config = example_node_config(name)
            assert config["engine"]["type"] == "redis"
            assert config["node"]["name"] == name
            started.append(start_server(tmp_path, deep_merge(config, {"engine": {"redis": redis}})))
        yield started
    finally:
        for server in started:
            server.stop()


@pytest.fixture
def nginx(tmp_path: Path, nodes: list[ServerProcess]) -> Iterator[Nginx]:
    proxy = Nginx(tmp_path / "nginx", free_port(), [node.port for node in nodes])
    try:
        yield proxy
    finally:
        proxy.stop()


class ClientEvents(ClientEventHandler):  # type: ignore[misc]  # the SDK ships no type hints
    def __init__(self) -> None:
        self.connected = asyncio.Event()
        self.gate: asyncio.Event | None = None  # when set: hold reconnects until released
        self.held = asyncio.Event()

    async def on_connected(self, ctx: Any) -> None:
        self.connected.set()

    async def on_connecting(self, ctx: Any) -> None:
        # The SDK awaits this handler before it schedules a reconnect.
        gate = self.gate
        if gate is not None and ctx.code != 0:  # 0 = connect() called, not a lost connection
            self.held.set()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(gate.wait(), 3 * T)


class SubEvents(SubscriptionEventHandler):  # type: ignore[misc]  # the SDK ships no type hints
    def __init__(self) -> None:
        self.subscribed: asyncio.Queue[Any] = asyncio.Queue()
        self.publications: asyncio.Queue[Any] = asyncio.Queue()

    async def on_subscribed(self, ctx: Any) -> None:
        self.subscribed.put_nowait(ctx)

    async def on_publication(self, ctx: Any) -> None:
        self.publications.put_nowait(ctx.pub)


async def api(
    session: aiohttp.ClientSession, base_url: str, key: str, method: str, payload: dict[str, Any]
) -> dict[str, Any]:
    """POST ``base_url/api/<method>``; the ``result`` of a 200 reply without ``error``."""
    async with session.post(
        f"{base_url}/api/{method}", json=payload, headers={"X-API-Key": key}
    ) as resp:
        body = await resp.text()
        assert resp.status == 200, body
    reply = json.loads(body)
    assert set(reply) == {"result"}, reply
    result = reply["result"]
    assert isinstance(result, dict)
    return result


async def wait_until(check: Callable[[], Any], what: str, seconds: float = T) -> None:
    """Poll the (sync or async) ``check`` every 50 ms until it is truthy, within ``seconds``."""
    try:
        async with asyncio.timeout(seconds):
            while True:
                value = check()
                if asyncio.iscoroutine(value):
                    value = await value
                if value:
                    return
                await asyncio.sleep(0.05)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def test_two_nodes_behind_nginx_need_no_sticky_sessions(
    nodes: list[ServerProcess], nginx: Nginx
) -> None:
    config = example_node_config("node1")
    secret = config["client"]["token"]["hmac_secret_key"]
    key = config["http_api"]["key"]
    channel = f"news-{uuid.uuid4().hex[:8]}"
    node_ports = {node.port for node in nodes}
    clients: list[Any] = []
    client_events: list[ClientEvents] = []
    subs: list[SubEvents] = []
    sent_via_nginx = 0
    async with aiohttp.ClientSession() as session:

        async def via_nginx(method: str, payload: dict[str, Any]) -> dict[str, Any]:
            nonlocal sent_via_nginx
            sent_via_nginx += 1
            return await api(session, nginx.http_url, key, method, payload)

        async def num_clients_per_node() -> list[int]:
            """Asked of each node directly: its own ``info`` entry is fresh (the other nodes'
            entries come from heartbeats every few seconds)."""
            counts = []
            for node, name in zip(nodes, NODE_NAMES, strict=True):
                result = await api(session, node.http_url, key, "info", {})
                [own] = [n for n in result["nodes"] if n["name"] == name]
                counts.append(int(own["num_clients"]))
            return counts

        try:
            # Connect one client after another through nginx: round robin alternates nodes.
            for i in range(NUM_CLIENTS):
                events = ClientEvents()
                client_events.append(events)
                client = Client(
                    nginx.ws_url, events=events, token=make_token(f"u{i}", secret=secret),
                    proxy=None,
                )
                clients.append(client)
                await client.connect()
                await asyncio.wait_for(events.connected.wait(), T)
            per_node = await num_clients_per_node()
            assert sum(per_node) == NUM_CLIENTS, per_node
            assert all(n >= 1 for n in per_node), f"all clients on one node: {per_node}"

            for client in clients:
                sub_events = SubEvents()
                sub = client.new_subscription(channel, events=sub_events)
                subs.append(sub_events)
                await sub.subscribe()
                await asyncio.wait_for(sub_events.subscribed.get(), T)

            # Publish through nginx: the calls go to both nodes, each publication reaches every
            # client on either node, and the offsets form one sequence (history is in Redis).
            # The last body (> 16 KiB) is buffered in nginx's client_body_temp_path.
            payloads: list[dict[str, Any]] = [{"n": n} for n in range(1, NUM_PUBLISHES)]
            payloads.append({"n": NUM_PUBLISHES, "pad": "x" * 40_000})
            for n, data in enumerate(payloads, start=1):
                result = await via_nginx("publish", {"channel": channel, "data": data})
                assert result["offset"] == n, result
            for sub_events in subs:
                for n, data in enumerate(payloads, start=1):
                    pub = await asyncio.wait_for(sub_events.publications.get(), T)
                    assert (pub.offset, pub.data) == (n, data)

            await wait_until(
                lambda: len(nginx.upstreams("POST /api/publish")) == NUM_PUBLISHES,
                "publish lines in nginx's access log",
            )
            served = set(nginx.upstreams("POST /api/publish"))
            assert served == node_ports, f"publishes served by {served} only\n{nginx.logs()}"

            # Presence through nginx: whichever node answers lists the clients of both.
            client_ids = {client.client_id for client in clients}
            for _ in range(len(nodes)):
                result = await via_nginx("presence", {"channel": channel})
                assert set(result["presence"]) == client_ids
            await wait_until(
                lambda: len(nginx.upstreams("POST /api/presence")) == len(nodes),
                "presence lines in nginx's access log",
            )
            assert set(nginx.upstreams("POST /api/presence")) == node_ports

            # ``info`` through nginx lists every node (they learn of each other by heartbeat).
            async def info_lists_both() -> bool:
                result = await via_nginx("info", {})
                return sorted(n["name"] for n in result["nodes"]) == list(NODE_NAMES)

            await wait_until(info_lists_both, "info to list both nodes", seconds=3 * T)

            # A client whose connection drops reconnects through nginx to the OTHER node and
            # recovers there what it missed (history and its epoch are in Redis).
            events, sub_events = client_events[0], subs[0]
            before = await num_clients_per_node()
            gate = events.gate = asyncio.Event()
            await clients[0]._conn.close()
            await asyncio.wait_for(events.held.wait(), T)
            await wait_until(
                lambda: nginx.upstreams("GET /connection/websocket", 101),
                "the closed WebSocket in nginx's access log",
            )
            [old_port] = nginx.upstreams("GET /connection/websocket", 101)
            old = [node.port for node in nodes].index(old_port)
            missed: list[dict[str, Any]] = [{"missed": n} for n in (1, 2)]
            for n, data in enumerate(missed, start=NUM_PUBLISHES + 1):
                result = await via_nginx("publish", {"channel": channel, "data": data})
                assert result["offset"] == n, result
            # Round robin alternates: if the last request went to the old node, the reconnect
            # goes to the other one. At most one extra request steers it there.
            for _ in range(2):
                await wait_until(
                    lambda: len(nginx.served()) == sent_via_nginx + 1,  # + the closed WebSocket
                    "every request so far in nginx's access log",
                )
                if nginx.served()[-1][2] == old_port:
                    break
                await via_nginx("info", {})
            else:
                pytest.fail(f"round robin did not alternate:\n{nginx.logs()}")
            events.gate = None
            gate.set()
            resub = await asyncio.wait_for(sub_events.subscribed.get(), T)
            assert (resub.was_recovering, resub.recovered) == (True, True)
            for n, data in enumerate(missed, start=NUM_PUBLISHES + 1):
                pub = await asyncio.wait_for(sub_events.publications.get(), T)
                assert (pub.offset, pub.data) == (n, data)
            expected = [count + (1 if i != old else -1) for i, count in enumerate(before)]

            async def moved() -> bool:
                return await num_clients_per_node() == expected

            await wait_until(moved, f"the client to move from {NODE_NAMES[old]} to the other node")
        finally:
            for events in client_events:
                if events.gate is not None:
                    events.gate.set()
            for client in clients:
                await client.disconnect()
            # The SDK closes sockets in background tasks; let them finish before the loop ends.
            tasks = {t for client in clients for t in client._background_tasks}
            if tasks:
                await asyncio.wait(tasks, timeout=T)


async def test_emulation_through_nginx_needs_no_sticky_sessions(
    nodes: list[ServerProcess], nginx: Nginx
) -> None:
    """An HTTP-streaming connection lives on one node; its /emulation POSTs go round robin to
    both, and the other node forwards them through Redis."""
    config = example_node_config("node1")
    secret = config["client"]["token"]["hmac_secret_key"]
    key = config["http_api"]["key"]
    channel = f"emu-{uuid.uuid4().hex[:8]}"
    async with aiohttp.ClientSession() as session:

        async def both_nodes_known() -> bool:
            info = await api(session, nginx.http_url, key, "info", {})
            return len(info["nodes"]) == 2

        for node in nodes:  # each node must have heard the other's heartbeat
            await wait_until(functools.partial(_knows_both, session, node, key),
                             "node heartbeats")
        await wait_until(both_nodes_known, "info lists both nodes")
        connect_cmd = json.dumps({"id": 1, "connect": {"token": make_token("e", secret=secret)}})
        async with session.post(f"{nginx.http_url}/connection/http_stream", data=connect_cmd,
                                headers={"Content-Type": "application/json"}) as stream:
            assert stream.status == 200

            async def next_message() -> dict[str, Any]:
                async with asyncio.timeout(T):
                    while True:
                        line = (await stream.content.readline()).strip()
                        if line:
                            message: dict[str, Any] = json.loads(line)
                            return message

            connect = (await next_message())["connect"]
            for command_id in range(2, 6):  # 4 POSTs: round robin hands them to both nodes
                command = {"id": command_id, "presence_stats": {"channel": channel}}
                if command_id == 2:
                    command = {"id": 2, "subscribe": {"channel": channel}}
                body = {"session": connect["session"], "node": connect["node"],
                        "data": json.dumps(command)}
                async with session.post(f"{nginx.http_url}/emulation", json=body) as resp:
                    assert resp.status == 204, await resp.text()
                while (await next_message()).get("id") != command_id:
                    pass
            await api(session, nginx.http_url, key, "publish",
                      {"channel": channel, "data": {"via": "nginx"}})
            while True:
                message = await next_message()
                if "pub" in message.get("push", {}):
                    break
            assert message["push"]["pub"]["data"] == {"via": "nginx"}
    assert set(nginx.upstreams("POST /emulation", 204)) == {node.port for node in nodes}


async def _knows_both(session: aiohttp.ClientSession, node: ServerProcess, key: str) -> bool:
    info = await api(session, node.http_url, key, "info", {})
    return len(info["nodes"]) == 2

