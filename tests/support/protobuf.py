"""The Protobuf protocol's framing: varint-delimited messages (a WebSocket frame or an HTTP
body holds several)."""

from __future__ import annotations

from typing import Any


def delimited(*messages: Any) -> bytes:
    """Protobuf messages, each with its varint length prefix (a frame or request body)."""
    out = b""
    for message in messages:
        body = message.SerializeToString()
        n = len(body)
        prefix = bytearray()
        while True:
            prefix.append((n & 0x7F) | (0x80 if n > 0x7F else 0))
            n >>= 7
            if not n:
                break
        out += bytes(prefix) + body
    return out


def replies(data: bytes) -> list[Any]:
    """The varint-delimited Protobuf Replies of ``data``."""
    from centrifuge.protocol import client_pb2 as pbm

    found, pos = [], 0
    while pos < len(data):
        length = shift = 0
        while True:
            byte = data[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        reply = pbm.Reply()
        reply.ParseFromString(data[pos:pos + length])
        found.append(reply)
        pos += length
    return found
