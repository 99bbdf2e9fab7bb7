"""The HTTP/1.1 server: one asyncio protocol per TCP connection, parsed with httptools.

Routes: ``GET /connection/websocket`` (upgrade, then :mod:`tidings.transports.websocket`
takes over the same protocol object), ``POST /api`` and ``/api/<method>``, ``GET /health``.
No ASGI layer: after the upgrade, bytes go straight from ``data_received`` to the frame parser.
Requests on one connection are handled one at a time (reading pauses while one is served).
"""

from __future__ import annotations

import asyncio
import base64
import collections
import fnmatch
import logging
from typing import TYPE_CHECKING, cast
from urllib.parse import parse_qs, urlsplit

import httptools
import msgspec

from tidings.engine.base import EngineError
from tidings.errors import ProtocolError
from tidings.protocol import pbcodec, wsframe
from tidings.transports import sockjs
from tidings.transports.stream import StreamTransport, chunk
from tidings.transports.websocket import (
    ProtobufWebSocketTransport,
    UniWebSocketTransport,
    WebSocketTransport,
)

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
_STREAMS = {
    "/connection/http_stream": "http_stream",
    "/connection/sse": "sse",
    "/connection/uni_http_stream": "uni_http_stream",
    "/connection/uni_sse": "uni_sse",
}
_NO_CACHE = [
    ("Cache-Control", "private, no-cache, no-store, must-revalidate, max-age=0"),
    ("Pragma", "no-cache"),
    ("Expires", "0"),
    ("X-Accel-Buffering", "no"),
]


class EmulationRequest(msgspec.Struct):
    """``POST /emulation``: commands for the connection ``session`` of node ``node``."""

    session: str
    node: str
    data: str


class ServerState:
    """Shared by every connection of one server: the node, the API, open connections."""

    def __init__(self, node: Node, api: ApiHandler) -> None:
        self.node = node
        self.api = api
        self.connections: set[HttpProtocol] = set()
        self.accepting = True
        self.sockjs = sockjs.SockJSSessions(node)


class HttpProtocol(asyncio.Protocol):
    def __init__(self, state: ServerState) -> None:
        self.state = state
        self.node = state.node
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self.ws: WebSocketTransport | None = None
        self.stream: StreamTransport | None = None
        self.sockjs_stream: sockjs.SockJSSession | None = None
        self._url = b""
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._body_size = 0
        self._too_big = False
        self._task: asyncio.Task[None] | None = None
        self._queue: collections.deque[
            tuple[str, bytes, dict[str, str], list[bytes], bool, bool]
        ] = collections.deque()

    # ---------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport implements asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.state.connections.add(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        if self.ws is not None:
            self.ws.connection_lost()
        if self.stream is not None:
            self.stream.connection_lost()
        if self.sockjs_stream is not None and self.transport is not None:
            self.sockjs_stream.detach_stream(self.transport)
        if self._task is not None:
            self._task.cancel()

    def data_received(self, data: bytes) -> None:
        if self.ws is not None:
            self.ws.data_received(data)
            return
        if self.parser is None:
            return  # a streaming response owns the connection: the client has nothing to say
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
        elif self.stream is not None:
            self.stream.pause_writing()

    def resume_writing(self) -> None:
        if self.ws is not None:
            self.ws.resume_writing()
        elif self.stream is not None:
            self.stream.resume_writing()

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
        # Pipelined requests: httptools may parse several from one read before any is served;
        # each is queued with its own state and served in order.
        self._queue.append((
            self.parser.get_method().decode("ascii", "replace"), self._url, self._headers,
            self._body, self._too_big, self.parser.should_keep_alive(),
        ))
        if self._task is None:
            self.transport.pause_reading()
            self._task = self.node.loop.create_task(self._serve())

    # ---------------------------------------------------------------- requests

    async def _serve(self) -> None:
        try:
            while self._queue and self.parser is not None:
                method, self._url, self._headers, self._body, self._too_big, keep_alive = (
                    self._queue.popleft()
                )
                await self._handle_request(method, keep_alive)
        finally:
            self._task = None
            self._queue.clear()
            transport = self.transport
            if transport is not None and not transport.is_closing():
                # Also for a stream that took the connection over: reading is how its end
                # (the client going away) is noticed; its bytes are ignored.
                transport.resume_reading()

    async def _handle_request(self, method: str, keep_alive: bool) -> None:
        path = ""
        try:
            path = urlsplit(self._url.decode("latin-1")).path
            if self._too_big:
                self._respond(413, b"Payload Too Large\n", keep_alive=False)
                return
            if path == "/health" and self.node.config.health.enabled:
                self._respond(200, b"{}", content_type="application/json", keep_alive=keep_alive)
            elif path == "/api" or path.startswith("/api/"):
                await self._api(method, path, keep_alive)
            elif path in _STREAMS:
                self._stream(method, _STREAMS[path], keep_alive)
            elif path == "/emulation":
                await self._emulation(method, keep_alive)
            elif path.startswith("/connection/sockjs/"):
                await self._sockjs(method, path, keep_alive)
            elif path in ("/connection/websocket", "/connection/uni_websocket"):
                self._respond(426, b"WebSocket upgrade expected\n", keep_alive=keep_alive,
                              extra=[("Upgrade", "websocket")])
            else:
                self._respond(404, b"Not Found\n", keep_alive=keep_alive)
        except asyncio.CancelledError:
            raise
        except ValueError as exc:  # e.g. a URL urlsplit refuses
            log.info("bad request %s %r: %s", method, self._url[:200], exc)
            self._respond(400, b"Bad Request\n", keep_alive=False)
        except Exception:
            log.exception("error while handling %s %s", method, path)
            self._respond(500, b"Internal Server Error\n", keep_alive=False)

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

    # ---------------------------------------------------------------- streams and emulation

    def _cors(self) -> list[tuple[str, str]] | None:
        """CORS headers for a request with an allowed Origin; None if the origin is refused."""
        origin = self._headers.get("origin")
        if origin is None:
            return []
        if not self._origin_allowed(origin):
            log.info("request rejected: origin %r not allowed", origin)
            return None
        headers = [
            ("Access-Control-Allow-Origin", origin),
            ("Access-Control-Allow-Credentials", "true"),
            ("Vary", "Origin"),
        ]
        wanted = self._headers.get("access-control-request-headers")
        if wanted:
            headers.append(("Access-Control-Allow-Headers", wanted))
        return headers

    def _preflight_or_refuse(
        self, method: str, allowed: tuple[str, ...], keep_alive: bool
    ) -> list[tuple[str, str]] | None:
        """Answer OPTIONS, a refused origin or a wrong method; else return the CORS headers."""
        cors = self._cors()
        if cors is None:
            self._respond(403, b"Origin not allowed\n", keep_alive=keep_alive)
            return None
        if method == "OPTIONS":
            self._respond(204, b"", keep_alive=keep_alive, extra=[
                *cors,
                ("Access-Control-Allow-Methods", ", ".join((*allowed, "OPTIONS"))),
                ("Access-Control-Max-Age", "300"),
            ])
            return None
        if method not in allowed:
            self._respond(405, b"Method Not Allowed\n", keep_alive=keep_alive)
            return None
        return cors

    def _stream(self, method: str, name: str, keep_alive: bool) -> None:
        """Open an HTTP-streaming or SSE connection (bidirectional emulation or uni)."""
        cfg = getattr(self.node.config, name)
        if not cfg.enabled:
            self._respond(404, b"Not Found\n", keep_alive=keep_alive)
            return
        sse = name.endswith("sse")
        cors = self._preflight_or_refuse(method, ("GET", "POST") if sse else ("POST",),
                                         keep_alive)
        if cors is None:
            return
        if not self.state.accepting:
            self._respond(503, b"Shutting down\n", keep_alive=False)
            return
        body = b"".join(self._body)
        if method == "GET":
            values = self._query().get("cf_connect")
            if not values and not name.startswith("uni"):
                self._respond(400, b"cf_connect query parameter expected\n",
                              keep_alive=keep_alive)
                return
            body = values[0].encode() if values else b""
        if len(body) > cfg.max_request_body_size:
            self._respond(413, b"Payload Too Large\n", keep_alive=False)
            return
        if self._headers.get("content-type", "").startswith("application/octet-stream"):
            if name != "http_stream" or not pbcodec.available():
                self._respond(501, b"Protobuf is served on websocket and http_stream (with the "
                              b"protobuf extra)\n", keep_alive=keep_alive)
                return
            name = "http_stream_protobuf"
        transport = self.transport
        assert transport is not None
        content_type = (
            "text/event-stream; charset=utf-8" if sse
            else "application/octet-stream" if name.endswith("_protobuf")
            else "application/json"
        )
        lines = ["HTTP/1.1 200 OK", f"Content-Type: {content_type}",
                 "Transfer-Encoding: chunked", "Connection: keep-alive"]
        lines += [f"{k}: {v}" for k, v in (*_NO_CACHE, *cors)]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        transport.write(head + (chunk(b"\r\n") if sse else b""))
        self.stream = StreamTransport(self.node, transport, name)
        self.parser = None  # the connection belongs to the stream now
        self._headers = {}
        self._body = []
        if body.strip() or name.startswith("uni"):
            self.stream.client.feed(body)

    async def _emulation(self, method: str, keep_alive: bool) -> None:
        """``POST /emulation``: commands for an HTTP-streaming/SSE connection, on this node or
        (through the engine) on the node that holds it."""
        config = self.node.config
        if not (config.http_stream.enabled or config.sse.enabled):
            self._respond(404, b"Not Found\n", keep_alive=keep_alive)
            return
        cors = self._preflight_or_refuse(method, ("POST",), keep_alive)
        if cors is None:
            return
        body = b"".join(self._body)
        limit = max(config.http_stream.max_request_body_size, config.sse.max_request_body_size)
        if len(body) > limit:
            self._respond(413, b"Payload Too Large\n", keep_alive=False, extra=cors)
            return
        try:
            if self._headers.get("content-type", "").startswith("application/octet-stream"):
                if not pbcodec.available():
                    self._respond(501, b"Protobuf needs the protobuf extra\n",
                                  keep_alive=keep_alive, extra=cors)
                    return
                session, node_id, commands = pbcodec.decode_emulation_request(body)
            else:
                req = msgspec.json.decode(body, type=EmulationRequest)
                session, node_id, commands = req.session, req.node, req.data.encode()
        except (msgspec.DecodeError, msgspec.ValidationError, ProtocolError) as exc:
            log.info("malformed emulation request: %s", exc)
            self._respond(400, f"malformed emulation request: {exc}\n".encode(),
                          keep_alive=keep_alive, extra=cors)
            return
        node = self.node
        if node_id == node.id:
            if not node.emulation(session, commands):
                self._respond(404, b"unknown session\n", keep_alive=keep_alive, extra=cors)
                return
        elif node.cluster.is_live(node_id):
            try:
                await node.cluster.send(node_id, "emulation", {
                    "session": session, "b64data": base64.b64encode(commands).decode(),
                })
            except EngineError as exc:
                log.warning("emulation request for node %s not forwarded: %s", node_id, exc)
                self._respond(503, b"engine unavailable\n", keep_alive=keep_alive, extra=cors)
                return
        else:
            self._respond(404, b"unknown node\n", keep_alive=keep_alive, extra=cors)
            return
        self._respond(204, b"", keep_alive=keep_alive, extra=cors)

    # ---------------------------------------------------------------- SockJS

    async def _sockjs(self, method: str, path: str, keep_alive: bool) -> None:
        """``/connection/sockjs/info`` and ``/connection/sockjs/<server>/<session>/<kind>``."""
        cfg = self.node.config.sockjs
        parts = path[len("/connection/sockjs/"):].split("/")
        if not cfg.enabled:
            self._respond(404, b"Not Found\n", keep_alive=keep_alive)
            return
        if parts == ["info"]:
            cors = self._preflight_or_refuse(method, ("GET",), keep_alive)
            if cors is not None:
                self._respond(200, sockjs.info_body(), content_type="application/json",
                              keep_alive=keep_alive, extra=[*_NO_CACHE, *cors])
            return
        if (len(parts) != 3 or not all(parts[:2]) or "." in parts[0] or "." in parts[1]
                or parts[2] not in ("xhr", "xhr_send", "xhr_streaming")):
            self._respond(404, b"Not Found\n", keep_alive=keep_alive)
            return
        _, sid, kind = parts
        cors = self._preflight_or_refuse(method, ("POST",), keep_alive)
        if cors is None:
            return
        sessions = self.state.sockjs
        js = "application/javascript; charset=UTF-8"
        if kind == "xhr_send":
            session = sessions.by_id.get(sid)
            if session is None:
                self._respond(404, b"unknown session\n", keep_alive=keep_alive, extra=cors)
                return
            body = b"".join(self._body)
            if len(body) > cfg.max_request_body_size:
                self._respond(413, b"Payload Too Large\n", keep_alive=False, extra=cors)
                return
            try:
                messages = sockjs.decode_send(body)
            except ValueError as exc:
                self._respond(500, str(exc).encode(), keep_alive=keep_alive, extra=cors)
                return
            for message in messages:
                session.client.feed(message.encode())
            self._respond(204, b"", keep_alive=keep_alive, extra=cors)
            return
        if not self.state.accepting:
            self._respond(503, b"Shutting down\n", keep_alive=False)
            return
        session, opened = sessions.get_or_open(sid)
        if kind == "xhr":
            if opened:
                session.schedule_expiry()
                data = sockjs.OPEN
            else:
                data = await session.poll()
            self._respond(200, data, content_type=js, keep_alive=keep_alive,
                          extra=[*_NO_CACHE, *cors])
            return
        if session.busy():
            self._respond(200, sockjs.ANOTHER_CONNECTION, content_type=js,
                          keep_alive=keep_alive, extra=[*_NO_CACHE, *cors])
            return
        transport = self.transport
        assert transport is not None
        lines = ["HTTP/1.1 200 OK", f"Content-Type: {js}", "Transfer-Encoding: chunked",
                 "Connection: close"]
        lines += [f"{k}: {v}" for k, v in (*_NO_CACHE, *cors)]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        transport.write(head + chunk(sockjs.PRELUDE))
        self.sockjs_stream = session
        self.parser = None
        session.attach_stream(transport, opened)

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
        uni = path == "/connection/uni_websocket"
        if uni:
            if not self.node.config.uni_websocket.enabled:
                self._respond(404, b"Not Found\n", keep_alive=False)
                return
        elif path != "/connection/websocket" or self.node.config.websocket.disabled:
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
        protobuf = wants_protobuf and not uni
        if protobuf and not pbcodec.available():
            self._respond(501, b"Protobuf needs the protobuf extra: pip install "
                          b"'tidings[protobuf]'\n", keep_alive=False)
            return
        chosen = next((p for p in offered if p in _SUBPROTOCOLS), None)
        if protobuf:
            chosen = "centrifuge-protobuf" if "centrifuge-protobuf" in offered else None
        lines = [
            "HTTP/1.1 101 Switching Protocols",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Accept: {wsframe.accept_key(key)}",
        ]
        if chosen:
            lines.append(f"Sec-WebSocket-Protocol: {chosen}")
        self.transport.write(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        connect = query.get("cf_connect")
        if uni:
            self.ws = UniWebSocketTransport(self.node, self.transport)
        elif protobuf:
            self.ws = ProtobufWebSocketTransport(self.node, self.transport)
        else:
            self.ws = WebSocketTransport(self.node, self.transport)
        # The HTTP parser and request state are dead weight on a long-lived WebSocket: drop
        # them (measured: ~1 KiB per idle connection, docs/design.md).
        self.parser = None
        self._headers = {}
        self._url = b""
        self._body = []
        if uni and connect:
            self.ws.client.feed(connect[0].encode())
        if rest:
            self.ws.data_received(rest)

    # ---------------------------------------------------------------- shutdown

    def shutdown(self) -> None:
        """Close an idle HTTP connection; WebSocket and stream clients are closed by the node."""
        if (self.ws is None and self.stream is None and self.sockjs_stream is None
                and self._task is None and self.transport is not None):
            self.transport.close()
