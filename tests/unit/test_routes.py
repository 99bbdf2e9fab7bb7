"""``routes.Readiness``: the engine is asked at most once per ``ttl``, probes share a check,
failures and timeouts become reasons."""

from __future__ import annotations

import asyncio
from typing import cast

from tidings.engine.base import Engine, EngineError
from tidings.transports.routes import Readiness


class FakeEngine:
    def __init__(self) -> None:
        self.asked = 0
        self.error: EngineError | None = None
        self.delay = 0.0

    async def ready(self) -> None:
        self.asked += 1
        await asyncio.sleep(self.delay)
        if self.error is not None:
            raise self.error


def readiness(engine: FakeEngine, *, ttl: float = 60.0) -> Readiness:
    spawn = asyncio.get_running_loop().create_task
    return Readiness(cast(Engine, engine), spawn, timeout=0.2, ttl=ttl)


async def test_the_answer_is_kept_for_ttl_and_shared_by_concurrent_probes() -> None:
    engine = FakeEngine()
    engine.delay = 0.02
    ready = readiness(engine)
    assert await asyncio.gather(*(ready.reason() for _ in range(5))) == [""] * 5
    assert await ready.reason() == ""
    assert engine.asked == 1


async def test_a_failure_is_the_reason_until_the_next_check() -> None:
    engine = FakeEngine()
    engine.error = EngineError("redis 127.0.0.1:6379: pub/sub not connected")
    ready = readiness(engine, ttl=0.0)
    assert await ready.reason() == "redis 127.0.0.1:6379: pub/sub not connected"
    engine.error = None
    assert await ready.reason() == ""
    assert engine.asked == 2


async def test_an_engine_that_does_not_answer_in_time_is_not_ready() -> None:
    engine = FakeEngine()
    engine.delay = 10.0
    assert "did not answer within 0.2s" in await readiness(engine).reason()


def test_same_host_origins_when_none_are_listed() -> None:
    from tidings.transports.httpbase import origin_allowed

    assert origin_allowed(None, [])  # not a browser
    assert origin_allowed("https://chat.example.com", [], "chat.example.com")  # behind nginx
    assert origin_allowed("https://chat.example.com:443", [], "chat.example.com")
    assert origin_allowed("http://127.0.0.1:8000", [], "127.0.0.1:8000")
    assert not origin_allowed("http://127.0.0.1:8001", [], "127.0.0.1:8000")
    assert not origin_allowed("https://evil.example", [], "chat.example.com")
    assert not origin_allowed("https://chat.example.com", [], None)
    assert not origin_allowed("null", [], "chat.example.com")
    # A list replaces the same-host rule: only the listed patterns.
    assert not origin_allowed("https://chat.example.com", ["https://app.example.com"],
                              "chat.example.com")
