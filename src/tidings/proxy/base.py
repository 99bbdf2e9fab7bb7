"""What every hook caller is (``Caller``) and what a connection tells it (``Who``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, TypeVar

import msgspec

from tidings.config.proxyschema import ProxyConfig

__all__ = ["Caller", "HookFailure", "HookState", "Who", "forwarded"]

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


class Caller(Protocol):
    name: str  # "default" or the named proxy's name
    config: ProxyConfig

    async def call(self, hook: str, request: msgspec.Struct, response: type[R],
                   who: Who | None) -> R:
        """``request`` answered as ``response``; raises HookFailure."""
        ...


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
