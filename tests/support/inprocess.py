"""A node running inside the test's own event loop, with connections whose socket is a
``FakeTransport``: bytes go straight into the HTTP protocol object, everything the node writes
is kept. For fast tests of core behaviour and for fuzzing, where a server process per input
would be far too slow."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tests.conftest import BASE_CONFIG, deep_merge
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
