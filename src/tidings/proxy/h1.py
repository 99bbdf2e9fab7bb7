"""A small HTTP/1.1 client for hook calls: POST a JSON body to one backend, read the answer.

Why not a general client: a hook call is one POST of a few hundred bytes to a known endpoint,
and aiohttp's client spends ~170-250 us of CPU on each (request objects, header multidicts, a
payload writer, timers): it made the connect hook cost twice a JWT connect and capped a core
at ~5,700 calls/s, where this client does ~60,000 (docs/design.md has the measurement). It
writes the request as one bytes object and parses the answer with httptools (the parser the
server side uses): one protocol object per pooled connection, nothing per call but a future.

What it does, and only that: keep-alive connections per (host, port, TLS), at most
``limit`` open, idle ones reused most-recent first; a request on a reused connection that the
server had closed (no answer byte read) is sent once more on a new one when the caller says it
may be (``replay``: hooks that are safe to ask twice); ``Connection: close``, HTTP/1.0 and
answers ended by the close are honoured, interim (1xx) answers skipped, bytes nobody asked for
close the connection; bodies by Content-Length or chunked, up to ``max_body`` bytes; TLS
through asyncio. Header values are checked: a CR, LF or NUL in a name or value refuses the
call (no header injection from forwarded client values).
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from typing import cast
from urllib.parse import urlsplit

import httptools

__all__ = ["BadHeader", "Endpoint", "HttpError", "Pool"]


class HttpError(Exception):
    """The call failed: no connection, a broken or oversized answer, the peer went away."""


class BadHeader(HttpError):
    """A header name or value that cannot be sent (CR, LF or NUL)."""


_FORBIDDEN = frozenset("\r\n\0")


class Endpoint:
    """A parsed ``http(s)://host:port/path`` and the request head's fixed part."""

    __slots__ = ("head", "host", "key", "port", "server_hostname", "ssl")

    def __init__(self, url: str, ssl_context: ssl.SSLContext | None = None,
                 server_name: str = "") -> None:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {url!r}")
        tls = parts.scheme == "https"
        self.host = parts.hostname
        self.port = parts.port or (443 if tls else 80)
        self.ssl: ssl.SSLContext | None = (
            (ssl_context or ssl.create_default_context()) if tls else None)
        self.server_hostname = (server_name or self.host) if tls else None
        path = parts.path or "/"
        if parts.query:
            path += "?" + parts.query
        host = _host_header(self.host, self.port, 443 if tls else 80)
        self.head = f"POST {path} HTTP/1.1\r\nHost: {host}\r\n".encode("latin-1")
        self.key = (self.host, self.port, tls)


def _host_header(host: str, port: int, default_port: int) -> str:
    if ":" in host:  # an IPv6 literal goes in brackets
        host = f"[{host}]"
    return host if port == default_port else f"{host}:{port}"


def _header_block(headers: dict[str, str]) -> bytes:
    lines = []
    for name, value in headers.items():
        if _FORBIDDEN.intersection(name) or _FORBIDDEN.intersection(value):
            raise BadHeader(f"header {name!r} has a CR, LF or NUL")
        lines.append(f"{name}: {value}\r\n")
    return "".join(lines).encode("latin-1", "replace")


class _Connection(asyncio.Protocol):
    """One keep-alive connection; one request at a time."""

    def __init__(self, max_body: int) -> None:
        self._max_body = max_body
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._body: list[bytes] = []
        self._size = 0
        self._framed = False  # the answer has a Content-Length or is chunked
        self._headed = False  # its headers are in
        self.got_bytes = False  # any byte of the current answer arrived
        self.reusable = False
        self.closed = False

    # ---------------------------------------------------------------- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's is not a subclass

    def data_received(self, data: bytes) -> None:
        if self._waiter is None:  # bytes nobody asked for: the connection is out of step
            self.close()
            return
        self.got_bytes = True
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self._fail(HttpError(f"unreadable answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        waiter = self._waiter
        if exc is None and waiter is not None and self._headed and not self._framed:
            # An answer without a length ends when the server closes (HTTP/1.0 style).
            self._waiter = None
            if not waiter.done():
                waiter.set_result((self._parser.get_status_code(), b"".join(self._body)))
            return
        self._fail(HttpError(f"connection lost: {exc}" if exc else "connection closed"))

    # ---------------------------------------------------------------- httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        lower = name.lower()
        if lower == b"content-length":
            self._framed = True
            # An answer that says it is too large is refused before any of its body is kept.
            if value.strip().isdigit() and int(value) > self._max_body:
                self._fail(HttpError(f"answer of {int(value)} bytes is over {self._max_body}"))
        elif lower == b"transfer-encoding":
            self._framed = True

    def on_headers_complete(self) -> None:
        self._headed = True

    def on_body(self, body: bytes) -> None:
        if self.closed:  # refused already: nothing more is kept
            return
        self._size += len(body)
        if self._size > self._max_body:
            self._fail(HttpError(f"answer over {self._max_body} bytes"))
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self._parser.get_status_code() < 200:  # an interim answer: the final follows
            self._body, self._size, self._framed, self._headed = [], 0, False, False
            return
        waiter = self._waiter
        self._waiter = None
        self.reusable = bool(self._parser.should_keep_alive())
        if waiter is not None and not waiter.done():
            waiter.set_result((self._parser.get_status_code(), b"".join(self._body)))

    # ---------------------------------------------------------------- use

    def send(self, request: bytes) -> asyncio.Future[tuple[int, bytes]]:
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        self._waiter = loop.create_future()
        self._body = []
        self._size = 0
        self._framed = self._headed = False
        self.got_bytes = False
        self.reusable = False
        self.transport.write(request)
        return self._waiter

    def _fail(self, exc: HttpError) -> None:
        waiter = self._waiter
        self._waiter = None
        self.reusable = False
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.close()

    def close(self) -> None:
        self.reusable = False
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.close()


class Pool:
    """Keep-alive connections to every endpoint a node calls, ``limit`` open at most."""

    def __init__(self, limit: int = 512, max_body: int = 8 * 1024 * 1024) -> None:
        self.limit = limit
        self.max_body = max_body
        self._idle: dict[tuple[str, int, bool], deque[_Connection]] = {}
        self._open = 0
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def open_connections(self) -> int:
        return self._open

    async def post(self, endpoint: Endpoint, headers: dict[str, str], body: bytes,
                   replay: bool = False) -> tuple[int, bytes]:
        """POST ``body`` (JSON) with ``headers``: the answer's status and body. The caller
        bounds the time (a cancelled call closes its connection). ``replay``: the request may
        be sent twice (sent once more when a reused connection closed before any answer)."""
        request = b"".join((endpoint.head, _header_block(headers),
                            b"Content-Type: application/json\r\nContent-Length: ",
                            str(len(body)).encode(), b"\r\n\r\n", body))
        conn, reused = await self._acquire(endpoint)
        try:
            answer = await self._exchange(conn, request)
        except HttpError:
            if not (replay and reused and not conn.got_bytes):
                raise
            # The server closed the idle connection as we reused it: once more, on a new one.
            conn, _ = await self._acquire(endpoint, fresh=True)
            answer = await self._exchange(conn, request)
        self._release(endpoint, conn)
        return answer

    async def _exchange(self, conn: _Connection, request: bytes) -> tuple[int, bytes]:
        try:
            return await conn.send(request)
        except BaseException:
            conn.close()
            self._release_slot()
            raise

    async def _acquire(self, endpoint: Endpoint, fresh: bool = False
                       ) -> tuple[_Connection, bool]:
        """An idle connection to ``endpoint`` (reused: True), else a new one once fewer than
        ``limit`` are open; waits for one to be released or to go idle."""
        while True:
            idle = self._idle.get(endpoint.key)
            while idle and not fresh:
                conn = idle.pop()
                if not conn.closed:
                    return conn, True
                self._release_slot()
            if self._open >= self.limit:
                self._purge()
                self._evict_one()
            if self._open < self.limit:
                return await self._connect(endpoint), False
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # it was handed a slot it will not use: pass it on
                raise

    async def _connect(self, endpoint: Endpoint) -> _Connection:
        self._open += 1
        loop = asyncio.get_running_loop()
        try:
            _, conn = await loop.create_connection(
                lambda: _Connection(self.max_body), endpoint.host, endpoint.port,
                ssl=endpoint.ssl, server_hostname=endpoint.server_hostname)
        except BaseException as exc:
            self._release_slot()
            if isinstance(exc, OSError):
                raise HttpError(f"cannot connect: {exc}") from None
            raise
        return conn

    def _release(self, endpoint: Endpoint, conn: _Connection) -> None:
        if conn.reusable and not conn.closed:
            self._idle.setdefault(endpoint.key, deque()).append(conn)
            self._wake()
        else:
            conn.close()
            self._release_slot()

    def _purge(self) -> None:
        """Forget idle connections the servers closed (their slots are free again)."""
        for idle in self._idle.values():
            alive = [conn for conn in idle if not conn.closed]
            for _ in range(len(idle) - len(alive)):
                self._release_slot()
            idle.clear()
            idle.extend(alive)

    def _evict_one(self) -> None:
        """At the limit with idle connections to other backends: close the oldest one."""
        for idle in self._idle.values():
            if idle:
                idle.popleft().close()
                self._release_slot()
                return

    def _release_slot(self) -> None:
        self._open = max(self._open - 1, 0)
        self._wake()

    def _wake(self) -> None:
        """Let one waiting call look again (a slot or an idle connection is free)."""
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                break

    def close(self) -> None:
        for idle in self._idle.values():
            for conn in idle:
                conn.close()
        self._idle.clear()
        self._open = 0
