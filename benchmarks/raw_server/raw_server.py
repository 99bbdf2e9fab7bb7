"""Raw WebSocket fan-out baseline ("the ceiling") for the Tidings benchmarks.

No protocol, no JSON, no coalescing: a WebSocket client (any path) that sends a text frame
starting with ``sub`` is registered and answered with the text ``ok``; ``POST /publish`` builds
ONE unmasked text frame from the request body and writes that same bytes object to every
registered socket, then answers ``200 OK`` (Content-Length: 0, keep-alive).

Run: ``python raw_server.py --port 8200`` (prints ``listening on http://127.0.0.1:8200``; stops
on SIGTERM/SIGINT). Driven by ``benchmarks/loadgen/loadgen --init sub --ready ok``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import resource
import signal
from typing import cast

import uvloop

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 §1.3
OK_FRAME = b"\x81\x02ok"
PUBLISH_OK = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"
NOT_FOUND = b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
MAX_BUFFER = 1 << 20

# Registered subscribers; a dict is an insertion-ordered set with O(1) removal.
subscribers: dict[asyncio.Transport, None] = {}


def build_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One unmasked, final server frame (RFC 6455 §5.2)."""
    n = len(payload)
    if n < 126:
        head = bytes((0x80 | opcode, n))
    elif n < 65536:
        head = bytes((0x80 | opcode, 126)) + n.to_bytes(2, "big")
    else:
        head = bytes((0x80 | opcode, 127)) + n.to_bytes(8, "big")
    return head + payload


def unmask(data: bytes, mask: bytes) -> bytes:
    n = len(data)
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "big")
    return (int.from_bytes(data, "big") ^ key).to_bytes(n, "big")


class RawProtocol(asyncio.Protocol):
    """HTTP/1.1 (upgrade or POST /publish) until upgraded, then WebSocket frames."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.websocket = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def connection_lost(self, exc: Exception | None) -> None:
        if self.transport is not None:
            subscribers.pop(self.transport, None)

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.websocket:
            self.read_frames()
        else:
            self.read_http()
        if len(self.buf) > MAX_BUFFER and self.transport is not None:
            self.transport.abort()

    def read_http(self) -> None:
        assert self.transport is not None
        while not self.websocket:
            end = self.buf.find(b"\r\n\r\n")
            if end < 0:
                return
            lines = self.buf[:end].decode("latin-1").split("\r\n")
            method, path, _ = [*lines[0].split(" ", 2), "", ""][:3]
            headers = {}
            for line in lines[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if headers.get("upgrade", "").lower() == "websocket":
                del self.buf[: end + 4]
                self.upgrade(headers)
                self.read_frames()
                return
            length = int(headers.get("content-length", "0") or 0)
            if len(self.buf) < end + 4 + length:
                return
            body = bytes(self.buf[end + 4 : end + 4 + length])
            del self.buf[: end + 4 + length]
            if method == "POST" and path == "/publish":
                frame = build_frame(body)  # ONE bytes object, shared by every write
                for transport in list(subscribers):
                    transport.write(frame)
                self.transport.write(PUBLISH_OK)
            else:
                self.transport.write(NOT_FOUND)

    def upgrade(self, headers: dict[str, str]) -> None:
        assert self.transport is not None
        key = headers.get("sec-websocket-key", "").encode()
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        response = (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + accept + b"\r\n"
        )
        offered = headers.get("sec-websocket-protocol")
        if offered:  # echo the first subprotocol offered
            protocol = offered.split(",")[0].strip().encode()
            response += b"Sec-WebSocket-Protocol: " + protocol + b"\r\n"
        self.transport.write(response + b"\r\n")
        self.websocket = True

    def read_frames(self) -> None:
        assert self.transport is not None
        buf = self.buf
        while len(buf) >= 2:
            opcode, length, offset = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if length == 126:
                if len(buf) < 4:
                    return
                length, offset = int.from_bytes(buf[2:4], "big"), 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length, offset = int.from_bytes(buf[2:10], "big"), 10
            masked = buf[1] & 0x80
            if masked:
                offset += 4
            if len(buf) < offset + length:
                return
            payload = bytes(buf[offset : offset + length])
            if masked:
                payload = unmask(payload, bytes(buf[offset - 4 : offset]))
            del buf[: offset + length]
            if opcode == 0x1 and payload.startswith(b"sub"):
                subscribers[self.transport] = None
                self.transport.write(OK_FRAME)
            elif opcode == 0x9:
                self.transport.write(build_frame(payload, 0xA))
            elif opcode == 0x8:
                self.transport.write(build_frame(payload[:2], 0x8))
                self.transport.close()
                return


def raise_nofile() -> None:
    hard = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    try:  # root may raise the hard limit as well
        resource.setrlimit(resource.RLIMIT_NOFILE, (max(hard, 200_000), max(hard, 200_000)))
    except (ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


async def serve(host: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(RawProtocol, host, port, backlog=65535)
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    bound = server.sockets[0].getsockname()[1]
    print(f"listening on http://{host}:{bound}", flush=True)
    await stop.wait()
    server.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8200, help="0 picks a free port")
    args = parser.parse_args()
    raise_nofile()
    uvloop.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
