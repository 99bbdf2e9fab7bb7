"""The HTTP/1.1 server: one asyncio protocol per TCP connection, parsed with httptools.

Routes: ``GET /connection/websocket`` (upgrade, then :mod:`tidings.transports.websocket`
takes over the same protocol object), ``POST /api`` and ``/api/<method>``, ``GET /health``.
No ASGI layer: after the upgrade, bytes go straight from ``data_received`` to the frame parser.
Requests on one connection are handled one at a time (reading pauses while one is served).
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
from typing import TYPE_CHECKING, cast
from urllib.parse import parse_qs, urlsplit

import httptools

from tidings.protocol import wsframe
from tidings.transports.websocket import WebSocketTransport

if TYPE_CHECKING:
    from tidings.api.handlers import ApiHandler
    from tidings.core.node import Node

__all__ = ["HttpProtocol", "ServerState"]

log = logging.getLogger("tidings.http")

_REASONS = {
    101: "Switching Protocols", 200: "OK", 204: "No Content", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    413: "Payload Too Large", 416: "Range Not Satisfiable", 409: "Conflict",
    426: "Upgrade Required", 500: "Internal Server Error", 501: "Not Implemented",
    503: "Service Unavailable",
}
_SUBPROTOCOLS = ("centrifuge-json",)


class ServerState:
    """Shared by every connection of one server: the node, the API, open connections."""

    def __init__(self, node: Node, api: ApiHandler) -> None:
        self.node = node
        self.api = api
        self.connections: set[HttpProtocol] = set()
        self.accepting = True


class HttpProtocol(asyncio.Protocol):
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.node = state.node
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self.ws: WebSocketTransport | None = None
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._body_size = 0
        self._too_big = False
        self._task: asyncio.Task[None] | None = None

    # ---------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport implements asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.state.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        if self.ws is not None:
            self.ws.connection_lost()
        if self._task is not None:
            self._task.cancel()

    def data_received(self, data: bytes) -> None:
        if self.ws is not None:
            self.ws.data_received(data)
            return
        assert self.parser is not None
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            offset = int(upgrade.args[0]) if upgrade.args else len(data)
            self._upgrade(data[offset:])
        except httptools.HttpParserError as exc:
            log.info("malformed HTTP request: %s", exc)
            self._respond(400, b"Bad Request\n", keep_alive=False)

    def pause_writing(self) -> None:
        if self.ws is not None:
            self.ws.pause_writing()

    def resume_writing(self) -> None:
        if self.ws is not None:
            self.ws.resume_writing()

    # ---------------------------------------------------------------- httptools callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._body = []
        self._body_size = 0
        self._too_big = False

    def on_url(self, url: bytes) -> None:
        self._url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self._headers[key] = f"{self._headers[key]}, {text}" if key in self._headers else text

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self.node.config.http_api.max_body_size:
            self._too_big = True
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        assert self.parser is not None
        if self.parser.should_upgrade():
            return  # handled by the HttpParserUpgrade exception
        assert self.transport is not None
        self.transport.pause_reading()
        self._task = self.node.loop.create_task(self._handle_request())

    # ---------------------------------------------------------------- requests

    async def _handle_request(self) -> None:
        assert self.parser is not None
        method = self.parser.get_method().decode("ascii", "replace")
        keep_alive = self.parser.should_keep_alive()
        path = urlsplit(self._url.decode("latin-1")).path
        try:
            if self._too_big:
                self._respond(413, b"Payload Too Large\n", keep_alive=False)
                return
            if path == "/health" and self.node.config.health.enabled:
                self._respond(200, b"{}", content_type="application/json", keep_alive=keep_alive)
            elif path == "/api" or path.startswith("/api/"):
                await self._api(method, path, keep_alive)
            elif path == "/connection/websocket":
                self._respond(426, b"WebSocket upgrade expected\n", keep_alive=keep_alive,
                              extra=[("Upgrade", "websocket")])
            else:
                self._respond(404, b"Not Found\n", keep_alive=keep_alive)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("error while handling %s %s", method, path)
            self._respond(500, b"Internal Server Error\n", keep_alive=False)
        finally:
            self._task = None
            if self.transport is not None and not self.transport.is_closing():
                self.transport.resume_reading()

    async def _api(self, method: str, path: str, keep_alive: bool) -> None:
        api = self.state.api
        cfg = self.node.config.http_api
        if cfg.disabled:
            self._respond(404, b"Not Found\n", keep_alive=keep_alive)
            return
        if method != "POST":
            self._respond(405, b"Method Not Allowed\n", keep_alive=keep_alive)
            return
        if not cfg.insecure and not api.authorized(self._headers, self._query()):
            self._respond(401, b"", keep_alive=keep_alive)
            return
        body = b"".join(self._body)
        name = path[len("/api/") :] if path.startswith("/api/") else ""
        transport_mode = (
            cfg.error_mode == "transport"
            or self._headers.get("x-centrifugo-error-mode", "").lower() == "transport"
        )
        status, payload = await api.handle_http(name, body, transport_errors=transport_mode)
        self._respond(status, payload, content_type="application/json", keep_alive=keep_alive)

    def _query(self) -> dict[str, list[str]]:
        return parse_qs(urlsplit(self._url.decode("latin-1")).query)

    def _respond(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = "text/plain; charset=utf-8",
        keep_alive: bool = True,
        extra: list[tuple[str, str]] | None = None,
    ) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        lines = [f"HTTP/1.1 {status} {_REASONS.get(status, 'Unknown')}"]
        if body or status not in (204, 101):
            lines.append(f"Content-Type: {content_type}")
            lines.append(f"Content-Length: {len(body)}")
        for name, value in extra or ():
            lines.append(f"{name}: {value}")
        if not keep_alive or not self.state.accepting:
            lines.append("Connection: close")
        transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        if not keep_alive or not self.state.accepting:
            transport.close()

    # ---------------------------------------------------------------- websocket upgrade

    def _origin_allowed(self, origin: str | None) -> bool:
        allowed = self.node.config.client.allowed_origins
        if origin is None:
            return True
        if not allowed:
            return False
        origin = origin.lower()
        return any(fnmatch.fnmatchcase(origin, pattern.lower()) for pattern in allowed)

    def _upgrade(self, rest: bytes) -> None:
        assert self.transport is not None
        headers = self._headers
        path = urlsplit(self._url.decode("latin-1")).path
        if path != "/connection/websocket" or self.node.config.websocket.disabled:
            self._respond(404, b"Not Found\n", keep_alive=False)
            return
        if not self.state.accepting:
            self._respond(503, b"Shutting down\n", keep_alive=False)
            return
        key = headers.get("sec-websocket-key", "")
        if headers.get("upgrade", "").lower() != "websocket" or not key:
            self._respond(400, b"Bad WebSocket handshake\n", keep_alive=False)
            return
        if not self._origin_allowed(headers.get("origin")):
            log.info("websocket rejected: origin %r not allowed", headers.get("origin"))
            self._respond(403, b"Origin not allowed\n", keep_alive=False)
            return
        offered = [p.strip() for p in headers.get("sec-websocket-protocol", "").split(",")
                   if p.strip()]
        query = self._query()
        wants_protobuf = "centrifuge-protobuf" in offered or any(
            v == ["protobuf"] for k, v in query.items() if k in ("format", "cf_protocol")
        )
        if wants_protobuf and "centrifuge-json" not in offered:
            self._respond(501, b"Protobuf protocol is not supported yet; use JSON\n",
                          keep_alive=False)
            return
        chosen = next((p for p in offered if p in _SUBPROTOCOLS), None)
        lines = [
            "HTTP/1.1 101 Switching Protocols",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {wsframe.accept_key(key)}",
        ]
        if chosen:
            lines.append(f"Sec-WebSocket-Protocol: {chosen}")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        self.ws = WebSocketTransport(self.node, self.transport)
        # The HTTP parser and request state are dead weight on a long-lived WebSocket: drop
        # them (measured: ~1 KiB per idle connection, docs/design.md).
        self.parser = None
        self._headers = {}
        self._url = b""
        self._body = []
        if rest:
            self.ws.data_received(rest)

    # ---------------------------------------------------------------- shutdown

    def shutdown(self) -> None:
        """Close an idle HTTP connection; WebSocket clients are closed by the node."""
        if self.ws is None and self._task is None and self.transport is not None:
            self.transport.close()
