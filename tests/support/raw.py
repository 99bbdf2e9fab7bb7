"""Raw clients over asyncio streams, for tests that must send what no SDK would: hand-made
WebSocket frames (masked, fragmented, flooded), partial or oversized HTTP requests.

Everything targets the test's own server on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from tests.conftest import TIMEOUT_FACTOR

T = 5.0 * TIMEOUT_FACTOR

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def client_frame(payload: bytes, opcode: int = OP_TEXT, *, fin: bool = True,
                 mask: bytes | None = None) -> bytes:
    """One masked client frame (RFC 6455 §5.2)."""
    key = mask if mask is not None else os.urandom(4)
    n = len(payload)
    first = (0x80 if fin else 0) | opcode
    if n < 126:
        head = bytes((first, 0x80 | n))
    elif n < 65536:
        head = struct.pack("!BBH", first, 0x80 | 126, n)
    else:
        head = struct.pack("!BBQ", first, 0x80 | 127, n)
    if n:
        stream = (key * (n // 4 + 1))[:n]
        payload = (int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")
                   ).to_bytes(n, "little")
    return head + key + payload


async def http_exchange(host: str, port: int, request: bytes, *, within: float = T
                        ) -> tuple[int, dict[str, str], bytes]:
    """Send raw request bytes on a new connection; return the first response (status,
    lower-cased headers, body by Content-Length)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(read_response(reader), within)
    finally:
        writer.close()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers: dict[str, str] = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    length = int(headers.get("content-length", "0"))
    body = await reader.readexactly(length) if length else b""
    return status, headers, body


class RawWebSocket:
    """A WebSocket client that sends exactly the bytes a test gives it."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def open(cls, host: str, port: int, path: str = "/connection/websocket",
                   extra_headers: str = "") -> RawWebSocket:
        reader, writer = await asyncio.open_connection(host, port)
        key = base64.b64encode(os.urandom(16)).decode()
        writer.write((f"GET {path} HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\n"
                      f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                      f"Sec-WebSocket-Version: 13\r\n{extra_headers}\r\n").encode())
        head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), T)
        assert head.startswith(b"HTTP/1.1 101"), head
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def send_json(self, message: dict[str, Any]) -> None:
        await self.send(client_frame(json.dumps(message).encode()))

    async def frame(self, within: float = T) -> tuple[int, bytes]:
        """The next server frame (server frames are never masked or fragmented)."""
        async def read() -> tuple[int, bytes]:
            b0, b1 = await self.reader.readexactly(2)
            n = b1 & 0x7F
            if n == 126:
                n = struct.unpack("!H", await self.reader.readexactly(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", await self.reader.readexactly(8))[0]
            return b0 & 0x0F, await self.reader.readexactly(n)
        return await asyncio.wait_for(read(), within)

    async def reply(self, cmd_id: int, within: float = T) -> dict[str, Any]:
        """The reply to command ``cmd_id`` (pushes and pings before it are skipped; pings are
        answered)."""
        while True:
            opcode, payload = await self.frame(within)
            assert opcode == OP_TEXT, (opcode, payload[:200])
            for line in payload.split(b"\n"):
                message = json.loads(line)
                if message == {}:
                    await self.send(client_frame(b"{}"))
                elif message.get("id") == cmd_id:
                    assert isinstance(message, dict)
                    return message

    async def close_code(self, within: float = T) -> int:
        """Read until the server's close frame; return its code."""
        while True:
            opcode, payload = await self.frame(within)
            if opcode == OP_CLOSE:
                code: int = struct.unpack("!H", payload[:2])[0]
                return code

    def close(self) -> None:
        self.writer.close()


@asynccontextmanager
async def raw_websocket(host: str, port: int, path: str = "/connection/websocket",
                        token: str | None = None) -> AsyncIterator[RawWebSocket]:
    """A RawWebSocket, closed at the end; with ``token``, connected (command id 1) first."""
    ws = await RawWebSocket.open(host, port, path)
    try:
        if token is not None:
            await ws.send_json({"id": 1, "connect": {"token": token}})
            reply = await ws.reply(1)
            assert "connect" in reply, reply
        yield ws
    finally:
        ws.close()
