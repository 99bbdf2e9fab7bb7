"""Engine contract fixtures: every engine passes the same tests (tests/contract/test_engine.py).

``engine_env`` yields an :class:`EngineEnv` for each engine: memory (with a clock the test moves)
and Redis (a real ``redis-server`` started once per test session on a free port; each test gets
its own key prefix; time passes for real, so its TTLs are seconds, not minutes). Distributed
engines deliver events asynchronously: ``await env.settle()`` returns once everything published
before it has reached the handler.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from tests.support.engine import EngineEnv, FakeClock, Recorder, redis_config
from tests.support.redisproc import RedisServer
from tidings.engine import ENGINES
from tidings.engine.base import Engine, HistoryOptions
from tidings.engine.memory import MemoryEngine
from tidings.engine.redis import RedisEngine


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session's engine tests."""
    path: Path = tmp_path_factory.mktemp("redis")
    with RedisServer(path) as server:
        yield server


def memory_engine(request: pytest.FixtureRequest) -> tuple[Engine, FakeClock | None,
                                                           HistoryOptions]:
    clock = FakeClock()
    return MemoryEngine(clock=clock), clock, HistoryOptions(size=5, ttl=60.0, meta_ttl=3600.0)


def redis_engine(request: pytest.FixtureRequest) -> tuple[Engine, FakeClock | None,
                                                          HistoryOptions]:
    server: RedisServer = request.getfixturevalue("redis_server")
    engine = RedisEngine(redis_config(address=[server.url], presence_ttl=60.0))
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
