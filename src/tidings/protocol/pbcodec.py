"""Bytes <-> messages for the Protobuf protocol (PROTOCOL.md §1.4), sans-I/O like ``codec``.

The message classes are the ones generated from Centrifugo's ``client.proto`` and shipped by
the maintained ``centrifuge-python`` package (``centrifuge.protocol.client_pb2``); nothing is
hand-encoded. Field names there are the JSON names, so commands are converted to (and replies
from) the same msgspec structs the JSON protocol uses: the protocol core is shared. A frame holds
varint-length-delimited messages; ``data``-like fields are raw bytes.

Requires the ``protobuf`` extra (``pip install tidings[protobuf]``); ``available()`` says if
it is installed.
"""

from __future__ import annotations

import functools
import types
import typing
from typing import Any

import msgspec

from tidings.errors import ProtocolError
from tidings.protocol.messages import Command, ConnectRequest, Push, Raw, Reply

__all__ = [
    "PING",
    "PROTOBUF",
    "available",
    "decode_commands",
    "decode_connect_request",
    "decode_emulation_request",
    "encode_push",
    "encode_reply",
]

PING = b"\x00"  # an empty Reply, length-prefixed
PROTOBUF = True


@functools.cache
def _pb() -> Any:
    from centrifuge.protocol import client_pb2

    return client_pb2


def available() -> bool:
    try:
        _pb()
    except ImportError:
        return False
    return True


# ---------------------------------------------------------------------------- varints


def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def _split(frame: bytes) -> list[bytes]:
    """Varint-length-delimited messages of a frame."""
    messages: list[bytes] = []
    pos, end = 0, len(frame)
    while pos < end:
        length = shift = 0
        while True:
            if pos >= end or shift > 35:
                raise ProtocolError("malformed protobuf frame: bad length prefix")
            byte = frame[pos]
            pos += 1
            length |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if pos + length > end:
            raise ProtocolError("malformed protobuf frame: truncated message")
        messages.append(frame[pos : pos + length])
        pos += length
    return messages


# ---------------------------------------------------------------------------- struct <-> pb


def _struct_of(tp: Any) -> type[msgspec.Struct] | None:
    if isinstance(tp, type) and issubclass(tp, msgspec.Struct):
        return tp
    for arg in typing.get_args(tp):
        found = _struct_of(arg)
        if found is not None:
            return found
    return None


@functools.cache
def _fields(tp: type[msgspec.Struct]) -> dict[str, tuple[Any, Any]]:
    """name -> (annotation, default) for a struct type."""
    return {f.encode_name: (f.type, f.default) for f in msgspec.structs.fields(tp)}


def _fill(msg: Any, obj: msgspec.Struct) -> None:
    """Copy a struct's set fields into a protobuf message (defaults left out).

    Complexity 16 (radon): one branch per kind of field (raw bytes, nested struct, map, list,
    scalar) over the generic walk; splitting it would only scatter that one table."""
    present = {f.name for f in msg.DESCRIPTOR.fields}
    for name, (_, default) in _fields(type(obj)).items():
        if name not in present:
            continue
        value = getattr(obj, name)
        if value is None or (default is not msgspec.NODEFAULT and value == default
                             and not isinstance(value, msgspec.Struct)):
            continue
        if isinstance(value, Raw):
            setattr(msg, name, bytes(value))
        elif isinstance(value, msgspec.Struct):
            sub = getattr(msg, name)
            sub.SetInParent()
            _fill(sub, value)
        elif isinstance(value, dict):
            target = getattr(msg, name)
            for key, item in value.items():
                if isinstance(item, msgspec.Struct):
                    _fill(target[key], item)
                else:
                    target[key] = item
        elif isinstance(value, list):
            target = getattr(msg, name)
            for item in value:
                if isinstance(item, msgspec.Struct):
                    _fill(target.add(), item)
                else:
                    target.append(item)
        else:
            setattr(msg, name, value)


def _to_struct(msg: Any, tp: type[msgspec.Struct]) -> Any:
    fields = _fields(tp)
    kwargs: dict[str, Any] = {}
    for fd, value in msg.ListFields():
        if fd.name not in fields:
            continue  # e.g. tag filters: not supported, as in JSON
        annotation = fields[fd.name][0]
        if fd.type == fd.TYPE_BYTES:
            kwargs[fd.name] = Raw(value) if _is_raw(annotation) else value
        elif fd.type == fd.TYPE_MESSAGE:
            if fd.message_type.GetOptions().map_entry:
                inner = _struct_of(typing.get_args(_unoptional(annotation))[1])
                kwargs[fd.name] = {
                    k: _to_struct(v, inner) if inner is not None else v for k, v in value.items()
                }
            else:
                struct = _struct_of(annotation)
                if struct is None:
                    continue
                kwargs[fd.name] = _to_struct(value, struct)
        else:
            kwargs[fd.name] = value
    return tp(**kwargs)


def _unoptional(tp: Any) -> Any:
    if isinstance(tp, types.UnionType) or typing.get_origin(tp) is typing.Union:
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return args[0] if args else tp
    return tp


def _is_raw(tp: Any) -> bool:
    return tp is Raw or Raw in typing.get_args(tp)


# ---------------------------------------------------------------------------- API


def decode_commands(frame: bytes) -> list[Command]:
    pb = _pb()
    commands: list[Command] = []
    for data in _split(frame):
        msg = pb.Command()
        try:
            msg.ParseFromString(data)
            commands.append(_to_struct(msg, Command))
        except (ValueError, TypeError, msgspec.ValidationError) as exc:
            raise ProtocolError(f"malformed protobuf command: {exc}") from exc
        except Exception as exc:  # google.protobuf.message.DecodeError
            raise ProtocolError(f"malformed protobuf command: {exc}") from exc
    return commands


def decode_connect_request(data: bytes) -> ConnectRequest:
    msg = _pb().ConnectRequest()
    try:
        msg.ParseFromString(data)
    except Exception as exc:
        raise ProtocolError(f"malformed protobuf connect request: {exc}") from exc
    result: ConnectRequest = _to_struct(msg, ConnectRequest)
    return result


def decode_emulation_request(body: bytes) -> tuple[str, str, bytes]:
    """``POST /emulation`` in Protobuf: (session, node, varint-delimited commands)."""
    msg = _pb().EmulationRequest()
    try:
        msg.ParseFromString(body)
    except Exception as exc:
        raise ProtocolError(f"malformed protobuf emulation request: {exc}") from exc
    return msg.session, msg.node, bytes(msg.data)


def encode_reply(reply: Reply) -> bytes:
    msg = _pb().Reply()
    _fill(msg, reply)
    body: bytes = msg.SerializeToString()
    return _varint(len(body)) + body


def encode_push(push: Push) -> bytes:
    return encode_reply(Reply(push=push))
