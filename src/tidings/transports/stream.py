"""Streaming HTTP transports (PROTOCOL.md §8): the response is a long-lived chunked stream.

- ``http_stream`` and ``sse``: the server half of centrifuge-js's bidirectional emulation; the
  client sends commands with ``POST /emulation`` (session + node), replies and pushes stream
  back here, one JSON per line (``http_stream``) or per SSE event (``sse``);
- ``uni_http_stream`` and ``uni_sse``: unidirectional, for clients without an SDK; pushes go
  out without the ``{"push": ...}`` wrapper (``{"channel":..,"pub":..}``), starting with
  ``{"connect": ...}``.

Each kind frames a payload (messages joined by ``\\n``, see ``Client.flush``) once; the framed
bytes are cached per publication (``Shared.frames``), so a fan-out frames once per kind.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING

from tidings.errors import Disconnect
from tidings.protocol import codec, pbcodec
from tidings.protocol.codecs import Codec
from tidings.protocol.kinds import KINDS, Kind
from tidings.protocol.messages import DisconnectPush, Push

if TYPE_CHECKING:
    from tidings.core.client import Client
    from tidings.core.node import Node

__all__ = ["StreamTransport", "chunk", "unwrap"]

log = logging.getLogger("tidings.stream")

CLOSE_TIMEOUT = 5.0
_PUSH_PREFIX = b'{"push":'


def chunk(data: bytes) -> bytes:
    """One HTTP/1.1 chunk (``Transfer-Encoding: chunked``)."""
    return b"%x\r\n%s\r\n" % (len(data), data)


def unwrap(message: bytes) -> bytes:
    """``{"push":{...}}`` -> ``{...}``: what unidirectional transports send."""
    if message.startswith(_PUSH_PREFIX):
        return message[len(_PUSH_PREFIX) : -1]
    return message


def _http_stream(payload: bytes) -> bytes:
    return chunk(payload + b"\n")


def _sse(payload: bytes) -> bytes:
    return chunk(b"".join([b"data: " + line + b"\n\n" for line in payload.split(b"\n")]))


def _uni_http_stream(payload: bytes) -> bytes:
    return chunk(b"".join([unwrap(line) + b"\n" for line in payload.split(b"\n")]))


def _uni_sse(payload: bytes) -> bytes:
    return chunk(b"".join([b"data: " + unwrap(line) + b"\n\n" for line in payload.split(b"\n")]))


# The streaming kinds by name, with their framing.
_FRAMING: dict[str, tuple[Kind, Callable[[bytes], bytes]]] = {
    "http_stream": (Kind.HTTP_STREAM, _http_stream),
    "http_stream_protobuf": (Kind.HTTP_STREAM_PROTOBUF, chunk),  # varint-delimited
    "sse": (Kind.SSE, _sse),
    "uni_http_stream": (Kind.UNI_HTTP_STREAM, _uni_http_stream),
    "uni_sse": (Kind.UNI_SSE, _uni_sse),
}


class StreamTransport:
    """A client on a streaming HTTP response (the HTTP connection is dedicated to it)."""

    __slots__ = ("_closing", "_transport", "bidirectional", "client", "codec", "emulation",
                 "frame", "kind", "name", "separator",
                 "write")

    def __init__(self, node: Node, transport: asyncio.Transport, name: str,
                 headers: Mapping[str, str] | None = None) -> None:
        self.kind, self.frame = _FRAMING[name]
        info = KINDS[self.kind]
        self.bidirectional = info.bidirectional
        self.emulation = info.emulation
        self.codec: Codec = pbcodec if info.protobuf else codec
        self.separator = b"" if info.protobuf else b"\n"
        self.name = info.name
        self._transport = transport
        self.write: Callable[[bytes], None] = transport.write
        self._closing = False
        self.client: Client = node.new_client(self, headers)

    def buffer_size(self) -> int:
        return self._transport.get_write_buffer_size()

    def pause_reading(self) -> None:
        """Commands come through POST /emulation (refused when the client is full)."""

    def resume_reading(self) -> None:
        pass

    def close(self, disconnect: Disconnect) -> None:
        """Send the disconnect push, end the response, close the connection."""
        if self._closing:
            return
        self._closing = True
        transport = self._transport
        if transport.is_closing():
            return
        push = self.codec.encode_push(
            Push(disconnect=DisconnectPush(code=disconnect.code, reason=disconnect.reason))
        )
        transport.write(self.frame(push) + b"0\r\n\r\n")
        transport.close()
        asyncio.get_running_loop().call_later(CLOSE_TIMEOUT, transport.abort)

    def connection_lost(self) -> None:
        self.client.connection_lost()

    def pause_writing(self) -> None:
        self.client.pause_writing()

    def resume_writing(self) -> None:
        self.client.resume_writing()
