"""Hooks over HTTP: Centrifugo's JSON proxy protocol (PROXY.md §3).

One ``HttpPool`` per node: keep-alive connections to each backend, reused (no connection per
call), through the small HTTP/1.1 client of ``proxy/h1.py`` (docs/design.md says why not
aiohttp's). The request body is the request struct as JSON (payloads verbatim); the answer
must be a 200 with a JSON object of at most ``MAX_RESPONSE_SIZE`` bytes;
``http.status_to_code_transforms`` turn chosen statuses into an error or a disconnect answer
instead of a failure.
"""

from __future__ import annotations

import asyncio
from typing import TypeVar

import msgspec

from tidings.config.proxyschema import ProxyConfig
from tidings.config.tls import client_context
from tidings.protocol.proxyproto import Disconnect, Error
from tidings.proxy import h1
from tidings.proxy.base import CountedCaller, Who

__all__ = ["MAX_RESPONSE_SIZE", "HttpCaller", "HttpPool"]

R = TypeVar("R", bound=msgspec.Struct)

MAX_RESPONSE_SIZE = 8 * 1024 * 1024  # an answer larger than this is a failure (error 100)
_POOL_LIMIT = 512  # connections open at once to all backends; more calls wait for one
_encode = msgspec.json.Encoder().encode
_OWN_HEADERS = ("content-type", "content-length", "host", "transfer-encoding", "trailer",
                "connection", "upgrade", "te", "keep-alive")
# Hooks that can be asked twice with no harm: a request on a reused keep-alive connection that
# the backend closed before answering is sent once more for these only (Go's client, which
# Centrifugo uses, never replays a POST; publish and rpc are not replayed here either).
_REPLAYABLE = frozenset({"connect", "refresh", "subscribe", "sub_refresh"})


class HttpPool:
    """The node's keep-alive connections to its backends (made on first use, in the loop)."""

    def __init__(self) -> None:
        self._pool: h1.Pool | None = None

    def pool(self) -> h1.Pool:
        if self._pool is None:
            self._pool = h1.Pool(limit=_POOL_LIMIT, max_body=MAX_RESPONSE_SIZE)
        return self._pool

    async def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool = None


class HttpCaller(CountedCaller):
    """One proxy object with an ``http(s)://`` endpoint."""

    kind = "proxy"
    never_forwarded = frozenset(_OWN_HEADERS)  # set by the client itself, or hop-by-hop

    def __init__(self, name: str, config: ProxyConfig, pool: HttpPool) -> None:
        super().__init__(name, config)
        self._pool = pool
        tls = config.http.tls
        self._endpoint = h1.Endpoint(config.endpoint,
                                     client_context(tls) if tls.enabled else None,
                                     server_name=tls.server_name)
        self._static = {k.lower(): v for k, v in config.http.static_headers.items()
                        if k.lower() not in self.never_forwarded}
        self._transforms = {t.status_code: t for t in config.http.status_to_code_transforms}

    async def _call(self, hook: str, request: msgspec.Struct, response: type[R],
                    who: Who | None) -> R:
        headers = {**self._static, **self.headers.forwarded(who)}
        try:
            body = _encode(request)
        except (TypeError, msgspec.EncodeError) as exc:
            raise self._failed(hook, f"request not encodable: {exc}") from None
        try:
            async with asyncio.timeout(self.config.timeout):
                status, raw = await self._pool.pool().post(
                    self._endpoint, headers, body, replay=hook in _REPLAYABLE)
        except TimeoutError:
            raise self._failed(hook, f"no answer within {self.config.timeout:g}s") from None
        except h1.HttpError as exc:
            raise self._failed(hook, str(exc)) from None
        if status != 200:
            return self._transformed(hook, status, response)
        try:
            return msgspec.json.decode(raw, type=response)
        except (msgspec.DecodeError, msgspec.ValidationError, RecursionError) as exc:
            raise self._failed(hook, f"unreadable answer: {type(exc).__name__}: {exc}") from None

    def _transformed(self, hook: str, status: int, response: type[R]) -> R:
        transform = self._transforms.get(status)
        if transform is None:
            raise self._failed(hook, f"status {status}")
        if transform.to_error.code:
            err = transform.to_error
            return response(error=Error(code=err.code, message=err.message,
                                        temporary=err.temporary))
        dis = transform.to_disconnect
        return response(disconnect=Disconnect(code=dis.code, reason=dis.reason))
