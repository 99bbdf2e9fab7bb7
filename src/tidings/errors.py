"""The two code registries of the protocol: reply errors and disconnects.

Reply error codes (``error.code`` in a Reply) and disconnect codes (close frame code on a
bidirectional WebSocket, ``disconnect`` push elsewhere) are listed in PROTOCOL.md §4. Every
code the server sends has exactly one home: this module.

Disconnect ranges: 3000-3499 and 4000-4499 make clients reconnect, 3500-3999 and 4500-4999 are
terminal.

Every registry entry (``ErrorCode.X``, ``Disconnect.X``) gives a **new** exception object on each
access. An exception object raised twice keeps the first raise's traceback and appends the
second's: a shared instance raised once per refused command would keep every raising frame (and
the client, transport and request bytes they reference) alive for the life of the process.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Generic, TypeVar

__all__ = [
    "Disconnect",
    "ErrorCode",
    "ProtocolError",
    "ReplyError",
    "Unsubscribe",
]

E = TypeVar("E")


class _Fresh(Generic[E]):
    """A class attribute that builds a new ``E`` on every access (see the module docstring)."""

    __slots__ = ("_make",)

    def __init__(self, make: Callable[[], E]) -> None:
        self._make = make

    def __get__(self, obj: object, owner: type | None = None) -> E:
        return self._make()


def _reply(code: int, message: str, temporary: bool = False) -> _Fresh[ReplyError]:
    return _Fresh(lambda: ReplyError(code, message, temporary))


def _disconnect(code: int, reason: str) -> _Fresh[Disconnect]:
    return _Fresh(lambda: Disconnect(code, reason))


@dataclass(frozen=True, slots=True)
class ReplyError(Exception):
    """A command failed; the client gets ``{"id":N,"error":{"code":C,"message":M}}``."""

    code: int
    message: str
    temporary: bool = False

    def __str__(self) -> str:
        return f"{self.code}: {self.message}"


class ErrorCode:
    INTERNAL = _reply(100, "internal server error", True)
    UNAUTHORIZED = _reply(101, "unauthorized")
    UNKNOWN_CHANNEL = _reply(102, "unknown channel")
    PERMISSION_DENIED = _reply(103, "permission denied")
    METHOD_NOT_FOUND = _reply(104, "method not found")
    ALREADY_SUBSCRIBED = _reply(105, "already subscribed")
    LIMIT_EXCEEDED = _reply(106, "limit exceeded")
    BAD_REQUEST = _reply(107, "bad request")
    NOT_AVAILABLE = _reply(108, "not available")
    TOKEN_EXPIRED = _reply(109, "token expired")
    EXPIRED = _reply(110, "expired")
    TOO_MANY_REQUESTS = _reply(111, "too many requests", True)
    UNRECOVERABLE_POSITION = _reply(112, "unrecoverable position")


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

    CONNECTION_CLOSED: ClassVar[_Fresh[Disconnect]]
    SHUTDOWN: ClassVar[_Fresh[Disconnect]]
    INTERNAL: ClassVar[_Fresh[Disconnect]]
    EXPIRED: ClassVar[_Fresh[Disconnect]]
    SUB_EXPIRED: ClassVar[_Fresh[Disconnect]]
    SLOW: ClassVar[_Fresh[Disconnect]]
    WRITE_ERROR: ClassVar[_Fresh[Disconnect]]
    INSUFFICIENT_STATE: ClassVar[_Fresh[Disconnect]]
    FORCE_RECONNECT: ClassVar[_Fresh[Disconnect]]
    NO_PONG: ClassVar[_Fresh[Disconnect]]
    TOO_MANY_REQUESTS: ClassVar[_Fresh[Disconnect]]
    INVALID_TOKEN: ClassVar[_Fresh[Disconnect]]
    BAD_REQUEST: ClassVar[_Fresh[Disconnect]]
    STALE: ClassVar[_Fresh[Disconnect]]
    FORCE_DISCONNECT: ClassVar[_Fresh[Disconnect]]
    CONNECTION_LIMIT: ClassVar[_Fresh[Disconnect]]
    CHANNEL_LIMIT: ClassVar[_Fresh[Disconnect]]
    INAPPROPRIATE_PROTOCOL: ClassVar[_Fresh[Disconnect]]
    PERMISSION_DENIED: ClassVar[_Fresh[Disconnect]]
    NOT_AVAILABLE: ClassVar[_Fresh[Disconnect]]
    TOO_MANY_ERRORS: ClassVar[_Fresh[Disconnect]]
    MESSAGE_SIZE_LIMIT: ClassVar[_Fresh[Disconnect]]


Disconnect.CONNECTION_CLOSED = _disconnect(3000, "connection closed")  # it went meanwhile
Disconnect.SHUTDOWN = _disconnect(3001, "shutdown")
Disconnect.INTERNAL = _disconnect(3004, "internal server error")
Disconnect.EXPIRED = _disconnect(3005, "connection expired")
Disconnect.SUB_EXPIRED = _disconnect(3006, "subscription expired")
Disconnect.SLOW = _disconnect(3008, "slow")
Disconnect.WRITE_ERROR = _disconnect(3009, "write error")
Disconnect.INSUFFICIENT_STATE = _disconnect(3010, "insufficient state")
Disconnect.FORCE_RECONNECT = _disconnect(3011, "force reconnect")
Disconnect.NO_PONG = _disconnect(3012, "no pong")
Disconnect.TOO_MANY_REQUESTS = _disconnect(3013, "too many requests")
Disconnect.INVALID_TOKEN = _disconnect(3500, "invalid token")
Disconnect.BAD_REQUEST = _disconnect(3501, "bad request")
Disconnect.STALE = _disconnect(3502, "stale")
Disconnect.FORCE_DISCONNECT = _disconnect(3503, "force disconnect")
Disconnect.CONNECTION_LIMIT = _disconnect(3504, "connection limit")
Disconnect.CHANNEL_LIMIT = _disconnect(3505, "channel limit")
Disconnect.INAPPROPRIATE_PROTOCOL = _disconnect(3506, "inappropriate protocol")
Disconnect.PERMISSION_DENIED = _disconnect(3507, "permission denied")
Disconnect.NOT_AVAILABLE = _disconnect(3508, "not available")
Disconnect.TOO_MANY_ERRORS = _disconnect(3509, "too many errors")
# Not a Centrifugo disconnect: the WebSocket close code for "message too big" (RFC 6455).
Disconnect.MESSAGE_SIZE_LIMIT = _disconnect(1009, "message size limit exceeded")


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

    def __init__(self, message: str, disconnect: Disconnect | None = None) -> None:
        super().__init__(message)
        self.disconnect = disconnect if disconnect is not None else Disconnect.BAD_REQUEST
