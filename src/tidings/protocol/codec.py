"""Bytes <-> messages for the JSON protocol.

A transport frame carries one or more commands separated by ``\\n``; replies and pushes written
together are joined the same way (PROTOCOL.md §1.3). Decoding is strict: anything that is not a
valid Command raises :class:`ProtocolError` (-> disconnect 3501).
"""

from __future__ import annotations

import msgspec

from tidings.errors import ProtocolError
from tidings.protocol.messages import Command, ConnectRequest, Push, Raw, Reply

__all__ = [
    "decode_commands",
    "decode_connect_request",
    "encode_push",
    "encode_reply",
    "is_json",
    "strip_newlines",
]

_command_decoder = msgspec.json.Decoder(Command)
_connect_decoder = msgspec.json.Decoder(ConnectRequest)
_encoder = msgspec.json.Encoder()
_any_decoder = msgspec.json.Decoder()

PING = b"{}"


def decode_commands(frame: bytes) -> list[Command]:
    """Split a frame on newlines and decode each non-empty line as a Command."""
    try:
        if b"\n" not in frame:
            return [_command_decoder.decode(frame)]
        return [_command_decoder.decode(line) for line in frame.split(b"\n") if line.strip()]
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProtocolError(f"malformed command: {exc}") from exc


def decode_connect_request(data: bytes) -> ConnectRequest:
    """A unidirectional transport's opening message: a bare ConnectRequest (an empty body is
    an anonymous connect)."""
    if not data.strip():
        return ConnectRequest()
    try:
        return _connect_decoder.decode(data)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        raise ProtocolError(f"malformed connect request: {exc}") from exc


def encode_reply(reply: Reply) -> bytes:
    return _encoder.encode(reply)


def encode_push(push: Push) -> bytes:
    return _encoder.encode(Reply(push=push))


def strip_newlines(data: bytes) -> bytes:
    """Embedded raw JSON must not carry ``\\n`` (the frame delimiter) or ``\\r`` (a line end
    for SSE); in valid JSON a raw CR or LF can only be whitespace, so removing it keeps the value
    intact."""
    if b"\n" in data:
        data = data.replace(b"\n", b"")
    if b"\r" in data:
        data = data.replace(b"\r", b"")
    return data


def is_json(data: bytes) -> bool:
    try:
        _any_decoder.decode(data)
    except msgspec.DecodeError:
        return False
    return True


def raw(data: bytes) -> Raw:
    return Raw(strip_newlines(data))
