"""Engines seen from outside: a broker event handler that records what it receives, and the
environment of one engine under the contract (tests/contract)."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import dataclass, field
from typing import Any

from tests.support.server import unique
from tidings.config import RedisConfig
from tidings.engine.base import Engine, HistoryOptions, PublishOptions
from tidings.engine.memory import MemoryEngine
from tidings.engine.redis import RedisEngine
from tidings.protocol.messages import ClientInfo, Publication, StreamPosition


def redis_config(**fields: Any) -> RedisConfig:
    """A Redis engine config with a key prefix of its own (no test sees another's keys)."""
    return RedisConfig(**{"prefix": unique("t"), **fields})


# Control messages starting with this are settle markers (tests/contract/conftest.py), kept
# apart from the controls a test publishes.
SETTLE = b"__settle__"


@dataclass
class Recorder:
    """A BrokerEventHandler that records what it receives."""

    publications: list[tuple[str, Publication, StreamPosition]] = field(default_factory=list)
    deltas: list[bool] = field(default_factory=list)
    joins: list[tuple[str, ClientInfo]] = field(default_factory=list)
    leaves: list[tuple[str, ClientInfo]] = field(default_factory=list)
    controls: list[bytes] = field(default_factory=list)
    reconnects: list[list[str]] = field(default_factory=list)
    settled: set[bytes] = field(default_factory=set)
    changed: asyncio.Event = field(default_factory=asyncio.Event)

    def handle_publication(
        self, channel: str, pub: Publication, position: StreamPosition, delta: bool
    ) -> None:
        self.publications.append((channel, pub, position))
        self.deltas.append(delta)
        self.changed.set()

    def handle_join(self, channel: str, info: ClientInfo) -> None:
        self.joins.append((channel, info))
        self.changed.set()

    def handle_leave(self, channel: str, info: ClientInfo) -> None:
        self.leaves.append((channel, info))
        self.changed.set()

    def handle_control(self, data: bytes) -> None:
        if data.startswith(SETTLE):
            self.settled.add(data)
        else:
            self.controls.append(data)
        self.changed.set()

    def handle_reconnect(self, channels: list[str]) -> None:
        self.reconnects.append(sorted(channels))
        self.changed.set()

    async def wait_for(self, predicate: object, within: float = 5.0) -> None:
        """Wait until ``predicate()`` is true (events arrive asynchronously)."""
        assert callable(predicate)
        async with asyncio.timeout(within):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


_settle_ids = itertools.count()


@dataclass
class EngineEnv:
    engine: Engine
    events: Recorder
    clock: FakeClock | None
    opts: HistoryOptions

    @property
    def stream(self) -> PublishOptions:
        """Publish into the channel's history stream (``opts``)."""
        return PublishOptions(history=self.opts)

    async def advance(self, seconds: float) -> None:
        if self.clock is not None:
            self.clock.now += seconds
        else:
            await asyncio.sleep(seconds)

    async def settle(self) -> None:
        """Everything published so far has reached the handler (a control message published
        now comes back after it: Redis delivers one connection's messages in order)."""
        marker = SETTLE + str(next(_settle_ids)).encode()
        await self.engine.publish_control(marker)
        await self.events.wait_for(lambda: marker in self.events.settled)

    def set_idempotency_ttl(self, seconds: float) -> None:
        assert isinstance(self.engine, MemoryEngine | RedisEngine)
        self.engine.idempotency_ttl = seconds
