"""Bidirectional WebSocket transport (JSON protocol): frames in, client commands out.

Disconnects travel in the close frame (code + plain reason), never as a push (PROTOCOL.md
§1.2). After sending a close frame we wait up to ``CLOSE_TIMEOUT`` seconds for the peer's
close frame, then abort the TCP connection (unsent data is dropped).

Reading stops (``pause_reading`` on the socket) while the frame parser has a backlog (one read
held more frames than it parses at once: the rest is parsed on the next loop iteration) or while
the client's inbox is full. Pings are answered once per read (RFC 6455 §5.5.3 allows answering
only the latest), and the pong bytes count against the client's queue limit.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from tidings.errors import Disconnect
from tidings.protocol import codec, pbcodec, wsframe
from tidings.protocol.codecs import Codec
from tidings.protocol.kinds import Kind
from tidings.protocol.messages import DisconnectPush, Push
from tidings.transports.stream import unwrap

if TYPE_CHECKING:
    from tidings.core.client import Client
    from tidings.core.node import Node

__all__ = ["ProtobufWebSocketTransport", "UniWebSocketTransport", "WebSocketTransport"]

log = logging.getLogger("tidings.websocket")

CLOSE_TIMEOUT = 5.0
_BACKLOG, _INBOX = 1, 2  # why reading is paused


class WebSocketTransport:
    kind = Kind.WEBSOCKET
    name = "websocket"
    bidirectional = True
    codec: Codec = codec
    separator = b"\n"
    emulation = False

    __slots__ = ("_closing", "_held", "_parser", "_transport", "client", "write")

    def __init__(self, node: Node, transport: asyncio.Transport,
                 headers: Mapping[str, str] | None = None) -> None:
        self._transport = transport
        # The asyncio transport's own write, bound once: no wrapper call per write.
        self.write: Callable[[bytes], None] = transport.write
        self._parser = wsframe.FrameParser(node.config.websocket.message_size_limit)
        self._closing = False
        self._held = 0  # _BACKLOG | _INBOX: reading is paused while non-zero
        self.client: Client = node.new_client(self, headers)

    # ---------------------------------------------------------------- Transport interface

    frame = staticmethod(wsframe.build_frame)

    def buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def close(self, disconnect: Disconnect) -> None:
        if self._closing:
            return
        self._closing = True
        transport = self._transport
        if transport.is_closing():
            return
        transport.write(wsframe.build_close(disconnect.code, disconnect.reason))
        # abort, not close: a peer that stopped reading (3008) must not pin its buffer forever.
        asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, transport.abort)

    # ---------------------------------------------------------------- from the HTTP protocol

    def pause_reading(self) -> None:
        self._hold(_INBOX)

    def resume_reading(self) -> None:
        self._release(_INBOX)

    def _hold(self, reason: int) -> None:
        if not self._held and not self._transport.is_closing():
            self._transport.pause_reading()
        self._held |= reason

    def _release(self, reason: int) -> None:
        if not self._held & reason:
            return
        self._held &= ~reason
        if reason == _INBOX and self._parser.backlog:
            self._held |= _BACKLOG
            asyncio.get_running_loop().call_soon(self._parse_backlog)
        if not self._held and not self._transport.is_closing():
            self._transport.resume_reading()

    def _parse_backlog(self) -> None:
        if self._held == _BACKLOG and not self._closing:
            self._held = 0
            self.data_received(b"")
            if not self._held and not self._transport.is_closing():
                self._transport.resume_reading()

    def data_received(self, data: bytes) -> None:
        try:
            messages = self._parser.feed(data)
        except wsframe.FrameError as exc:
            log.info("client %s: websocket framing error %d %s", self.client.client_id,
                     exc.code, exc.reason)
            if exc.code == 1009:
                self.client.close(Disconnect.MESSAGE_SIZE_LIMIT)
            else:
                self.client.close(Disconnect(exc.code, exc.reason))
            # The stream cannot be parsed past this point: fail the connection (RFC 6455
            # §7.1.7) once the close frame is flushed, instead of waiting for the peer's reply.
            self._transport.close()
            return
        ping: bytes | None = None
        for opcode, payload in messages:
            if opcode == wsframe.OP_TEXT or opcode == wsframe.OP_BINARY:
                if not self._closing:
                    self.client.feed(payload)
            elif opcode == wsframe.OP_PING:
                ping = payload
            elif opcode == wsframe.OP_CLOSE:
                if not self._closing:
                    # The peer closes first: echo its close frame (RFC 6455 §5.5.1).
                    self._closing = True
                    self._transport.write(wsframe.build_frame(payload[:2], wsframe.OP_CLOSE))
                    self.client.connection_lost()
                self._transport.close()
                return
        if ping is not None and not self._closing:
            self._transport.write(wsframe.build_frame(ping, wsframe.OP_PONG))
            self.client.check_queue()
        if self._parser.backlog and not self._held & _BACKLOG:
            self._hold(_BACKLOG)
            asyncio.get_running_loop().call_soon(self._parse_backlog)

    def connection_lost(self) -> None:
        self.client.connection_lost()

    def pause_writing(self) -> None:
        self.client.pause_writing()

    def resume_writing(self) -> None:
        self.client.resume_writing()


def _uni_frames(payload: bytes) -> bytes:
    """One text frame per message, without the ``{"push": ...}`` wrapper."""
    return b"".join([wsframe.build_frame(unwrap(line)) for line in payload.split(b"\n")])


class UniWebSocketTransport(WebSocketTransport):
    """Unidirectional WebSocket (PROTOCOL.md §8.1): the client's first message (or the
    ``cf_connect`` query) is a ConnectRequest; then only pushes flow, server to client."""

    kind = Kind.UNI_WEBSOCKET
    name = "uni_websocket"
    bidirectional = False

    __slots__ = ()

    def __init__(self, node: Node, transport: asyncio.Transport,
                 headers: Mapping[str, str] | None = None) -> None:
        super().__init__(node, transport, headers)
        self._parser = wsframe.FrameParser(node.config.uni_websocket.message_size_limit)

    frame = staticmethod(_uni_frames)  # type: ignore[assignment]  # no opcode argument

    def close(self, disconnect: Disconnect) -> None:
        if not self._closing and not self._transport.is_closing():
            push = codec.encode_push(
                Push(disconnect=DisconnectPush(code=disconnect.code, reason=disconnect.reason))
            )
            self._transport.write(_uni_frames(push))
        super().close(disconnect)


def _binary_frame(payload: bytes) -> bytes:
    return wsframe.build_frame(payload, wsframe.OP_BINARY)


class ProtobufWebSocketTransport(WebSocketTransport):
    """The ``centrifuge-protobuf`` subprotocol: varint-delimited Protobuf messages in binary
    frames (PROTOCOL.md §1.4)."""

    kind = Kind.WEBSOCKET_PROTOBUF
    name = "websocket_protobuf"
    codec: Codec = pbcodec
    separator = b""

    __slots__ = ()

    frame = staticmethod(_binary_frame)  # type: ignore[assignment]  # no opcode argument

