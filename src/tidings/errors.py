"""The two code registries of the protocol: reply errors and disconnects.

Reply error codes (``error.code`` in a Reply) and disconnect codes (close frame code on a
bidirectional WebSocket, ``disconnect`` push elsewhere) are listed in PROTOCOL.md §4. Every
code the server sends has exactly one home: this module.

Disconnect ranges: 3000-3499 and 4000-4499 make clients reconnect, 3500-3999 and 4500-4999 are
terminal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

__all__ = [
    "Disconnect",
    "ErrorCode",
    "ProtocolError",
    "ReplyError",
    "Unsubscribe",
]


@dataclass(frozen=True, slots=True)
class ReplyError(Exception):
    """A command failed; the client gets ``{"id":N,"error":{"code":C,"message":M}}``."""

    code: int
    message: str
    temporary: bool = False

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ErrorCode:
    INTERNAL = ReplyError(100, "internal server error", temporary=True)
    UNAUTHORIZED = ReplyError(101, "unauthorized")
    UNKNOWN_CHANNEL = ReplyError(102, "unknown channel")
    PERMISSION_DENIED = ReplyError(103, "permission denied")
    METHOD_NOT_FOUND = ReplyError(104, "method not found")
    ALREADY_SUBSCRIBED = ReplyError(105, "already subscribed")
    LIMIT_EXCEEDED = ReplyError(106, "limit exceeded")
    BAD_REQUEST = ReplyError(107, "bad request")
    NOT_AVAILABLE = ReplyError(108, "not available")
    TOKEN_EXPIRED = ReplyError(109, "token expired")
    EXPIRED = ReplyError(110, "expired")
    TOO_MANY_REQUESTS = ReplyError(111, "too many requests", temporary=True)
    UNRECOVERABLE_POSITION = ReplyError(112, "unrecoverable position")


@dataclass(frozen=True, slots=True)
class Disconnect(Exception):
    """The server closes the connection with this code and reason."""

    code: int
    reason: str

    @property
    def reconnect(self) -> bool:
        return not (3500 <= self.code <= 3999 or 4500 <= self.code <= 4999)

    def __str__(self) -> str:
        return f"disconnect {self.code}: {self.reason}"

    SHUTDOWN: ClassVar[Disconnect]
    INTERNAL: ClassVar[Disconnect]
    EXPIRED: ClassVar[Disconnect]
    SUB_EXPIRED: ClassVar[Disconnect]
    SLOW: ClassVar[Disconnect]
    WRITE_ERROR: ClassVar[Disconnect]
    INSUFFICIENT_STATE: ClassVar[Disconnect]
    FORCE_RECONNECT: ClassVar[Disconnect]
    NO_PONG: ClassVar[Disconnect]
    TOO_MANY_REQUESTS: ClassVar[Disconnect]
    INVALID_TOKEN: ClassVar[Disconnect]
    BAD_REQUEST: ClassVar[Disconnect]
    STALE: ClassVar[Disconnect]
    FORCE_DISCONNECT: ClassVar[Disconnect]
    CONNECTION_LIMIT: ClassVar[Disconnect]
    CHANNEL_LIMIT: ClassVar[Disconnect]
    INAPPROPRIATE_PROTOCOL: ClassVar[Disconnect]
    PERMISSION_DENIED: ClassVar[Disconnect]
    NOT_AVAILABLE: ClassVar[Disconnect]
    TOO_MANY_ERRORS: ClassVar[Disconnect]
    MESSAGE_SIZE_LIMIT: ClassVar[Disconnect]


Disconnect.SHUTDOWN = Disconnect(3001, "shutdown")
Disconnect.INTERNAL = Disconnect(3004, "internal server error")
Disconnect.EXPIRED = Disconnect(3005, "connection expired")
Disconnect.SUB_EXPIRED = Disconnect(3006, "subscription expired")
Disconnect.SLOW = Disconnect(3008, "slow")
Disconnect.WRITE_ERROR = Disconnect(3009, "write error")
Disconnect.INSUFFICIENT_STATE = Disconnect(3010, "insufficient state")
Disconnect.FORCE_RECONNECT = Disconnect(3011, "force reconnect")
Disconnect.NO_PONG = Disconnect(3012, "no pong")
Disconnect.TOO_MANY_REQUESTS = Disconnect(3013, "too many requests")
Disconnect.INVALID_TOKEN = Disconnect(3500, "invalid token")
Disconnect.BAD_REQUEST = Disconnect(3501, "bad request")
Disconnect.STALE = Disconnect(3502, "stale")
Disconnect.FORCE_DISCONNECT = Disconnect(3503, "force disconnect")
Disconnect.CONNECTION_LIMIT = Disconnect(3504, "connection limit")
Disconnect.CHANNEL_LIMIT = Disconnect(3505, "channel limit")
Disconnect.INAPPROPRIATE_PROTOCOL = Disconnect(3506, "inappropriate protocol")
Disconnect.PERMISSION_DENIED = Disconnect(3507, "permission denied")
Disconnect.NOT_AVAILABLE = Disconnect(3508, "not available")
Disconnect.TOO_MANY_ERRORS = Disconnect(3509, "too many errors")
# Not a Centrifugo disconnect: the WebSocket close code for "message too big" (RFC 6455).
Disconnect.MESSAGE_SIZE_LIMIT = Disconnect(1009, "message size limit exceeded")


@dataclass(frozen=True, slots=True)
class Unsubscribe:
    """Payload of an ``unsubscribe`` push; codes >= 2500 make the client resubscribe."""

    code: int
    reason: str

    SERVER: ClassVar[Unsubscribe]
    INSUFFICIENT_STATE: ClassVar[Unsubscribe]
    EXPIRED: ClassVar[Unsubscribe]


Unsubscribe.SERVER = Unsubscribe(2000, "server unsubscribe")
Unsubscribe.INSUFFICIENT_STATE = Unsubscribe(2500, "insufficient state")
Unsubscribe.EXPIRED = Unsubscribe(2501, "subscription expired")


class ProtocolError(Exception):
    """The peer broke the wire protocol (bad frame, bad JSON); maps to a Disconnect."""

    def __init__(self, message: str, disconnect: Disconnect = Disconnect.BAD_REQUEST) -> None:
        super().__init__(message)
        self.disconnect = disconnect
