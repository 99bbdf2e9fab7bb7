"""Engine contract fixtures: every engine passes the same tests (tests/contract/test_engine.py).

``engine_env`` yields an :class:`EngineEnv` with a started engine, a recording event handler and
a clock the test can move forward. Engines with a real clock (added later: Redis) provide
``advance`` by sleeping, and are marked accordingly.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest

from tidings.engine.base import Engine
from tidings.engine.memory import MemoryEngine
from tidings.protocol.messages import ClientInfo, Publication, StreamPosition


@dataclass
class Recorder:
    """A BrokerEventHandler that records what it receives."""

    publications: list[tuple[str, Publication, StreamPosition]] = field(default_factory=list)
    joins: list[tuple[str, ClientInfo]] = field(default_factory=list)
    leaves: list[tuple[str, ClientInfo]] = field(default_factory=list)
    controls: list[bytes] = field(default_factory=list)

    def handle_publication(self, channel: str, pub: Publication, position: StreamPosition) -> None:
        self.publications.append((channel, pub, position))

    def handle_join(self, channel: str, info: ClientInfo) -> None:
        self.joins.append((channel, info))

    def handle_leave(self, channel: str, info: ClientInfo) -> None:
        self.leaves.append((channel, info))

    def handle_control(self, data: bytes) -> None:
        self.controls.append(data)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class EngineEnv:
    engine: Engine
    events: Recorder
    clock: FakeClock

    async def advance(self, seconds: float) -> None:
        self.clock.now += seconds


@pytest.fixture(params=["memory"])
async def engine_env(request: pytest.FixtureRequest) -> AsyncIterator[EngineEnv]:
    clock = FakeClock()
    engine = MemoryEngine(clock=clock)
    events = Recorder()
    engine.register_handler(events)
    await engine.start()
    try:
        yield EngineEnv(engine, events, clock)
    finally:
        await engine.close()
