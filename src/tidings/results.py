"""Typed answers of the server API for Python callers (``tidings.Server``'s methods), and the
error they raise.

The shapes are the HTTP API's results (PROTOCOL.md §7), decoded: ``data``, ``conn_info`` and
``chan_info`` are Python values (the JSON the API would send), never raw bytes.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

__all__ = [
    "ApiError",
    "BroadcastResult",
    "ChannelInfo",
    "ChannelsResult",
    "ClientInfo",
    "EmptyResult",
    "HistoryResult",
    "PresenceResult",
    "PresenceStats",
    "Publication",
    "PublishResult",
    "StreamPosition",
    "decode_result",
]

T = TypeVar("T")


class ApiError(Exception):
    """The server API answered an error: ``code`` and ``message`` as in PROTOCOL.md §5
    (e.g. 102 unknown channel, 108 not available, 107 bad request)."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


class StreamPosition(msgspec.Struct, frozen=True):
    """Where a channel's stream is: ``offset`` of its last publication and ``epoch`` of the
    stream. A client that subscribes with ``since`` this position misses nothing after it."""

    offset: int = 0
    epoch: str = ""


class PublishResult(msgspec.Struct, frozen=True):
    offset: int = 0
    epoch: str = ""


class _Reply(msgspec.Struct, frozen=True):
    error: dict[str, Any] | None = None
    result: PublishResult | None = None


class BroadcastResult(msgspec.Struct, frozen=True):
    """One reply per channel, in the order given: a result, or an error for that channel."""

    responses: list[_Reply] = msgspec.field(default_factory=list)


class ClientInfo(msgspec.Struct, frozen=True):
    user: str
    client: str
    conn_info: Any = None
    chan_info: Any = None


class Publication(msgspec.Struct, frozen=True):
    data: Any = None
    offset: int = 0
    info: ClientInfo | None = None
    tags: dict[str, str] | None = None


class HistoryResult(msgspec.Struct, frozen=True):
    publications: list[Publication] = msgspec.field(default_factory=list)
    offset: int = 0
    epoch: str = ""

    @property
    def position(self) -> StreamPosition:
        return StreamPosition(self.offset, self.epoch)


class PresenceStats(msgspec.Struct, frozen=True):
    num_clients: int = 0
    num_users: int = 0


class ChannelInfo(msgspec.Struct, frozen=True):
    num_clients: int = 0


class PresenceResult(msgspec.Struct, frozen=True):
    presence: dict[str, ClientInfo] = msgspec.field(default_factory=dict)


class ChannelsResult(msgspec.Struct, frozen=True):
    channels: dict[str, ChannelInfo] = msgspec.field(default_factory=dict)


class EmptyResult(msgspec.Struct, frozen=True):
    """The answer of a method that returns nothing (``{}``)."""


_encoder = msgspec.json.Encoder()


def decode_result(answer: dict[str, Any], tp: type[T]) -> T:
    """The ``result`` of an in-process API answer as ``tp``; raises :class:`ApiError` for an
    ``error`` answer. The answer holds the API's own values (structs, raw JSON), so it goes
    through its JSON form once: what a Python caller gets is what an HTTP caller would."""
    error = answer.get("error")
    if error is not None:
        raise ApiError(int(error.get("code", 100)), str(error.get("message", "")))
    return msgspec.json.decode(_encoder.encode(answer.get("result", {})), type=tp)
