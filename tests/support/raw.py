"""Raw clients, for tests that must see or send what no SDK would.

- ``JsonWebSocket``: protocol v2 in JSON over a WebSocket of the ``websockets`` library
  (numbered commands, replies by id, pushes kept aside, close codes);
- ``JsonLines``: the JSON messages of a streaming HTTP response (HTTP-streaming, SSE);
- ``RawWebSocket`` and ``http_exchange`` over asyncio streams: hand-made WebSocket frames
  (masked, fragmented, flooded), partial or oversized HTTP requests.

Everything targets the test's own server on loopback."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import struct
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.support.timing import T

Json = dict[str, Any]

OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA


def client_frame(payload: bytes, opcode: int = OP_TEXT, *, fin: bool = True,
                 mask: bytes | None = None, masked: bool = True, rsv: int = 0,
                 length_bytes: int | None = None) -> bytes:
    """One client frame (RFC 6455 §5.2), masked with ``mask`` (random by default). Broken ones
    too: ``masked=False``, ``rsv`` bits, ``length_bytes`` forcing the 7-bit (0), 16-bit (2) or
    64-bit (8) length form."""
    n = len(payload)
    if length_bytes is None:
        length_bytes = 0 if n < 126 else 2 if n < 65536 else 8
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    mask_bit = 0x80 if masked else 0
    if length_bytes == 0:
        head = bytes((first, mask_bit | n))
    elif length_bytes == 2:
        head = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, n)
    if not masked:
        return head + payload
    key = mask if mask is not None else os.urandom(4)
    if n:
        stream = (key * (n // 4 + 1))[:n]
        payload = (int.from_bytes(payload, "little") ^ int.from_bytes(stream, "little")
                   ).to_bytes(n, "little")
    return head + key + payload


def upgrade_request(host: str, path: str = "/connection/websocket", extra_headers: str = ""
                    ) -> bytes:
    """A WebSocket handshake request (``host``: the Host header) with a random key."""
    key = base64.b64encode(os.urandom(16)).decode()
    return (f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            f"Sec-WebSocket-Version: 13\r\n{extra_headers}\r\n").encode()


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
        writer.write(upgrade_request(f"{host}:{port}", path, extra_headers))
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


class JsonWebSocket:
    """A bare WebSocket client speaking JSON protocol v2 (no SDK in between).

    Commands are numbered from 1. Messages read but not taken yet wait in ``inbox``; pushes
    read while waiting for a reply are kept in ``pushes``; server pings are answered."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.inbox: deque[Json] = deque()
        self.pushes: list[Json] = []
        self.next_id = 1

    async def send(self, frame: str | bytes) -> None:
        await self.ws.send(frame)

    async def commands(self, *commands: Json) -> list[Json]:
        """Send ``commands`` in one frame (a line each) with the next ids; their replies."""
        ids = list(range(self.next_id, self.next_id + len(commands)))
        self.next_id += len(commands)
        lines = [json.dumps({"id": i, **cmd}) for i, cmd in zip(ids, commands, strict=True)]
        await self.send("\n".join(lines))
        return [await self.reply(cmd_id) for cmd_id in ids]

    async def command(self, **command: Any) -> Json:
        """Send one command with the next id and return its reply (pushes are kept aside)."""
        [reply] = await self.commands(command)
        return reply

    async def connect(self, token: str) -> Json:
        """The connect command, which must succeed; its reply."""
        reply = await self.command(connect={"token": token})
        assert "connect" in reply and reply["connect"]["client"], reply
        return reply

    async def _receive(self, within: float = T) -> None:
        """Read one frame into ``inbox`` (a frame may carry several messages)."""
        frame = await asyncio.wait_for(self.ws.recv(), within)
        text = frame.decode() if isinstance(frame, bytes) else frame
        for line in text.strip().split("\n"):
            if not line.strip():
                continue
            msg = json.loads(line)
            assert isinstance(msg, dict), line
            if msg == {}:  # server ping: answer with a pong
                await self.ws.send("{}")
                continue
            self.inbox.append(msg)

    async def next_message(self, within: float = T) -> Json:
        while not self.inbox:
            await self._receive(within)
        return self.inbox.popleft()

    async def next(self, pred: Callable[[Json], bool], within: float = T) -> Json:
        """The next message for which ``pred`` holds; the ones before it are dropped."""
        async with asyncio.timeout(within):
            while True:
                message = await self.next_message()
                if pred(message):
                    return message

    async def reply(self, cmd_id: int) -> Json:
        while True:
            msg = await self.next_message()
            if "push" in msg:
                self.pushes.append(msg["push"])
                continue
            assert msg.get("id") == cmd_id, f"unexpected message {msg} while waiting for {cmd_id}"
            return msg

    async def push(self, kind: str, channel: str | None = None, *, data: Any = ...,
                   within: float = T) -> Json:
        """The first push of ``kind`` (e.g. "pub"), in ``channel`` and with ``data`` when given
        (kept, or the next to arrive), taken out of ``pushes``; only pushes may arrive
        meanwhile."""

        def matches(push: Json) -> bool:
            return (kind in push and (channel is None or push.get("channel") == channel)
                    and (data is ... or push[kind].get("data") == data))

        async def scan() -> Json:
            seen = 0
            while True:
                for i, push in enumerate(self.pushes[seen:], start=seen):
                    if matches(push):
                        return self.pushes.pop(i)
                seen = len(self.pushes)
                msg = await self.next_message()
                assert "push" in msg, f"unexpected non-push message {msg}"
                self.pushes.append(msg["push"])

        return await asyncio.wait_for(scan(), within)

    async def expect_close(self, within: float = T) -> tuple[int, str]:
        """Read until the connection is gone (websockets' ``recv`` raises only after the whole
        closing handshake); return the close code and reason the server sent. Other messages that
        arrive first are kept in ``self.inbox``."""

        async def drain() -> tuple[int, str]:
            try:
                while True:
                    await self._receive()
            except ConnectionClosed as exc:
                assert exc.rcvd is not None, f"server closed without a close frame: {exc!r}"
                return exc.rcvd.code, exc.rcvd.reason

        return await asyncio.wait_for(drain(), within)

    async def close(self) -> None:
        await self.ws.close()


async def open_json_websocket(url: str, **options: Any) -> JsonWebSocket:
    """A ``JsonWebSocket`` on ``url`` (``options`` go to ``websockets``' ``connect``)."""
    options.setdefault("open_timeout", T)
    return JsonWebSocket(await connect(url, **options))


@asynccontextmanager
async def json_websocket(url: str, *, token: str | None = None, **options: Any
                         ) -> AsyncIterator[JsonWebSocket]:
    """A ``JsonWebSocket``, closed at the end; with ``token``, connected (command 1) first."""
    ws = await open_json_websocket(url, **options)
    try:
        if token is not None:
            await ws.connect(token)
        yield ws
    finally:
        await ws.close()


class JsonLines:
    """JSON messages from a streaming response: one per line, or per SSE ``data:`` event."""

    def __init__(self, resp: aiohttp.ClientResponse, sse: bool) -> None:
        self.resp = resp
        self.sse = sse

    async def next(self) -> Json:
        async with asyncio.timeout(T):
            while True:
                raw = await self.resp.content.readline()
                if not raw:
                    raise EOFError("stream ended")
                line = raw.strip()
                if not line:
                    continue
                if self.sse:
                    assert line.startswith(b"data: "), line
                    line = line[len(b"data: "):]
                message: Json = json.loads(line)
                return message

    async def until(self, pred: Callable[[Json], bool]) -> Json:
        """The next message for which ``pred`` holds; the ones before it are dropped."""
        while True:
            message = await self.next()
            if pred(message):
                return message
