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

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from tests.support.api import ApiEndpoint, api_result
from tests.support.raw import JsonLines
from tests.support.redisproc import RedisServer, free_port
from tests.support.sdk import Clients, drop_transport, next_item
from tests.support.server import ServerProcess, deep_merge, make_token, start_server, unique
from tests.support.timing import TIMEOUT_FACTOR, T, eventually

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "scaling"
NODE_NAMES = ("node1", "node2")
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
def nodes(tmp_path: Path, redis: RedisServer) -> Iterator[list[ServerProcess]]:
    """Both example nodes on free ports (``--port 0``), sharing this test's Redis."""
    engine = {"address": [redis.url], "prefix": unique("tidings-nginx")}
    started: list[ServerProcess] = []
    try:
        for name in NODE_NAMES:
            config = example_node_config(name)
            assert config["engine"]["type"] == "redis"
            assert config["node"]["name"] == name
            config = deep_merge(config, {"engine": {"redis": engine}})
            started.append(start_server(tmp_path, config))
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


def proxied_api(nginx: Nginx) -> ApiEndpoint:
    """The server API through nginx, with the example's key."""
    return ApiEndpoint(f"{nginx.http_url}/api", example_node_config("node1")["http_api"]["key"])


async def test_two_nodes_behind_nginx_need_no_sticky_sessions(
    nodes: list[ServerProcess], nginx: Nginx, clients: Clients, http: aiohttp.ClientSession
) -> None:
    secret = example_node_config("node1")["client"]["token"]["hmac_secret_key"]
    proxy = proxied_api(nginx)
    channel = unique("news")
    node_ports = {node.port for node in nodes}
    connected: list[Any] = []
    subs: list[Any] = []
    sent_via_nginx = 0

    async def via_nginx(method: str, payload: dict[str, Any]) -> dict[str, Any]:
        nonlocal sent_via_nginx
        sent_via_nginx += 1
        return await api_result(proxy, method, payload, session=http)

    async def num_clients_per_node() -> list[int]:
        """Asked of each node directly: its own ``info`` entry is fresh (the other nodes'
        entries come from heartbeats every few seconds)."""
        counts = []
        for node, name in zip(nodes, NODE_NAMES, strict=True):
            result = await api_result(node, "info", {}, session=http)
            [own] = [n for n in result["nodes"] if n["name"] == name]
            counts.append(int(own["num_clients"]))
        return counts

    # Connect one client after another through nginx: round robin alternates nodes.
    for i in range(NUM_CLIENTS):
        client, events = clients.new(nginx, make_token(f"u{i}", secret=secret))
        connected.append((client, events))
        await client.connect()
        await next_item(events.connected)
    per_node = await num_clients_per_node()
    assert sum(per_node) == NUM_CLIENTS, per_node
    assert all(n >= 1 for n in per_node), f"all clients on one node: {per_node}"

    for client, _ in connected:
        _, sub_events, _ = await clients.subscribe(client, channel)
        subs.append(sub_events)

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
            pub = await next_item(sub_events.publications)
            assert (pub.offset, pub.data) == (n, data)

    assert await eventually(
        lambda: len(nginx.upstreams("POST /api/publish")) == NUM_PUBLISHES
    ), "timed out waiting for publish lines in nginx's access log"
    served = set(nginx.upstreams("POST /api/publish"))
    assert served == node_ports, f"publishes served by {served} only\n{nginx.logs()}"

    # Presence through nginx: whichever node answers lists the clients of both.
    client_ids = {client.client_id for client, _ in connected}
    for _ in range(len(nodes)):
        result = await via_nginx("presence", {"channel": channel})
        assert set(result["presence"]) == client_ids
    assert await eventually(
        lambda: len(nginx.upstreams("POST /api/presence")) == len(nodes)
    ), "timed out waiting for presence lines in nginx's access log"
    assert set(nginx.upstreams("POST /api/presence")) == node_ports

    # ``info`` through nginx lists every node (they learn of each other by heartbeat).
    async def info_lists_both() -> bool:
        result = await via_nginx("info", {})
        return sorted(n["name"] for n in result["nodes"]) == list(NODE_NAMES)

    assert await eventually(info_lists_both, within=3 * T), (
        "timed out waiting for info to list both nodes"
    )

    # A client whose connection drops reconnects through nginx to the OTHER node and
    # recovers there what it missed (history and its epoch are in Redis).
    (first, events), sub_events = connected[0], subs[0]
    before = await num_clients_per_node()
    release = await drop_transport(first, events)
    assert await eventually(
        lambda: bool(nginx.upstreams("GET /connection/websocket", 101))
    ), "timed out waiting for the closed WebSocket in nginx's access log"
    [old_port] = nginx.upstreams("GET /connection/websocket", 101)
    old = [node.port for node in nodes].index(old_port)
    missed: list[dict[str, Any]] = [{"missed": n} for n in (1, 2)]
    for n, data in enumerate(missed, start=NUM_PUBLISHES + 1):
        result = await via_nginx("publish", {"channel": channel, "data": data})
        assert result["offset"] == n, result
    # Round robin alternates: if the last request went to the old node, the reconnect
    # goes to the other one. At most one extra request steers it there.
    for _ in range(2):
        assert await eventually(
            lambda: len(nginx.served()) == sent_via_nginx + 1  # + the closed WebSocket
        ), "timed out waiting for every request so far in nginx's access log"
        if nginx.served()[-1][2] == old_port:
            break
        await via_nginx("info", {})
    else:
        pytest.fail(f"round robin did not alternate:\n{nginx.logs()}")
    release()
    resub = await next_item(sub_events.subscribed)
    assert (resub.was_recovering, resub.recovered) == (True, True)
    for n, data in enumerate(missed, start=NUM_PUBLISHES + 1):
        pub = await next_item(sub_events.publications)
        assert (pub.offset, pub.data) == (n, data)
    expected = [count + (1 if i != old else -1) for i, count in enumerate(before)]

    async def moved() -> bool:
        return await num_clients_per_node() == expected

    assert await eventually(moved), (
        f"timed out waiting for the client to move from {NODE_NAMES[old]} to the other node"
    )


async def test_emulation_through_nginx_needs_no_sticky_sessions(
    nodes: list[ServerProcess], nginx: Nginx, http: aiohttp.ClientSession
) -> None:
    """An HTTP-streaming connection lives on one node; its /emulation POSTs go round robin to
    both, and the other node forwards them through Redis."""
    secret = example_node_config("node1")["client"]["token"]["hmac_secret_key"]
    proxy = proxied_api(nginx)
    channel = unique("emu")

    def knows_both(target: ApiEndpoint | ServerProcess) -> Callable[[], Awaitable[bool]]:
        async def check() -> bool:
            info = await api_result(target, "info", {}, session=http)
            return len(info["nodes"]) == 2

        return check

    for node in nodes:  # each node must have heard the other's heartbeat
        assert await eventually(knows_both(node)), "timed out waiting for node heartbeats"
    assert await eventually(knows_both(proxy)), "timed out waiting for info lists both nodes"
    connect_cmd = json.dumps({"id": 1, "connect": {"token": make_token("e", secret=secret)}})
    async with http.post(f"{nginx.http_url}/connection/http_stream", data=connect_cmd,
                         headers={"Content-Type": "application/json"}) as stream:
        assert stream.status == 200
        lines = JsonLines(stream, sse=False)
        connect = (await lines.next())["connect"]
        for command_id in range(2, 6):  # 4 POSTs: round robin hands them to both nodes
            command = {"id": command_id, "presence_stats": {"channel": channel}}
            if command_id == 2:
                command = {"id": 2, "subscribe": {"channel": channel}}
            body = {"session": connect["session"], "node": connect["node"],
                    "data": json.dumps(command)}
            async with http.post(f"{nginx.http_url}/emulation", json=body) as resp:
                assert resp.status == 204, await resp.text()
            while (await lines.next()).get("id") != command_id:
                pass
        await api_result(proxy, "publish", {"channel": channel, "data": {"via": "nginx"}},
                         session=http)
        message = await lines.until(lambda m: "pub" in m.get("push", {}))
        assert message["push"]["pub"]["data"] == {"via": "nginx"}
    assert set(nginx.upstreams("POST /emulation", 204)) == {node.port for node in nodes}
