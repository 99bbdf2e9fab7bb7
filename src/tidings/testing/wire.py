"""The test clients' protocol, without I/O: commands written as JSON frames (client protocol
v2, PROTOCOL.md §1.3), frames read into replies and pushes, and a router that hands each reply
to whoever waits for it and each publication to its channel's subscription.

The sync and async clients (``tidings.testing.client``) only move frames: a reader feeds
``Router.receive`` and sends what it returns (a pong).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Closed", "Publication", "ReplyError", "Router", "since_params"]


class ReplyError(Exception):
    """The server answered a command with an error (``code``, ``message``)."""

    def __init__(self, code: int, message: str, *, temporary: bool = False) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.temporary = temporary


class Closed(ConnectionError):
    """The connection is closed: ``code`` and ``reason`` of the close frame (the disconnect)."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Publication:
    """One publication a subscription received (live, or recovered at subscribe)."""

    channel: str
    data: Any
    offset: int = 0
    tags: dict[str, str] = field(default_factory=dict)
    info: dict[str, Any] | None = None

    @classmethod
    def from_wire(cls, channel: str, pub: dict[str, Any]) -> Publication:
        return cls(channel, pub.get("data"), int(pub.get("offset", 0)),
                   dict(pub.get("tags") or {}), pub.get("info"))


def since_params(since: Any) -> dict[str, Any]:
    """Subscribe fields recovering from ``since`` (a ``StreamPosition``, a dict with
    ``offset``/``epoch``, or None)."""
    if since is None:
        return {}
    if isinstance(since, dict):
        offset, epoch = since.get("offset", 0), since.get("epoch", "")
    else:
        offset, epoch = since.offset, since.epoch
    return {"recover": True, "offset": int(offset), "epoch": str(epoch)}


Waiter = Callable[[dict[str, Any] | None, ReplyError | Closed | None], None]
Sink = Callable[[Publication], None]


class Router:
    """Command IDs, replies to their waiters, publications to their channel's sink."""

    def __init__(self) -> None:
        self._next_id = 0
        self._waiters: dict[int, tuple[str, str, Waiter]] = {}
        self.sinks: dict[str, Sink] = {}
        self.pong = False
        self.closed: Closed | None = None
        self.pushes: list[dict[str, Any]] = []  # every push but publications, for inspection

    def command(self, method: str, params: dict[str, Any], waiter: Waiter) -> str:
        """The frame of one command; ``waiter(result, error)`` gets its reply."""
        if self.closed is not None:
            raise self.closed
        self._next_id += 1
        self._waiters[self._next_id] = (method, str(params.get("channel", "")), waiter)
        return json.dumps({"id": self._next_id, method: params}, separators=(",", ":"))

    def receive(self, frame: str | bytes) -> list[str]:
        """Route one frame (replies and pushes joined by newlines); the frames to send back."""
        text = frame.decode() if isinstance(frame, bytes) else frame
        out: list[str] = []
        for line in text.strip().split("\n"):
            if not line.strip():
                continue
            message = json.loads(line)
            if not message:  # a server ping
                if self.pong:
                    out.append("{}")
                continue
            if message.get("id"):
                self._reply(message)
            elif "push" in message:
                self._push(message["push"])
        return out

    def _reply(self, message: dict[str, Any]) -> None:
        method, channel, waiter = self._waiters.pop(int(message["id"]), ("", "", None))
        if waiter is None:
            return
        error = message.get("error")
        if error is not None:
            waiter(None, ReplyError(int(error.get("code", 0)), str(error.get("message", "")),
                                    temporary=bool(error.get("temporary", False))))
            return
        result = message.get(method) or {}
        if method == "connect":
            self.pong = bool(result.get("pong"))
        elif method == "subscribe":
            self._recovered(channel, result)
        waiter(result, None)

    def _push(self, push: dict[str, Any]) -> None:
        channel = str(push.get("channel", ""))
        if "pub" in push:
            sink = self.sinks.get(channel)
            if sink is not None:
                sink(Publication.from_wire(channel, push["pub"]))
            return
        self.pushes.append(push)

    def _recovered(self, channel: str, result: dict[str, Any]) -> None:
        """A subscribe reply's recovered publications go to the channel's sink before any
        later push (the reader reads the reply first)."""
        sink = self.sinks.get(channel)
        for pub in result.get("publications") or []:
            if sink is not None:
                sink(Publication.from_wire(channel, pub))

    def close(self, code: int | None, reason: str) -> None:
        """The connection ended: every waiter gets :class:`Closed`."""
        self.closed = Closed(code, reason)
        waiters, self._waiters = self._waiters, {}
        for _method, _channel, waiter in waiters.values():
            waiter(None, self.closed)
