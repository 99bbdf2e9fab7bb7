"""The event seam: where an application observes client events or answers them.

Each answering hook is one async callable, or None (the built-in behaviour). A hook refuses by
raising ``ReplyError`` (the client gets that error) or ``Disconnect`` (the connection is closed
with that code); anything else it raises is an internal error (the client gets 100, the node
logs it). Observers are plain callables, called in order; one that raises is logged and the
rest still run.

- ``connecting``: a connect without a token: return the connection's ``Credentials``, or None
  for the anonymous rules (``client.allow_anonymous_connect_without_token``);
- ``subscribing``: a client subscribe that passed the channel's own checks: return a
  ``SubscribeAnswer`` (info and data for the subscription) or None;
- ``publishing``: a client publication that passed the channel's checks: return replacement
  data, or None to publish it as it is;
- ``rpc``: a client RPC: return the result's data (without a hook: 108 "not available");
- ``refreshing``: a connection whose expiry has come: return the new expiry (unix seconds; 0
  for none) to keep it, or None to disconnect it (3005) as without a hook;
- ``connected`` / ``disconnected``: observers of authenticated connections and of every close.

Backend hooks over HTTP (Centrifugo's proxy protocol) are built on this seam; in-process Python
hooks are assigned directly (``node.hooks.rpc = my_rpc``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from tidings.errors import ErrorCode
from tidings.protocol import codec
from tidings.protocol.session import Credentials

__all__ = [
    "ClientEvent",
    "ConnectingEvent",
    "Credentials",
    "DisconnectedEvent",
    "Hooks",
    "PublishingEvent",
    "RefreshingEvent",
    "RpcEvent",
    "SubscribeAnswer",
    "SubscribingEvent",
    "checked_json",
]

log = logging.getLogger("tidings.hooks")

E = TypeVar("E", bound="ClientEvent")


@dataclass(frozen=True, slots=True)
class ClientEvent:
    """Who: the connection's client ID, user ("" before authentication or anonymous) and
    transport name."""

    client: str
    user: str
    transport: str


@dataclass(frozen=True, slots=True)
class ConnectingEvent(ClientEvent):
    data: bytes | None = None  # the connect command's data
    name: str = ""  # the SDK's name and version, as the client says
    version: str = ""


@dataclass(frozen=True, slots=True)
class SubscribingEvent(ClientEvent):
    channel: str = ""
    data: bytes | None = None


@dataclass(frozen=True, slots=True)
class SubscribeAnswer:
    info: bytes | None = None  # channel info for presence and join/leave (JSON)
    data: bytes | None = None  # sent to the client in the subscribe result (JSON)


@dataclass(frozen=True, slots=True)
class PublishingEvent(ClientEvent):
    channel: str = ""
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class RpcEvent(ClientEvent):
    method: str = ""
    data: bytes = b""


@dataclass(frozen=True, slots=True)
class RefreshingEvent(ClientEvent):
    expires_at: int = 0


@dataclass(frozen=True, slots=True)
class DisconnectedEvent(ClientEvent):
    code: int = 0
    reason: str = ""


def checked_json(data: bytes, hook: str) -> bytes:
    """A hook's JSON answer, checked before any client sees it: a hook that returns something
    that is not JSON is a bug of the hook (the client gets 100, the log says which hook)."""
    problem = codec.json_error(data)
    if problem:
        log.error("the %s hook returned data that is not JSON: %s", hook, problem)
        raise ErrorCode.INTERNAL
    return data


@dataclass
class Hooks:
    connecting: Callable[[ConnectingEvent], Awaitable[Credentials | None]] | None = None
    subscribing: Callable[[SubscribingEvent], Awaitable[SubscribeAnswer | None]] | None = None
    publishing: Callable[[PublishingEvent], Awaitable[bytes | None]] | None = None
    rpc: Callable[[RpcEvent], Awaitable[bytes]] | None = None
    refreshing: Callable[[RefreshingEvent], Awaitable[int | None]] | None = None
    connected: list[Callable[[ClientEvent], None]] = field(default_factory=list)
    disconnected: list[Callable[[DisconnectedEvent], None]] = field(default_factory=list)

    def notify_connected(self, event: ClientEvent) -> None:
        _notify(self.connected, event, "connected")

    def notify_disconnected(self, event: DisconnectedEvent) -> None:
        _notify(self.disconnected, event, "disconnected")


def _notify(observers: Sequence[Callable[[E], None]], event: E, what: str) -> None:
    for observer in observers:
        try:
            observer(event)
        except Exception:
            log.exception("a %s observer failed", what)
