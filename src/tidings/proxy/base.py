"""What every hook caller is (``Caller``) and what a connection tells it (``Who``)."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Protocol, TypeVar

import msgspec

from tidings.config.proxyschema import ProxyConfig
from tidings.metrics.timing import Timing

__all__ = ["CallStats", "Caller", "CountedCaller", "HookFailure", "HookState", "Who",
           "forwarded"]

R = TypeVar("R", bound=msgspec.Struct)


class HookFailure(Exception):
    """The hook could not be asked, or its answer could not be read."""


class Who(Protocol):
    """The connection a call is made for: the headers of the request that opened it and the
    client's emulated headers (both lower-cased, None when none were kept)."""

    @property
    def headers(self) -> Mapping[str, str] | None: ...

    @property
    def emulated_headers(self) -> Mapping[str, str] | None: ...


class HookState:
    """What hooks need to remember of one connection (made only for connections that have
    some): forwarded headers and the connection ``meta`` a connect hook gave."""

    __slots__ = ("emulated_headers", "headers", "meta")

    def __init__(self, headers: Mapping[str, str] | None = None) -> None:
        self.headers = headers
        self.emulated_headers: Mapping[str, str] | None = None
        self.meta: bytes | None = None


class CallStats:
    """Plain counters of one caller, read when asked (``Hooks.stats``, metrics)."""

    __slots__ = ("calls", "failures", "inflight", "seconds", "timing")

    def __init__(self) -> None:
        self.calls = 0
        self.failures = 0  # unexpected failures only (not error/disconnect answers)
        self.inflight = 0
        self.seconds = 0.0  # summed duration of finished calls
        self.timing = Timing()  # for /metrics (centrifugo_proxy_duration_seconds)

    def as_dict(self) -> dict[str, float]:
        return {"calls": self.calls, "failures": self.failures, "inflight": self.inflight,
                "seconds": round(self.seconds, 6)}


class Caller(Protocol):
    name: str  # "default" or the named proxy's name
    config: ProxyConfig
    stats: CallStats

    async def call(self, hook: str, request: msgspec.Struct, response: type[R],
                   who: Who | None) -> R:
        """``request`` answered as ``response``; raises HookFailure."""
        ...


class CountedCaller:
    """A caller's counting ``call`` around its ``_call``."""

    def __init__(self, name: str, config: ProxyConfig) -> None:
        self.name = name
        self.config = config
        self.stats = CallStats()

    async def call(self, hook: str, request: msgspec.Struct, response: type[R],
                   who: Who | None) -> R:
        stats = self.stats
        stats.calls += 1
        stats.inflight += 1
        started = time.perf_counter()
        try:
            return await self._call(hook, request, response, who)
        except HookFailure:
            stats.failures += 1
            raise
        finally:
            stats.inflight -= 1
            elapsed = time.perf_counter() - started
            stats.seconds += elapsed
            stats.timing.observe_at(elapsed, time.monotonic())

    async def _call(self, hook: str, request: msgspec.Struct, response: type[R],
                    who: Who | None) -> R:
        raise NotImplementedError


def forwarded(config: ProxyConfig, who: Who | None) -> dict[str, str]:
    """The headers a call forwards (PROXY.md §3.2): the allowed emulated headers, then the
    allowed headers of the connection's own HTTP request (these win). Lower-case names."""
    out: dict[str, str] = {}
    if who is None:
        return out
    emulated = who.emulated_headers
    if emulated and config.emulated_headers:
        allowed = {h.lower() for h in config.emulated_headers}
        out.update((k, v) for k, v in emulated.items() if k in allowed)
    headers = who.headers
    if headers and config.http_headers:
        allowed = {h.lower() for h in config.http_headers}
        out.update((k, v) for k, v in headers.items() if k in allowed)
    return out
