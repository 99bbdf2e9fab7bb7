"""SockJS, the long-polling fallback centrifuge-js still supports (with the npm ``sockjs-client``),
served at ``/connection/sockjs`` as Centrifugo v5 did (``sockjs.enabled``).

Implemented SockJS transports: ``xhr`` (polling), ``xhr_streaming`` and ``xhr_send``, plus
``/info``. A session is a :class:`SockJSSession` (the client's transport): writes queue up
until a poll takes them (``a[...]``) or go straight down an attached streaming response. A
session nobody polls for ``DISCONNECT_DELAY`` seconds is gone, like its client. Frames (from the
SockJS protocol): ``o`` open, ``h`` heartbeat, ``a[<json strings>]`` messages, ``c[code,
reason]`` close. Each SockJS message carries what a WebSocket frame would: replies and pushes
joined by ``\\n``.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

import msgspec

from tidings.errors import Disconnect
from tidings.protocol import codec
from tidings.protocol.codecs import Codec
from tidings.protocol.kinds import Kind
from tidings.transports.httpbase import NO_CACHE, Answer, Request, door, preflight
from tidings.transports.stream import chunk

if TYPE_CHECKING:
    from tidings.core.client import Client
    from tidings.core.node import Node
    from tidings.transports.handoff import Handoff
    from tidings.transports.http import HttpProtocol

__all__ = ["SockJSSession", "SockJSSessions", "endpoint"]

log = logging.getLogger("tidings.sockjs")

HEARTBEAT = 25.0
DISCONNECT_DELAY = 5.0
STREAM_LIMIT = 128 * 1024  # bytes per xhr_streaming response, then the client opens another
PRELUDE = b"h" * 2048 + b"\n"  # makes old browsers hand XHR streaming data over
OPEN = b"o\n"
HEARTBEAT_FRAME = b"h\n"
ANOTHER_CONNECTION = b'c[2010,"Another connection still open"]\n'

_encoder = msgspec.json.Encoder()
_messages = msgspec.json.Decoder(list[str])


def _frame(payload: bytes) -> bytes:
    """One SockJS message: the payload as a JSON string."""
    return _encoder.encode(payload.decode("utf-8", "replace"))


def decode_send(body: bytes) -> list[str]:
    """An ``xhr_send`` body: a JSON array of strings. Raises ValueError."""
    if not body:
        raise ValueError("Payload expected.")
    try:
        return _messages.decode(body)
    except (msgspec.DecodeError, msgspec.ValidationError, RecursionError):
        raise ValueError("Broken JSON encoding.") from None


class SockJSSession:
    """One SockJS session: the transport of one client."""

    kind = Kind.SOCKJS
    name = "sockjs"
    bidirectional = True
    codec: Codec = codec
    separator = b"\n"
    emulation = False
    frame = staticmethod(_frame)

    def __init__(self, sessions: SockJSSessions, sid: str,
                 headers: Mapping[str, str] | None = None) -> None:
        self.sessions = sessions
        self.id = sid
        self.outbox: list[bytes] = []
        self.outbox_bytes = 0
        self.waiter: asyncio.Future[None] | None = None
        self.stream: asyncio.Transport | None = None
        self.stream_bytes = 0
        self.close_frame: bytes | None = None
        self._expiry: asyncio.TimerHandle | None = None
        self.write: Callable[[bytes], None] = self._write
        self.client: Client = sessions.node.new_client(self, headers)

    # ---------------------------------------------------------------- Transport interface

    def _write(self, data: bytes) -> None:
        if self.stream is not None:
            self._stream_write(b"a[" + data + b"]\n")
            return
        self.outbox.append(data)
        self.outbox_bytes += len(data)
        self._wake()

    def pause_reading(self) -> None:
        """Messages come through xhr_send POSTs (refused when the client is full)."""

    def resume_reading(self) -> None:
        pass

    def buffer_size(self) -> int:
        if self.stream is not None:
            return self.stream.get_write_buffer_size()
        return self.outbox_bytes

    def close(self, disconnect: Disconnect) -> None:
        if self.close_frame is not None:
            return
        self.close_frame = b"c[%d,%s]\n" % (disconnect.code, _encoder.encode(disconnect.reason))
        if self.stream is not None:
            self._stream_write(self.close_frame)
            self._end_stream()
        self._wake()
        # Kept a while so a poll still learns why; then forgotten.
        self.schedule_expiry()

    # ---------------------------------------------------------------- receiving requests

    def busy(self) -> bool:
        return self.waiter is not None or self.stream is not None

    async def poll(self) -> bytes:
        """An ``xhr`` request: queued messages, or wait for some (heartbeat after a while)."""
        if self.busy():
            return ANOTHER_CONNECTION
        self._cancel_expiry()
        try:
            if not self.outbox and self.close_frame is None:
                self.waiter = asyncio.get_running_loop().create_future()
                try:
                    await asyncio.wait_for(asyncio.shield(self.waiter), HEARTBEAT)
                except TimeoutError:
                    return HEARTBEAT_FRAME
                finally:
                    self.waiter = None
            if self.outbox:
                return self._take()
            return self.close_frame or HEARTBEAT_FRAME
        finally:
            self.schedule_expiry()

    def attach_stream(self, transport: asyncio.Transport, opened: bool) -> None:
        """An ``xhr_streaming`` response (headers and prelude written): messages go down it."""
        self._cancel_expiry()
        self.stream = transport
        self.stream_bytes = 0
        if opened:
            self._stream_write(OPEN)
        if self.outbox:
            self._stream_write(self._take())
        if self.close_frame is not None:
            self._stream_write(self.close_frame)
            self._end_stream()

    def detach_stream(self, transport: asyncio.Transport) -> None:
        """The streaming response's connection is gone."""
        if self.stream is transport:
            self.stream = None
            self.schedule_expiry()

    # ---------------------------------------------------------------- internals

    def _take(self) -> bytes:
        data = b"a[" + b",".join(self.outbox) + b"]\n"
        self.outbox = []
        self.outbox_bytes = 0
        return data

    def _wake(self) -> None:
        if self.waiter is not None and not self.waiter.done():
            self.waiter.set_result(None)

    def _stream_write(self, frame: bytes) -> None:
        stream = self.stream
        if stream is None or stream.is_closing():
            return
        stream.write(chunk(frame))
        self.stream_bytes += len(frame)
        if self.stream_bytes > STREAM_LIMIT and self.close_frame is None:
            self._end_stream()  # the client opens the next streaming request

    def _end_stream(self) -> None:
        stream, self.stream = self.stream, None
        if stream is not None and not stream.is_closing():
            stream.write(b"0\r\n\r\n")
            stream.close()  # the response said Connection: close
        if self.close_frame is None:
            self.schedule_expiry()

    def _cancel_expiry(self) -> None:
        if self._expiry is not None:
            self._expiry.cancel()
            self._expiry = None

    def schedule_expiry(self) -> None:
        self._cancel_expiry()
        if not self.busy():
            loop = asyncio.get_running_loop()
            self._expiry = loop.call_later(DISCONNECT_DELAY, self._expire)

    def _expire(self) -> None:
        self._expiry = None
        if self.busy():
            return
        self.sessions.forget(self.id)
        if self.close_frame is None:
            log.debug("sockjs session %s: nobody polled for %ss", self.id, DISCONNECT_DELAY)
            self.client.connection_lost()


class SockJSSessions:
    """The node's SockJS sessions by id."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.by_id: dict[str, SockJSSession] = {}
        # With workers: requests of sessions another worker owns go there (transports/handoff).
        self.handoff: Handoff | None = None

    def get_or_open(self, sid: str, headers: Mapping[str, str] | None = None
                    ) -> tuple[SockJSSession, bool]:
        """The session ``sid``, opened (with the opening request's ``headers``) if new."""
        session = self.by_id.get(sid)
        if session is not None:
            return session, False
        session = self.by_id[sid] = SockJSSession(self, sid, headers)
        return session, True

    def forget(self, sid: str) -> None:
        self.by_id.pop(sid, None)

    def close_all(self, disconnect: Disconnect) -> None:
        for session in list(self.by_id.values()):
            session.client.close(disconnect)


def info_body() -> bytes:
    return _encoder.encode({
        "websocket": False,
        "cookie_needed": False,
        "origins": ["*:*"],
        "entropy": secrets.randbits(31),
    })


_KINDS = ("xhr", "xhr_send", "xhr_streaming")
_JS = "application/javascript; charset=UTF-8"


async def endpoint(conn: HttpProtocol, req: Request) -> None:
    """``/connection/sockjs/info`` and ``/connection/sockjs/<server>/<session>/<kind>``."""
    if not conn.node.config.sockjs.enabled:
        raise Answer(404, b"Not Found\n")
    parts = req.path[len("/connection/sockjs/"):].split("/")
    if parts == ["info"]:
        cors = preflight(conn, req, ("GET",))
        conn.respond(200, info_body(), content_type="application/json",
                     keep_alive=req.keep_alive, extra=[*NO_CACHE, *cors])
        return
    if (len(parts) != 3 or not all(parts[:2]) or "." in parts[0] or "." in parts[1]
            or parts[2] not in _KINDS):
        raise Answer(404, b"Not Found\n")
    _, sid, kind = parts
    cors = preflight(conn, req, ("POST",))
    sessions = conn.state.sockjs
    if sessions.handoff is not None and sessions.handoff.hand_over(conn, req, sid):
        return  # the worker that owns the session serves this connection now
    await _session_request(conn, req, sid, kind, cors)


async def _session_request(conn: HttpProtocol, req: Request, sid: str, kind: str,
                           cors: list[tuple[str, str]]) -> None:
    """``xhr``, ``xhr_send`` or ``xhr_streaming`` for session ``sid`` of this node."""
    sessions = conn.state.sockjs
    if kind == "xhr_send":
        session = sessions.by_id.get(sid)
        if session is None:
            raise Answer(404, b"unknown session\n", extra=cors)
        _send(conn, req, session, cors)
        return
    if sid not in sessions.by_id:
        door(conn)  # a new session is a new connection
    session, opened = sessions.get_or_open(sid, req.headers)
    if kind == "xhr":
        data = OPEN if opened else await session.poll()
        if opened:
            session.schedule_expiry()
        conn.respond(200, data, content_type=_JS, keep_alive=req.keep_alive,
                     extra=[*NO_CACHE, *cors])
    elif session.busy():
        conn.respond(200, ANOTHER_CONNECTION, content_type=_JS, keep_alive=req.keep_alive,
                     extra=[*NO_CACHE, *cors])
    else:
        _stream(conn, session, opened, cors)


def _stream(conn: HttpProtocol, session: SockJSSession, opened: bool,
            cors: list[tuple[str, str]]) -> None:
    """``xhr_streaming``: the connection becomes the session's stream."""
    transport = conn.transport
    assert transport is not None
    lines = ["HTTP/1.1 200 OK", f"Content-Type: {_JS}", "Transfer-Encoding: chunked",
             "Connection: close"]
    lines += [f"{k}: {v}" for k, v in (*NO_CACHE, *cors)]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    transport.write(head + chunk(PRELUDE))
    conn.sockjs_stream = session
    conn.take_over()
    session.attach_stream(transport, opened)


def _send(conn: HttpProtocol, req: Request, session: SockJSSession,
          cors: list[tuple[str, str]]) -> None:
    """``xhr_send``: the client's messages (a JSON array of strings)."""
    try:
        messages = decode_send(req.body)
    except ValueError as exc:
        conn.respond(500, str(exc).encode(), keep_alive=req.keep_alive, extra=cors)
        return
    for message in messages:
        if not session.client.feed(message.encode()):
            conn.respond(429, b"too many messages waiting\n", keep_alive=req.keep_alive,
                         extra=cors)
            return
    conn.respond(204, b"", keep_alive=req.keep_alive, extra=cors)

