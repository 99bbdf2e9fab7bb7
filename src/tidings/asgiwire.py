"""The wire side of the ASGI bridge (``tidings.asgi``): client frames written for the server's
parser, and what the server writes read back as ASGI messages: an HTTP response (status,
headers, a body that streams) or a WebSocket's handshake answer, frames and close."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httptools

__all__ = ["ResponseReader", "WebSocketReader", "client_frame", "merged"]

Message = MutableMapping[str, Any]
Send = Callable[[Message], Awaitable[None]]


def client_frame(payload: bytes, opcode: int) -> bytes:
    """A client frame (RFC 6455 §5.2) with an all-zero mask: masking is mandatory from a
    client, and a zero key leaves the payload as it is (no copy to XOR here)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, 0x80 | n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 0x80 | 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 0x80 | 127)) + n.to_bytes(8, "big")
    return head + b"\0\0\0\0" + payload


class ResponseReader:
    """The server's HTTP response, parsed (httptools) and passed on as ASGI messages: the
    status and headers once, then the body as it comes (streams stay streams)."""

    def __init__(self, send: Send) -> None:
        self.send = send
        self.parser = httptools.HttpResponseParser(self)
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.started = False
        self.done = False

    # httptools callbacks
    def on_header(self, name: bytes, value: bytes) -> None:
        if name.lower() not in (b"connection", b"transfer-encoding", b"keep-alive"):
            self.headers.append((name.lower(), value))

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        self.done = True

    async def feed(self, data: bytes) -> None:
        if self.done:
            return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            self.done = True
        await self._flush()

    async def _flush(self) -> None:
        if not self.started and self.parser.get_status_code():
            if not self.headers and not self.body and not self.done:
                return  # the status line came alone: wait for the headers
            self.started = True
            await self.send({"type": "http.response.start",
                             "status": self.parser.get_status_code(), "headers": self.headers})
        if self.started and self.body:
            body, self.body = b"".join(self.body), []
            await self.send({"type": "http.response.body", "body": body, "more_body": True})

    async def finish(self) -> None:
        if not self.started:
            if not self.parser.get_status_code():
                return  # nothing was written: the ASGI server answers 500 itself
            self.started = True
            await self.send({"type": "http.response.start",
                             "status": self.parser.get_status_code(), "headers": self.headers})
        body, self.body = b"".join(self.body), []
        await self.send({"type": "http.response.body", "body": body, "more_body": False})


class WebSocketReader:
    """The server's side of a WebSocket: the 101 answer becomes ``websocket.accept`` (any
    other answer a close), then the server's frames ``websocket.send`` messages or the close.

    With ``merge``, data frames written together go out as one message: JSON messages joined
    with newlines, Protobuf ones concatenated (both are how the client protocol batches several
    messages in one frame, PROTOCOL.md §1), so a burst costs the ASGI server one send per
    connection instead of one per message. The unidirectional WebSocket sends one message per
    frame (its clients have no SDK to split them): no merging there."""

    def __init__(self, send: Send, *, merge: bool = True) -> None:
        self.send = send
        self.merge = merge
        self.buf = bytearray()
        self.accepted = False
        self.closed = False

    async def feed(self, data: bytes) -> None:
        if self.closed:
            return
        self.buf += data
        if not self.accepted and not await self._handshake():
            return
        frames = self._frames()
        if self.merge and len(frames) > 1:
            frames = merged(frames)
        for opcode, payload in frames:
            await self._deliver(opcode, payload)
            if self.closed:
                return

    async def _handshake(self) -> bool:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return False
        head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        del self.buf[:end + 4]
        status = head[0].split(" ", 2)
        if len(status) < 2 or status[1] != "101":
            self.closed = True
            code = 1013 if len(status) > 1 and status[1] == "503" else 1008
            await self.send({"type": "websocket.close", "code": code})
            return False
        message: Message = {"type": "websocket.accept"}
        for line in head[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "sec-websocket-protocol":
                message["subprotocol"] = value.strip()
        await self.send(message)
        self.accepted = True
        return True

    def _frames(self) -> list[tuple[int, bytes]]:
        """Complete server frames (unmasked, never fragmented by Tidings) off the buffer."""
        frames: list[tuple[int, bytes]] = []
        buf = self.buf
        pos = 0
        while len(buf) - pos >= 2:
            n = buf[pos + 1] & 0x7F
            start = pos + 2
            if n == 126:
                start = pos + 4
                n = int.from_bytes(buf[pos + 2:start], "big")
            elif n == 127:
                start = pos + 10
                n = int.from_bytes(buf[pos + 2:start], "big")
            if len(buf) < start + n:
                break
            frames.append((buf[pos] & 0x0F, bytes(buf[start:start + n])))
            pos = start + n
        del buf[:pos]
        return frames

    async def _deliver(self, opcode: int, payload: bytes) -> None:
        if opcode == 0x1:
            await self.send({"type": "websocket.send", "text": payload.decode()})
        elif opcode == 0x2:
            await self.send({"type": "websocket.send", "bytes": payload})
        elif opcode == 0x8:
            self.closed = True
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1000
            await self.send({"type": "websocket.close", "code": code,
                             "reason": payload[2:].decode(errors="replace")})
        # ping/pong frames of the server's own (none today) stay on this side

    async def finish(self) -> None:
        if not self.closed:
            self.closed = True
            if self.accepted:
                await self.send({"type": "websocket.close", "code": 1000})
            else:
                await self.send({"type": "websocket.close", "code": 1011})


def merged(frames: list[tuple[int, bytes]]) -> list[tuple[int, bytes]]:
    """Runs of text frames joined with newlines, runs of binary frames concatenated; any
    other frame (the close) on its own."""
    out: list[tuple[int, bytes]] = []
    run: list[bytes] = []
    kind = -1
    for opcode, payload in frames:
        if opcode != kind and run:
            out.append((kind, (b"\n" if kind == 0x1 else b"").join(run)))
            run = []
        if opcode in (0x1, 0x2):
            run.append(payload)
            kind = opcode
        else:
            out.append((opcode, payload))
            kind = -1
    if run:
        out.append((kind, (b"\n" if kind == 0x1 else b"").join(run)))
    return out
