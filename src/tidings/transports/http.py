"""The HTTP/1.1 server: one asyncio protocol per TCP connection, parsed with httptools.

Requests go to the endpoints of :mod:`tidings.transports.routes` (a table). After a WebSocket
upgrade the same protocol object hands its bytes straight to the frame parser (no ASGI layer);
after a streaming response starts, the connection belongs to the stream. Requests on one
connection are served one at a time, in order (reading pauses while one is served).

Limits, enforced while reading (docs/security.md): the request line and headers within
``http_server.max_header_bytes`` (414 / 431) and ``max_header_count`` (431); a body within its
endpoint's limit (413, decided from the headers, before any body byte is kept); the API key
checked before the body is read (401). A refused request is answered with ``Connection: close``;
the rest of what the peer sends is read and dropped for a moment (a lingering close, so the
answer is not lost to a TCP reset).

Timeouts, checked by one sweep a second over the connections that have a deadline:
``read_header_timeout`` from accept or from a request's first byte until its headers are in,
``read_timeout`` for the body (408 for a started request, a silent close for a connection
that never sent one), ``idle_timeout`` between keep-alive requests, ``write_timeout`` for a
response the peer does not read.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from typing import TYPE_CHECKING, cast

import httptools

from tidings.admin.endpoints import AdminState
from tidings.transports import eager, routes, sockjs
from tidings.transports.httpbase import Answer, Request, response_head

if TYPE_CHECKING:
    from tidings.api.handlers import ApiHandler
    from tidings.core.node import Node
    from tidings.transports.stream import StreamTransport
    from tidings.transports.websocket import WebSocketTransport

__all__ = ["HttpProtocol", "ServerState"]

log = logging.getLogger("tidings.http")

LINGER = 2.0  # seconds a refused request's remaining bytes are read and dropped
# What a deadline means when it passes (see the module docstring).
_NEW, _HEADERS, _BODY, _IDLE, _WRITE, _LINGER = range(6)


class ServerState:
    """Shared by every connection of one server: the node, the API, open connections."""

    def __init__(self, node: Node, api: ApiHandler) -> None:
        self.node = node
        self.api = api
        self.connections: set[HttpProtocol] = set()
        self.deadlines: dict[HttpProtocol, float] = {}
        self.accepting = True
        self.sockjs = sockjs.SockJSSessions(node)
        self.readiness = routes.Readiness(node.engine, node.spawn)
        self.admin = AdminState(node, api)  # admin.enabled: login throttle, live tails
        node.info_sources.append(lambda: {"num_sockjs_sessions": len(self.sockjs.by_id)})

    async def sweep_forever(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(1.0)
            self.sweep(loop.time())

    def sweep(self, now: float) -> None:
        for conn, deadline in list(self.deadlines.items()):
            if deadline <= now:
                conn.deadline_passed()


# What a connection taken over by a stream keeps instead of per-request state.
_NO_HEADERS: dict[str, str] = {}
_NO_BODY: list[bytes] = []


class HttpProtocol(asyncio.Protocol):
    # Slots: one of these lives as long as each WebSocket and stream connection (S3 memory).
    __slots__ = ("_body", "_body_limit", "_body_size", "_head_bytes", "_header_bytes",
                 "_headers", "_held", "_in_request", "_phase", "_queue", "_req", "_task",
                 "_url", "_writable",
                 "limits", "listener", "node", "parser", "sockjs_stream", "state", "status",
                 "stream", "transport", "ws")

    def __init__(self, state: ServerState, listener: int = routes.EVERY) -> None:
        self.state = state
        self.listener = listener  # the routes it serves: routes.PUBLIC, INTERNAL or EVERY
        self.status = 0  # of the last answer written by ``respond`` (for metrics)
        self.node = state.node
        self.limits = state.node.config.http_server
        self.transport: asyncio.Transport | None = None
        self.parser: httptools.HttpRequestParser | None = httptools.HttpRequestParser(self)
        self.ws: WebSocketTransport | None = None
        self.stream: StreamTransport | None = None
        self.sockjs_stream: sockjs.SockJSSession | None = None
        self._url = b""
        self._headers: dict[str, str] = {}
        self._req: Request | None = None  # the request whose headers are in
        self._header_bytes = 0
        self._head_bytes = 0  # bytes fed while a request's head is open (-1: it is complete)
        self._body: list[bytes] = []
        self._body_size = 0
        self._body_limit = 0
        self._in_request = False
        self._phase = _NEW
        self._writable: asyncio.Future[None] | None = None
        self._task: asyncio.Task[None] | None = None
        self._queue: collections.deque[Request] | None = None  # made by the first request
        self._held: list[bytes] | None = None  # answers written together (eager serving)

    # ---------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's TCPTransport implements asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.state.connections.add(self)
        self._arm(_NEW, self.limits.read_header_timeout)

    def connection_lost(self, exc: Exception | None) -> None:
        self.state.connections.discard(self)
        self.state.deadlines.pop(self, None)
        if self.ws is not None:
            self.ws.connection_lost()
        if self.stream is not None:
            self.stream.connection_lost()
        if self.sockjs_stream is not None and self.transport is not None:
            self.sockjs_stream.detach_stream(self.transport)
        if self._task is not None:
            self._task.cancel()
        # Break the reference cycles (parser <-> protocol <-> transport <-> WebSocket): freed
        # by reference counting now, not by a collector pass over every live object later.
        self.ws = self.stream = self.sockjs_stream = None
        self.parser = None
        self.transport = None

    def data_received(self, data: bytes) -> None:
        if self.ws is not None:
            self.ws.data_received(data)
            return
        if self.parser is None:
            return  # a stream owns the connection, or a refused request's rest is dropped
        if self._head_bytes >= 0:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
            # httptools hands a header over only once its value is complete, keeping the
            # pieces itself: an endless header line is caught by counting what it was fed.
            if self._head_bytes > self.limits.max_header_bytes + 1024:
                raise Answer(431, b"Request Header Fields Too Large\n")
        except Answer as answer:
            self._refuse(answer.status, answer.body)
        except httptools.HttpParserUpgrade as upgrade:
            offset = int(upgrade.args[0]) if upgrade.args else len(data)
            self._upgrade(data[offset:])
        except httptools.HttpParserCallbackError as exc:
            cause = exc.__context__
            if isinstance(cause, Answer):
                self._refuse(cause.status, cause.body)
            else:
                log.error("HTTP parser callback failed", exc_info=cause)
                self._refuse(500, b"Internal Server Error\n")
        except httptools.HttpParserError as exc:
            log.info("malformed HTTP request: %s", exc)
            self._refuse(400, b"Bad Request\n")
        else:
            if self._queue and self._task is None:
                self._serve_soon()  # every request this read completed, in order

    def pause_writing(self) -> None:
        if self.ws is not None:
            self.ws.pause_writing()
        elif self.stream is not None:
            self.stream.pause_writing()
        elif self._writable is None and self.transport is not None:
            self._writable = self.node.loop.create_future()
            self._arm(_WRITE, self.limits.write_timeout)

    def resume_writing(self) -> None:
        if self.ws is not None:
            self.ws.resume_writing()
        elif self.stream is not None:
            self.stream.resume_writing()
        elif self._writable is not None:
            if not self._writable.done():
                self._writable.set_result(None)
            self._writable = None
            if self._phase == _WRITE:
                self._disarm()

    # ---------------------------------------------------------------- deadlines

    def _arm(self, phase: int, seconds: float) -> None:
        self._phase = phase
        self.state.deadlines[self] = self.node.loop.time() + seconds

    def _disarm(self) -> None:
        self.state.deadlines.pop(self, None)

    def deadline_passed(self) -> None:
        """Called by the sweep when this connection's deadline is over."""
        transport = self.transport
        self._disarm()
        if transport is None or transport.is_closing():
            return
        phase = self._phase
        if phase == _WRITE:
            log.info("HTTP response not read within %ss: connection aborted",
                     self.limits.write_timeout)
            transport.abort()
        elif self._task is not None:
            return  # a request is being served; deadlines are set again afterwards
        elif phase in (_HEADERS, _BODY):
            log.info("HTTP request not received in time: 408")
            self._refuse(408, b"Request Timeout\n")
        else:  # a connection that never sent a request, an idle keep-alive one, a lingering
            transport.close()

    # ---------------------------------------------------------------- httptools callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._headers = {}
        self._header_bytes = 0
        self._body = []
        self._body_size = 0
        self._in_request = True
        if self._task is None:
            self._arm(_HEADERS, self.limits.read_header_timeout)

    def on_url(self, url: bytes) -> None:
        self._url += url
        if len(self._url) > self.limits.max_header_bytes:
            raise Answer(414, b"URI Too Long\n")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._header_bytes += len(name) + len(value) + 4
        headers = self._headers
        if (self._header_bytes + len(self._url) > self.limits.max_header_bytes
                or len(headers) >= self.limits.max_header_count):
            raise Answer(431, b"Request Header Fields Too Large\n")
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        headers[key] = f"{headers[key]}, {text}" if key in headers else text

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        req = self._req = Request(self.parser.get_method().decode("ascii", "replace"),
                                  self._url, self._headers,
                                  keep_alive=self.parser.should_keep_alive())
        try:
            path = req.path
        except ValueError:
            raise Answer(400, b"Bad Request\n") from None
        self._head_bytes = -1
        self._body_limit = routes.admit(self, req, path)  # raises Answer to refuse
        length = req.headers.get("content-length", "")
        if length.isdigit() and int(length) > self._body_limit:
            raise Answer(413, b"Payload Too Large\n")
        if self._task is None:
            self._arm(_BODY, self.limits.read_timeout)
            if req.headers.get("expect", "").lower() == "100-continue" and self.transport:
                self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, body: bytes) -> None:
        self._body_size += len(body)
        if self._body_size > self._body_limit:
            raise Answer(413, b"Payload Too Large\n")
        self._body.append(body)

    def on_message_complete(self) -> None:
        assert self.parser is not None
        if self.parser.should_upgrade():
            return  # handled by the HttpParserUpgrade exception
        self._in_request = False
        self._head_bytes = 0
        req, self._req = self._req, None
        assert req is not None
        req.body = b"".join(self._body)
        self._body = []
        # Pipelined requests: httptools may parse several from one read before any is served;
        # each is queued, and served in order once the read is parsed (data_received), or
        # after the one being served.
        self._queued().append(req)

    def _queued(self) -> collections.deque[Request]:
        if self._queue is None:
            self._queue = collections.deque()
        return self._queue

    # ---------------------------------------------------------------- serving

    def _serve_soon(self) -> None:
        self._disarm()
        if self._task is not None or self.transport is None:
            return
        queue = self._queued()
        if all(req.eager for req in queue):
            # Served now, without a task unless one has to wait (transports/eager.py); the
            # answers to a pipelined run go out in one write.
            self._held = []
            self._task = eager.start(self._serve(), self.node.loop, self._suspended)
            return
        self.transport.pause_reading()
        self._task = self.node.loop.create_task(self._serve())

    def _suspended(self) -> None:
        """An eagerly served request waits: what is held goes out, reading pauses."""
        self._write_held()
        if self.transport is not None:
            self.transport.pause_reading()

    def _write_held(self) -> None:
        held = self._held
        if held and self.transport is not None:
            self.transport.write(b"".join(held) if len(held) > 1 else held[0])
        if held:
            held.clear()

    def _refuse(self, status: int, body: bytes) -> None:
        """Stop parsing; answer ``status`` after the requests already queued, then close."""
        self.parser = None
        self._in_request = False
        self._queued().append(Request("", b"", {}, keep_alive=False, refused=(status, body)))
        self._serve_soon()

    async def _serve(self) -> None:
        queue = self._queued()
        try:
            while queue and self.transport is not None:
                req = queue.popleft()
                if req.refused is not None:
                    self._linger(*req.refused)
                    break
                await routes.serve(self, req)
                if self.parser is None or self.transport.is_closing():
                    break  # a stream took the connection over, or it was closed
                if self._writable is not None:
                    await self._writable  # the peer reads our answers before we read more
        finally:
            self._task = None
            queue.clear()
            self._write_held()
            self._held = None
            self._after_serving()

    def _after_serving(self) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        if self.parser is not None:
            if self._in_request:
                self._arm(_HEADERS, self.limits.read_header_timeout)
            else:
                self._arm(_IDLE, self.limits.idle_timeout)
        # Also for a stream that took the connection over: reading is how its end (the client
        # going away) is noticed; its bytes are ignored.
        transport.resume_reading()

    def _linger(self, status: int, body: bytes) -> None:
        """Answer a refused request, then drop what the peer still sends, for a moment."""
        self.respond(status, body, keep_alive=False, close=False)
        transport = self.transport
        assert transport is not None
        if transport.can_write_eof():
            transport.write_eof()
            self._arm(_LINGER, LINGER)
        else:
            transport.close()

    def respond(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = "text/plain; charset=utf-8",
        keep_alive: bool = True,
        extra: list[tuple[str, str]] | None = None,
        close: bool = True,
    ) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            return
        self.status = status
        headers: list[tuple[str, str]] = []
        if body or status not in (204, 101):
            headers += [("Content-Type", content_type), ("Content-Length", str(len(body)))]
        headers += extra or ()
        keep = keep_alive and self.state.accepting
        if not keep:
            headers.append(("Connection", "close"))
        data = response_head(status, headers) + body
        if self._held is not None and keep:
            self._held.append(data)
            return
        self._write_held()
        transport.write(data)
        if not keep and close:
            transport.close()

    def queued_requests(self) -> list[Request] | None:
        """The requests pipelined behind the one being served; None while one is half read
        (its bytes are in the parser: the connection cannot be handed to another worker)."""
        if self._in_request:
            return None
        return list(self._queue or ())

    def take_over(self) -> None:
        """A long-lived response (stream, upgrade) owns the connection from now on."""
        self.parser = None
        self._headers = _NO_HEADERS
        self._url = b""
        self._body = _NO_BODY
        self._queue = None
        self._disarm()

    # ---------------------------------------------------------------- websocket upgrade

    def _upgrade(self, rest: bytes) -> None:
        self._in_request = False
        req, self._req = self._req, None
        assert req is not None  # httptools completes the headers before it upgrades
        if self._task is not None or self._queue:
            self._refuse(400, b"Pipelined WebSocket upgrade\n")
            return
        self._disarm()
        try:
            routes.upgrade(self, req, rest)
        except ValueError:  # a URL urlsplit refuses
            self.respond(400, b"Bad Request\n", keep_alive=False)

    # ---------------------------------------------------------------- shutdown

    def shutdown(self) -> None:
        """Close an idle HTTP connection; WebSocket and stream clients are closed by the node."""
        if (self.ws is None and self.stream is None and self.sockjs_stream is None
                and self._task is None and self.transport is not None):
            self.transport.close()
