"""Tidings as an ASGI application: its endpoints inside Starlette, FastAPI, Django (ASGI) or
any ASGI server, beside the app's own routes::

    server = tidings.Server(config, listen=False)       # no listener of its own
    app.mount("/tidings", server.asgi())                # Starlette / FastAPI
    # start it with the app: `async with server:` in the app's lifespan

Every endpoint works as on the standalone listener — WebSocket (JSON and Protobuf), HTTP
streaming, SSE and ``/emulation``, SockJS, the unidirectional transports, the server API,
``/health`` — because this module does not reimplement them: it is a byte bridge. Each ASGI
connection becomes the HTTP/1.1 connection the standalone server would see (request head
written from the scope, body from ``receive``) on a :class:`Bridge` that stands in for the
socket; what the server writes back is read as HTTP (httptools) or as WebSocket frames and
passed to ``send``. Origin checks, limits, timeouts and error answers are therefore the same.

The price is the second framing per message (docs/python.md has the measured cost; the
standalone listener remains the fast path). Mounted under a prefix, the routes are those of the
standalone server below that prefix (``/tidings/connection/websocket``, ``/tidings/api/...``).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import logging
import os
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

from tidings.asgiwire import ResponseReader, WebSocketReader, client_frame
from tidings.transports.http import HttpProtocol
from tidings.transports.routes import EVERY

if TYPE_CHECKING:
    from tidings.embed import Server

__all__ = ["Bridge", "TidingsASGI"]

log = logging.getLogger("tidings.asgi")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

HIGH_WATER = 256 * 1024  # bytes queued for ``send`` before the server is asked to pause
LOW_WATER = 64 * 1024
_DROPPED = frozenset({b"connection", b"upgrade", b"keep-alive", b"transfer-encoding",
                      b"content-length", b"sec-websocket-key", b"sec-websocket-version",
                      b"sec-websocket-extensions", b"te", b"trailer", b"http2-settings"})


class TidingsASGI:
    """The ASGI application of a :class:`tidings.Server` (``server.asgi()``). As the top-level
    app it starts and stops the server with the ASGI lifespan; mounted inside another app,
    start the server in that app's lifespan."""

    def __init__(self, server: Server) -> None:
        self.server = server

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "lifespan":
            await self._lifespan(receive, send)
            return
        if kind not in ("http", "websocket"):
            return
        bridge = Bridge(HttpProtocol(self.server._server.state, EVERY), scope, receive, send)
        await bridge.run()

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            step = message["type"].removeprefix("lifespan.")
            try:
                if step == "startup":
                    await self.server.start()
                elif step == "shutdown":
                    await self.server.stop()
            except Exception as exc:  # reported to the ASGI server, which stops
                await send({"type": f"lifespan.{step}.failed", "message": str(exc)})
                return
            await send({"type": f"lifespan.{step}.complete"})
            if step == "shutdown":
                return


def request_head(scope: Scope, ws_key: str = "", path: bytes | None = None
                 ) -> tuple[bytes, bool]:
    """The HTTP/1.1 request head the standalone server would read for this scope, and
    whether its body is sent chunked (no Content-Length in the scope)."""
    if path is None:
        path = route_path(scope)
    query = scope.get("query_string", b"")
    target = path + (b"?" + query if query else b"")
    method = "GET" if ws_key else scope.get("method", "GET")
    lines = [f"{method} ".encode() + target + b" HTTP/1.1"]
    length = None
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            length = value
        if name not in _DROPPED:
            lines.append(name + b": " + value)
    chunked = False
    if ws_key:
        lines += [b"upgrade: websocket", b"connection: Upgrade", b"sec-websocket-version: 13",
                  b"sec-websocket-key: " + ws_key.encode()]
    else:
        if length is not None:
            lines.append(b"content-length: " + length)
        elif method not in ("GET", "HEAD", "OPTIONS"):
            lines.append(b"transfer-encoding: chunked")
            chunked = True
        lines.append(b"connection: close")
    return b"\r\n".join(lines) + b"\r\n\r\n", chunked


def route_path(scope: Scope) -> bytes:
    """The path below the mount point, as the client sent it (percent-encoded)."""
    root = scope.get("root_path", "")
    path: str = scope["path"]
    if root and path.startswith(root):
        path = path[len(root):] or "/"
    raw = scope.get("raw_path")
    if raw is not None:
        prefix = urllib.parse.quote(root).encode() if root else b""
        if raw.startswith(prefix) and urllib.parse.unquote_to_bytes(raw[len(prefix):]) == \
                path.encode():
            return bytes(raw[len(prefix):]) or b"/"
    return urllib.parse.quote(path).encode()


class Bridge:
    """One ASGI connection as the socket of an :class:`HttpProtocol`: what the protocol
    writes is queued and handed to ``send`` by a pump; what ``receive`` gives is fed to the
    protocol as the bytes a socket would carry. Implements the parts of ``asyncio.Transport``
    the protocol uses."""

    def __init__(self, protocol: HttpProtocol, scope: Scope, receive: Receive,
                 send: Send) -> None:
        self.protocol = protocol
        self.scope = scope
        self.receive = receive
        self.send = send
        self.websocket = scope["type"] == "websocket"
        self.path = route_path(scope)  # below the mount point, read once
        self._out: collections.deque[bytes] = collections.deque()
        self._queued = 0
        self._wake = asyncio.Event()
        self._readable = asyncio.Event()
        self._readable.set()
        self._closing = False
        self._aborted = False
        self._paused = False
        self._lost = False
        self._reader: WebSocketReader | ResponseReader = (
            WebSocketReader(send, merge=self.path != b"/connection/uni_websocket")
            if self.websocket else ResponseReader(send))

    # ---------------------------------------------------------------- the transport's side

    def write(self, data: bytes) -> None:
        if self._closing or not data:
            return
        self._out.append(bytes(data))
        self._queued += len(data)
        self._wake.set()
        if not self._paused and self._queued > HIGH_WATER:
            self._paused = True
            self.protocol.pause_writing()

    def get_write_buffer_size(self) -> int:
        return self._queued

    def is_closing(self) -> bool:
        return self._closing

    def close(self) -> None:
        self._closing = True
        self._wake.set()

    def abort(self) -> None:
        self._closing = self._aborted = True
        self._out.clear()
        self._queued = 0
        self._wake.set()

    def pause_reading(self) -> None:
        self._readable.clear()

    def resume_reading(self) -> None:
        self._readable.set()

    def can_write_eof(self) -> bool:
        return False

    def write_eof(self) -> None:  # pragma: no cover - can_write_eof() is False
        self.close()

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        if name == "peername":
            client = self.scope.get("client")
            return tuple(client) if client else default
        return default

    # ---------------------------------------------------------------- the ASGI side

    async def run(self) -> None:
        key = base64.b64encode(os.urandom(16)).decode() if self.websocket else ""
        head, chunked = request_head(self.scope, key, self.path)
        self.protocol.connection_made(self)  # type: ignore[arg-type]  # duck-typed transport
        pump = asyncio.create_task(self._pump())
        feeder = asyncio.create_task(self._feed(head, chunked))
        try:
            await pump
        finally:
            feeder.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await feeder
            self._connection_lost()

    async def _pump(self) -> None:
        """Hand what the server wrote to ``send``, in order, until the server closes."""
        while True:
            while self._out:  # all that is queued at once: one parse, merged messages
                out = self._out
                data = out.popleft() if len(out) == 1 else b"".join(out)
                out.clear()
                self._queued = 0
                if not self._aborted:
                    await self._send(self._reader.feed(data))
                if self._paused and self._queued < LOW_WATER:
                    self._paused = False
                    self.protocol.resume_writing()
            if self._closing:
                if not self._aborted:
                    await self._send(self._reader.finish())
                return
            self._wake.clear()
            await self._wake.wait()

    async def _send(self, sending: Awaitable[None]) -> None:
        """Pass on; a peer gone meanwhile (the ASGI server raises on send) is a lost
        connection, as a socket error would be."""
        try:
            await sending
        except Exception as exc:  # uvicorn: ClientDisconnect, websockets' ConnectionClosed
            log.debug("asgi peer gone while sending: %r", exc)
            self.abort()

    async def _feed(self, head: bytes, chunked: bool) -> None:
        """Give the server the request, then what the peer sends, until it goes away."""
        self.protocol.data_received(head)
        while True:
            if self.websocket:  # (an HTTP body is short; after it, only a disconnect comes)
                await self._readable.wait()
            message = await self.receive()
            kind = message["type"]
            if kind in ("http.disconnect", "websocket.disconnect"):
                self._connection_lost()
                self.abort()
                return
            data = _incoming(message, chunked)
            if data and not self._lost:
                self.protocol.data_received(data)

    def _connection_lost(self) -> None:
        if not self._lost:
            self._lost = True
            self.protocol.connection_lost(None)


def _incoming(message: Message, chunked: bool) -> bytes:
    """An ASGI message from the peer as the bytes of the HTTP connection."""
    kind = message["type"]
    if kind == "http.request":
        body: bytes = message.get("body", b"")
        more = message.get("more_body", False)
        if not chunked:
            return body
        out = b"%x\r\n%s\r\n" % (len(body), body) if body else b""
        return out + (b"" if more else b"0\r\n\r\n")
    if kind == "websocket.receive":
        text = message.get("text")
        if text is not None:
            return client_frame(text.encode(), 0x1)
        return client_frame(message.get("bytes") or b"", 0x2)
    return b""  # websocket.connect: the handshake is the request head
