"""What every hook caller is (``Caller``) and what a connection tells it (``Who``)."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from typing import Protocol, TypeVar

import msgspec

from tidings.config.proxyschema import ProxyConfig
from tidings.metrics.timing import Timing

__all__ = ["CallStats", "Caller", "CountedCaller", "HeaderRules", "HookFailure", "HookState",
           "Who"]

log = logging.getLogger("tidings.proxy")

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


class HeaderRules:
    """Which headers a proxy forwards (PROXY.md §3.2), lower-cased once: the allowed emulated
    headers, then the allowed headers of the connection's own HTTP request (these win).
    ``never``: names the caller sets itself, never forwarded."""

    __slots__ = ("emulated", "http")

    def __init__(self, config: ProxyConfig, never: frozenset[str] = frozenset()) -> None:
        self.emulated = frozenset(h.lower() for h in config.emulated_headers) - never
        self.http = frozenset(h.lower() for h in config.http_headers) - never

    def forwarded(self, who: Who | None) -> dict[str, str]:
        out: dict[str, str] = {}
        if who is None:
            return out
        emulated = who.emulated_headers
        if emulated and self.emulated:
            out.update((k, v) for k, v in emulated.items() if k in self.emulated)
        headers = who.headers
        if headers and self.http:
            out.update((k, v) for k, v in headers.items() if k in self.http)
        return out


class CountedCaller:
    """A caller's counting ``call`` around its ``_call``, and its failure log."""

    kind = "hook"  # in the log: "<hook> proxy ..." over HTTP, "<hook> hook ..." in process
    never_forwarded: frozenset[str] = frozenset()

    def __init__(self, name: str, config: ProxyConfig) -> None:
        self.name = name
        self.config = config
        self.stats = CallStats()
        self.headers = HeaderRules(config, self.never_forwarded)

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

    def _failed(self, hook: str, why: str) -> HookFailure:
        log.warning("%s %s %r (%s) failed: %s", hook, self.kind, self.name,
                    self.config.endpoint, why,
                    extra={"hook": hook, "proxy": self.name, "endpoint": self.config.endpoint,
                           "error": why})
        return HookFailure(why)
