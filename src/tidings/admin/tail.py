"""The live tail: a channel's publications, joins and leaves streamed to an admin's browser as
they happen (``GET <prefix>/admin/tail?channel=...``, Server-Sent Events over one chunked
response; the admin token in ``Authorization``, never in the URL).

A tail is a subscriber of the channel like any client: the hub hands it the same shared
bytes it hands every client (``Peer.enqueue_shared``), so a channel nobody tails costs
nothing more, and a tailed one one more subscriber. It takes the channel's engine subscription
the way a client does (``Channels.add_subscriber``): with the Redis engine the node then
receives every publication of the channel, from whichever node it was published on. Joins and
leaves come for channels with ``join_leave`` on, as clients get them.

Each event is the push as unidirectional clients get it (``{"channel":..,"pub":{..}}``, or
``join``/``leave``), in an SSE ``data:`` line. Writes are coalesced (one per loop turn). A tail
whose reader falls behind (``MAX_BUFFER`` bytes unsent) drops events and says how many
(``event: dropped``); one that stops reading altogether is aborted by the HTTP server's write
timeout. A comment line every ``KEEPALIVE`` seconds keeps proxies from closing the stream.

While a tail is open its node counts one more subscriber of the channel (``info``,
``channels``): it is one.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tidings.core.peer import Peer, Transport
from tidings.core.shared import Shared
from tidings.engine.base import EngineError
from tidings.errors import Disconnect, ReplyError, Unsubscribe
from tidings.protocol import codec
from tidings.protocol.codecs import Codec
from tidings.protocol.kinds import Kind
from tidings.protocol.session import Session, SubscribeDecision
from tidings.proxy import HookState
from tidings.transports.httpbase import NO_CACHE, Answer, Request, response_head
from tidings.transports.stream import chunk, unwrap

if TYPE_CHECKING:
    from tidings.core.node import Node
    from tidings.transports.http import HttpProtocol

__all__ = ["KEEPALIVE", "MAX_BUFFER", "MAX_TAILS", "Tail", "serve_tail"]

log = logging.getLogger("tidings.admin")

KEEPALIVE = 15.0  # seconds between keep-alive comments
MAX_BUFFER = 1 << 20  # bytes waiting in the socket before events are dropped
MAX_TAILS = 64  # open tails per node


class Tail:
    """One tail: a Peer of the hub (and its own Transport) that writes SSE events to one
    HTTP response."""

    kind = Kind.SSE
    name = "admin_tail"
    bidirectional = False
    separator = b"\n"
    emulation = False
    protobuf = False
    counted = False
    emulation_session = ""
    hook_state: HookState | None = None

    def __init__(self, node: Node, channel: str, transport: asyncio.WriteTransport) -> None:
        self.channel = channel
        self.session: Session = node.new_session()
        self.write: Callable[[bytes], None] = _ignore  # Transport's; the tail writes to _out
        self.transport: Transport = self
        self._out = transport
        self._loop = node.loop
        self._pending: list[bytes] = []
        self._scheduled = False
        self._closed = False
        self.dropped = 0  # events not sent since the last ``dropped`` event
        self.events = 0  # publications, joins and leaves received
        self.lost = 0  # ... of which dropped

    # ---------------------------------------------------------------- what the hub calls

    def enqueue_shared(self, shared: Shared) -> None:
        self.enqueue(shared.payload)

    def enqueue(self, payload: bytes) -> None:
        if self._closed:
            return
        self.events += 1
        self._pending.append(b"data: " + unwrap(payload) + b"\n\n")
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self.flush)

    def flush(self) -> None:
        """Write what is pending in one chunk, or drop it when the reader is behind."""
        self._scheduled = False
        pending, self._pending = self._pending, []
        if self._closed or not pending:
            return
        if self._out.get_write_buffer_size() > MAX_BUFFER:
            self.dropped += len(pending)
            self.lost += len(pending)
            return
        if self.dropped:
            pending.insert(0, event("dropped", {"dropped": self.dropped}))
            self.dropped = 0
        self._out.write(chunk(b"".join(pending)))

    def send(self, name: str, data: dict[str, Any]) -> None:
        """An event of the tail's own (``ready``, ``error``), after what is pending."""
        if not self._closed:
            self._pending.append(event(name, data))
            self.flush()

    def keepalive(self) -> None:
        if not self._closed and self._out.get_write_buffer_size() <= MAX_BUFFER:
            self._out.write(chunk(b": keepalive\n\n"))

    # ---------------------------------------------------------------- the rest of Peer

    @property
    def client_id(self) -> str:
        return self.session.client_id

    @property
    def user(self) -> str:
        return ""

    @property
    def closed(self) -> bool:
        return self._closed

    def close(self, disconnect: Disconnect, *, flush: bool = True) -> None:
        """The node ends the tail (e.g. the channel's stream was lost): say why, stop."""
        if not self._closed:
            self.send("closed", {"code": disconnect.code, "reason": disconnect.reason})
            self._closed = True
            self._out.close()

    def drop_subscription(self, channel: str, reason: Unsubscribe) -> None:
        self.close(Disconnect(reason.code, reason.reason))

    async def unsubscribe(self, channel: str, push: Unsubscribe | None = None) -> None:
        self.drop_subscription(channel, push or Unsubscribe.SERVER)

    async def server_subscribe(self, decision: SubscribeDecision) -> None:
        pass

    def feed(self, frame: bytes) -> bool:
        return True

    def send_ping(self) -> None:
        pass

    # ---------------------------------------------------------------- the rest of Transport

    @property
    def codec(self) -> Codec:
        return codec

    def frame(self, payload: bytes) -> bytes:
        return payload

    def buffer_size(self) -> int:
        return self._out.get_write_buffer_size()

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass


_: type[Peer] = Tail  # conformance, checked by mypy


def _ignore(data: bytes) -> None:
    pass


def event(name: str, data: dict[str, Any]) -> bytes:
    return b"event: " + name.encode() + b"\ndata: " + json.dumps(data).encode() + b"\n\n"


def _channel(node: Node, req: Request) -> str:
    """The channel asked for, checked as the API checks one (400 with the reason)."""
    values = req.query().get("channel")
    channel = values[0] if values else ""
    try:
        node.rules.options(channel)
    except ReplyError as exc:
        raise Answer(400, f"channel {channel[:200]!r}: {exc.message}\n".encode()) from None
    return channel


async def serve_tail(conn: HttpProtocol, req: Request, tails: set[Tail]) -> None:
    """Stream the channel's events until the reader goes (the connection's task is cancelled
    then) or the node ends the tail."""
    node = conn.node
    channel = _channel(node, req)
    if len(tails) >= MAX_TAILS:
        raise Answer(429, b"too many live tails open on this node\n")
    transport = conn.transport
    assert transport is not None
    headers = [("Content-Type", "text/event-stream; charset=utf-8"),
               ("Transfer-Encoding", "chunked"), ("Connection", "close"), *NO_CACHE]
    transport.write(response_head(200, headers))
    conn.take_over()
    transport.resume_reading()  # so the reader's going away is seen (the task is cancelled)
    tail = Tail(node, channel, transport)
    tails.add(tail)
    try:
        await _follow(node, tail, conn)
    finally:
        tails.discard(tail)
        tail._closed = True
        if conn.state.accepting:
            node.channels.hub_remove(channel, tail)
        else:  # shutting down: the engine is closed or closing, no unsubscribe
            node.channels.hub.remove(channel, tail)


async def _follow(node: Node, tail: Tail, conn: HttpProtocol) -> None:
    channel = tail.channel
    try:
        await node.channels.add_subscriber(channel, tail)
    except EngineError as exc:
        log.warning("live tail of %s failed: %s", channel, exc, extra={"channel": channel})
        tail.send("error", {"error": f"engine unavailable: {exc}"})
        tail.close(Disconnect.SHUTDOWN)
        return
    for _, shared in node.channels.hub.finish_sync(channel, tail, push_join_leave=True):
        tail.enqueue_shared(shared)
    tail.send("ready", {"channel": channel, "node": node.name, "node_id": node.id})
    log.info("live tail of %s opened", channel, extra={"channel": channel})
    try:
        while not tail.closed:
            await asyncio.sleep(KEEPALIVE)
            tail.keepalive()
    finally:
        log.info("live tail of %s closed (%d events, %d dropped)", channel, tail.events,
                 tail.lost, extra={"channel": channel})
