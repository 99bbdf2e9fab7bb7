"""SockJS across workers: every request of a session served by the worker that holds it.

A SockJS session is one client whose transport is a series of HTTP requests (polls, sends,
streams) on whatever connections the browser opens; with ``tidings serve --workers N`` the
kernel gives each new connection to any worker (``SO_REUSEPORT``). So a session lives in one
worker, its *owner*: worker ``crc32(session id) % N``. Every worker computes the same owner
without asking anyone, and a restarted worker owns the same sessions again.

A session request that reaches another worker is handed over with its connection: the
socket's descriptor goes to the owner over a Unix datagram socket (``SCM_RIGHTS``), with the
request re-encoded from what was parsed (and the requests pipelined behind it), and the owner
serves the connection from then on as if it had accepted it; nothing is relayed through the
first worker. The sockets live in a directory only the supervisor's user can enter (mode 0700,
``tempfile.mkdtemp``).

When the owner cannot take it (restarting, its queue full) the request is served where it
landed, as a lone server would serve a session it does not know: a send answers 404, a poll
opens a new session, and the client reconnects and recovers.

Rules: a handed-over connection has exactly one owner process at a time (the sender closes
its descriptor only after the owner has it in its queue); a request half read (pipelined
bytes the parser holds) is never handed over.
"""

from __future__ import annotations

import array
import asyncio
import contextlib
import logging
import os
import socket
import zlib
from typing import TYPE_CHECKING

from tidings.transports.http import HttpProtocol, ServerState
from tidings.transports.httpbase import Request

if TYPE_CHECKING:
    from collections.abc import Callable, Coroutine
    from typing import Any

__all__ = ["MAX_MESSAGE", "HandedProtocol", "Handoff", "encode_request", "owner_of"]

log = logging.getLogger("tidings.handoff")

MAX_MESSAGE = 200_000  # below the default socket buffer (net.core.wmem_default, 208 KiB)
_RECEIVE_BATCH = 64  # datagrams taken per wake-up, then the loop serves others
_DROPPED = frozenset({"content-length", "transfer-encoding", "expect", "connection"})


def owner_of(session: str, count: int) -> int:
    """The worker that owns SockJS session ``session``."""
    return zlib.crc32(session.encode("utf-8", "surrogateescape")) % count


def encode_request(req: Request) -> bytes:
    """``req`` as HTTP/1.1 bytes again: its headers, its body with a Content-Length (a chunked
    body arrives de-chunked; a ``100-continue`` was answered already)."""
    lines = [f"{req.method} {req.url.decode('latin-1')} HTTP/1.1"]
    lines += [f"{name}: {value}" for name, value in req.headers.items() if name not in _DROPPED]
    lines.append(f"content-length: {len(req.body)}")
    if not req.keep_alive:
        lines.append("connection: close")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + req.body


class HandedProtocol(HttpProtocol):
    """A connection another worker accepted: the bytes it had read come first."""

    __slots__ = ("_preface",)

    def __init__(self, state: ServerState, listener: int, preface: bytes) -> None:
        super().__init__(state, listener)
        self._preface = preface

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        preface, self._preface = self._preface, b""
        self.data_received(preface)


class Handoff:
    """This worker's end: hands session requests over, and serves those handed to it."""

    def __init__(self, directory: str, index: int, count: int, state: ServerState,
                 spawn: Callable[[Coroutine[Any, Any, Any]], asyncio.Task[Any]]) -> None:
        self.directory = directory
        self.index = index
        self.count = count
        self.state = state
        self.spawn = spawn
        self.sent = 0  # connections handed to other workers
        self.received = 0  # connections other workers handed here
        self.failed = 0  # hand-overs the owner could not take (served here instead)
        self._inbox: socket.socket | None = None
        self._outbox: socket.socket | None = None

    def path(self, index: int) -> str:
        return os.path.join(self.directory, f"w{index}.sock")

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        path = self.path(self.index)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # left by this worker's crashed predecessor
        inbox = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        inbox.bind(path)
        inbox.setblocking(False)
        outbox = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        outbox.setblocking(False)
        self._inbox, self._outbox = inbox, outbox
        loop.add_reader(inbox.fileno(), self._receive)

    def close(self) -> None:
        inbox, self._inbox = self._inbox, None
        if inbox is not None:
            asyncio.get_running_loop().remove_reader(inbox.fileno())
            inbox.close()
            with contextlib.suppress(OSError):
                os.unlink(self.path(self.index))
        if self._outbox is not None:
            self._outbox.close()
            self._outbox = None

    def info(self) -> dict[str, Any]:
        return {"handoffs": {"sent": self.sent, "received": self.received,
                             "failed": self.failed}}

    # ---------------------------------------------------------------- sending

    def hand_over(self, conn: HttpProtocol, req: Request, session: str) -> bool:
        """Give ``conn`` (serving ``req`` for ``session``) to the session's owner; False
        when this worker is the owner or the owner cannot take it (serve it here)."""
        owner = owner_of(session, self.count)
        if owner == self.index or self._outbox is None:
            return False
        transport = conn.transport
        queued = conn.queued_requests()
        if transport is None or queued is None:
            return False
        message = bytes([conn.listener]) + b"".join(encode_request(r) for r in (req, *queued))
        sock = transport.get_extra_info("socket")
        if sock is None or len(message) > MAX_MESSAGE:
            return False
        fd = os.dup(sock.fileno())
        try:
            self._outbox.sendmsg([message], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                              array.array("i", [fd]))], 0, self.path(owner))
        except OSError as exc:
            self.failed += 1
            log.info("SockJS session %s not handed to worker %d: %s", session[:8], owner, exc)
            return False
        finally:
            os.close(fd)
        self.sent += 1
        conn.take_over()
        transport.abort()  # this process's descriptor only: the owner's keeps the connection
        return True

    # ---------------------------------------------------------------- receiving

    def _receive(self) -> None:
        inbox = self._inbox
        for _ in range(_RECEIVE_BATCH):
            if inbox is None:
                return
            try:
                message, fds, _, _ = socket.recv_fds(inbox, MAX_MESSAGE + 1, 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                log.error("hand-off socket failed: %s", exc)
                return
            if not fds:
                continue
            if not message:
                os.close(fds[0])
                continue
            self.received += 1
            self.spawn(self._serve(socket.socket(fileno=fds[0]), message[0], message[1:]))

    async def _serve(self, sock: socket.socket, listener: int, preface: bytes) -> None:
        loop = asyncio.get_running_loop()
        try:
            await loop.connect_accepted_socket(
                lambda: HandedProtocol(self.state, listener, preface), sock)
        except OSError as exc:  # the peer went away meanwhile
            log.debug("handed-over connection lost before it was served: %s", exc)
            sock.close()
