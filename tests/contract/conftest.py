"""Engine contract fixtures: every engine passes the same tests (tests/contract/test_engine.py).

``engine_env`` yields an :class:`EngineEnv` for each engine: memory (with a clock the test moves)
and Redis (a real ``redis-server`` started once per test session on a free port; each test gets
its own key prefix; time passes for real, so its TTLs are seconds, not minutes). Distributed
engines deliver events asynchronously: ``await env.settle()`` returns once everything published
before it has reached the handler.
"""

from __future__ import annotations

import asyncio
import itertools
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.redisproc import RedisServer
from tidings.config import RedisConfig
from tidings.engine import ENGINES
from tidings.engine.base import Engine, HistoryOptions, PublishOptions
from tidings.engine.memory import MemoryEngine
from tidings.engine.redis import RedisEngine
from tidings.protocol.messages import ClientInfo, Publication, StreamPosition

_SETTLE = b"__settle__"


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
        if data.startswith(_SETTLE):
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
        marker = _SETTLE + str(next(_settle_ids)).encode()
        await self.engine.publish_control(marker)
        await self.events.wait_for(lambda: marker in self.events.settled)

    def set_idempotency_ttl(self, seconds: float) -> None:
        assert isinstance(self.engine, MemoryEngine | RedisEngine)
        self.engine.idempotency_ttl = seconds


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session's engine tests."""
    path: Path = tmp_path_factory.mktemp("redis")
    with RedisServer(path) as server:
        yield server


def redis_config(url: str, **overrides: object) -> RedisConfig:
    cfg = RedisConfig(address=[url], prefix=f"t{uuid.uuid4().hex[:12]}", presence_ttl=60.0)
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return cfg


def memory_engine(request: pytest.FixtureRequest) -> tuple[Engine, FakeClock | None,
                                                           HistoryOptions]:
    clock = FakeClock()
    return MemoryEngine(clock=clock), clock, HistoryOptions(size=5, ttl=60.0, meta_ttl=3600.0)


def redis_engine(request: pytest.FixtureRequest) -> tuple[Engine, FakeClock | None,
                                                          HistoryOptions]:
    server: RedisServer = request.getfixturevalue("redis_server")
    engine = RedisEngine(redis_config(server.url))
    return engine, None, HistoryOptions(size=5, ttl=1.0, meta_ttl=4.0)


# How to set up each registered engine for the contract: an engine added to tidings.engine's
# registry without an entry here fails the check below instead of skipping the contract.
MAKERS = {"memory": memory_engine, "redis": redis_engine}
assert set(MAKERS) == set(ENGINES), f"contract setups {set(MAKERS)} vs engines {set(ENGINES)}"


@pytest.fixture(params=sorted(ENGINES))
async def engine_env(request: pytest.FixtureRequest) -> AsyncIterator[EngineEnv]:
    events = Recorder()
    engine, clock, opts = MAKERS[request.param](request)
    engine.register_handler(events, uuid.uuid4().hex)
    await engine.start()
    if isinstance(engine, RedisEngine):
        assert await engine.wait_connected(5.0)
    try:
        yield EngineEnv(engine, events, clock, opts)
    finally:
        await engine.close()
