"""What a client connection and its node see of each other, as typed interfaces.

- ``ClientHost``: what a client needs from its node, its parts by name, never the node itself
  (``tidings.core.node.Node`` implements it);
- ``Connection``: what the command handlers need from a client
  (``tidings.core.client.Client`` implements it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine
from typing import Any, Protocol

from tidings.config import Config
from tidings.core.channels import Channels
from tidings.core.hooks import Hooks
from tidings.core.limits import Limits
from tidings.core.peer import Peer
from tidings.core.registry import Registry
from tidings.core.timers import Timers
from tidings.core.writer import Writer
from tidings.engine.base import Engine
from tidings.errors import ReplyError
from tidings.metrics.counts import Counts
from tidings.protocol.channels import ChannelRules
from tidings.protocol.messages import Reply
from tidings.protocol.ratelimit import RateState
from tidings.protocol.session import Session

__all__ = ["ClientHost", "Connection"]


class ClientHost(Protocol):
    id: str
    config: Config
    rules: ChannelRules
    limits: Limits
    counts: Counts
    engine: Engine
    hooks: Hooks
    registry: Registry
    timers: Timers
    writer: Writer
    channels: Channels
    # Per transport kind: [messages sent, bytes sent, frames received, bytes received].
    transport_stats: list[list[int]]

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    def spawn(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run a background coroutine owned by the node (awaited at shutdown)."""
        ...

    def new_session(self) -> Session: ...

    def client_opened(self, client: Peer) -> None: ...

    def client_connected(self, client: Peer) -> None: ...

    def client_closed(self, client: Peer, code: int, reason: str) -> None:
        """Called once when a client is gone (``code`` 0: the peer went away)."""
        ...


class Connection(Peer, Protocol):
    """A client as its command handlers (``commands``, ``connecting``, ``subscribing``) see
    it: a Peer plus its node and its reply helpers."""

    node: ClientHost
    rates: RateState | None  # rate limit buckets, made on first use

    def reply(self, reply: Reply) -> None: ...

    def reply_error(self, cmd_id: int, err: ReplyError) -> None: ...
