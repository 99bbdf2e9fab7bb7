"""A node running inside the test's own event loop, with connections whose socket is a
``FakeTransport``: bytes go straight into the HTTP protocol object, everything the node writes
is kept. For fast tests of core behaviour and for fuzzing, where a server process per input
would be far too slow."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tests.support.raw import OP_CLOSE, OP_TEXT, client_frame, upgrade_request
from tests.support.server import BASE_CONFIG, deep_merge
from tidings.api.handlers import ApiHandler
from tidings.config import config_from_dict
from tidings.core.node import Node
from tidings.engine.memory import MemoryEngine
from tidings.transports.http import HttpProtocol, ServerState


class FakeTransport:
    """What ``asyncio.Transport`` offers a protocol, recording instead of sending."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False
        self.aborted = False
        self.reading = True
        self.eof = False

    def write(self, data: bytes) -> None:
        assert not self.eof, "write after write_eof"
        self.written.append(bytes(data))

    def data(self) -> bytes:
        return b"".join(self.written)

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = self.aborted = True

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def get_write_buffer_size(self) -> int:
        return 0

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class InProcessServer:
    def __init__(self, node: Node, state: ServerState) -> None:
        self.node = node
        self.state = state

    def connect(self) -> tuple[HttpProtocol, FakeTransport]:
        """A new connection: its protocol object and its (fake) socket."""
        protocol = HttpProtocol(self.state)
        transport = FakeTransport()
        protocol.connection_made(transport)  # type: ignore[arg-type]
        return protocol, transport


@asynccontextmanager
async def in_process_server(overrides: dict[str, Any] | None = None
                            ) -> AsyncIterator[InProcessServer]:
    """A started node with BASE_CONFIG (+ ``overrides``) on the memory engine."""
    config, _ = config_from_dict(deep_merge(BASE_CONFIG, overrides or {}))
    node = Node(config, MemoryEngine())
    await node.start()
    state = ServerState(node, ApiHandler(node))
    try:
        yield InProcessServer(node, state)
    finally:
        for conn in list(state.connections):
            conn.connection_lost(None)
        await node.shutdown(1.0)


def server_frames(data: bytes) -> list[tuple[int, bytes]]:
    """Server WebSocket frames (never masked, never fragmented) in ``data``."""
    frames: list[tuple[int, bytes]] = []
    pos = 0
    while pos + 2 <= len(data):
        opcode, n = data[pos] & 0x0F, data[pos + 1] & 0x7F
        pos += 2
        if n == 126:
            n = int.from_bytes(data[pos:pos + 2], "big")
            pos += 2
        elif n == 127:
            n = int.from_bytes(data[pos:pos + 8], "big")
            pos += 8
        frames.append((opcode, data[pos:pos + n]))
        pos += n
    return frames


class InProcessWebSocket:
    """A WebSocket client of an in-process server: what it sends goes straight into the HTTP
    protocol object, what the server writes is parsed back into frames and JSON messages."""

    def __init__(self, protocol: HttpProtocol, transport: FakeTransport) -> None:
        self.protocol = protocol
        self.transport = transport
        head = transport.data()
        assert head.startswith(b"HTTP/1.1 101 "), head[:200]
        self._skip = len(head)  # the handshake answer
        self.next_id = 1

    def send(self, message: dict[str, Any] | bytes) -> None:
        payload = message if isinstance(message, bytes) else json.dumps(message).encode()
        self.protocol.data_received(client_frame(payload))

    def command(self, **command: Any) -> int:
        """Send a command with the next id; returns the id."""
        cmd_id = self.next_id
        self.next_id += 1
        self.send({"id": cmd_id, **command})
        return cmd_id

    def frames(self) -> list[tuple[int, bytes]]:
        return server_frames(self.transport.data()[self._skip:])

    def messages(self) -> list[dict[str, Any]]:
        """Every JSON message the server sent so far (a frame may carry several)."""
        out: list[dict[str, Any]] = []
        for opcode, payload in self.frames():
            if opcode == OP_TEXT:
                out.extend(json.loads(line) for line in payload.split(b"\n") if line)
        return out

    def reply(self, cmd_id: int) -> dict[str, Any]:
        replies = [m for m in self.messages() if m.get("id") == cmd_id]
        assert len(replies) == 1, (cmd_id, self.messages())
        return replies[0]

    def pushes(self) -> list[dict[str, Any]]:
        return [m["push"] for m in self.messages() if "push" in m]

    def close_code(self) -> int | None:
        closes = [p for op, p in self.frames() if op == OP_CLOSE]
        return int.from_bytes(closes[0][:2], "big") if closes else None


async def settle(rounds: int = 5) -> None:
    """Let the node run what is ready (command tasks, flush rounds)."""
    for _ in range(rounds):
        await asyncio.sleep(0)


async def websocket(server: InProcessServer, token: str | None = None,
                    headers: dict[str, str] | None = None) -> InProcessWebSocket:
    """A WebSocket connection to ``server`` (``headers``: more handshake headers); with
    ``token``, connected (command 1)."""
    protocol, transport = server.connect()
    extra = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    protocol.data_received(upgrade_request("t", extra_headers=extra))
    ws = InProcessWebSocket(protocol, transport)
    if token is not None:
        cmd_id = ws.command(connect={"token": token})
        await settle()
        assert "connect" in ws.reply(cmd_id), ws.messages()
    return ws
