"""How an app's code reaches Tidings: over the HTTP API of a Tidings running beside it
(``tidings.client``, built on ``cent``: pooled, timeouts, retries with an idempotency key), or
in process (``tidings.BackgroundServer`` for synchronous code, ``tidings.Server`` for async).

Either way the answers are :mod:`tidings.results` types and every failure is a
:class:`~tidings.results.ApiError`: the API's own error, or code 100 when Tidings could not be
reached (after the retries), 401 when it refused the API key, so callers catch one
exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Coroutine, Mapping
from typing import Any, Protocol, TypeVar

from tidings.embed import BackgroundServer, Server
from tidings.results import ApiError, PublishResult, StreamPosition

__all__ = [
    "AsyncEmbeddedPublisher",
    "AsyncHttpPublisher",
    "AsyncPublisher",
    "EmbeddedPublisher",
    "HttpPublisher",
    "Publisher",
]

T = TypeVar("T")
UNREACHABLE = 100  # the API's "internal server error": temporary
UNAUTHORIZED = 401  # the HTTP status of a wrong API key (no API code of its own)


class Publisher(Protocol):
    """What synchronous app code (Django, Flask) publishes through."""

    def publish(self, channel: str, data: Any, *, idempotency_key: str = "",
                skip_history: bool = False,
                tags: Mapping[str, str] | None = None) -> PublishResult: ...

    def position(self, channel: str) -> StreamPosition: ...

    def close(self) -> None: ...


class AsyncPublisher(Protocol):
    """What async app code (FastAPI, Django async views) publishes through."""

    async def publish(self, channel: str, data: Any, *, idempotency_key: str = "",
                      skip_history: bool = False,
                      tags: Mapping[str, str] | None = None) -> PublishResult: ...

    async def position(self, channel: str) -> StreamPosition: ...

    async def close(self) -> None: ...


def _request(channel: str, data: Any, idempotency_key: str, skip_history: bool,
             tags: Mapping[str, str] | None) -> Any:
    from cent import PublishRequest

    return PublishRequest(channel=channel, data=data, idempotency_key=idempotency_key or None,
                          skip_history=skip_history or None, tags=dict(tags) if tags else None)


def _history(channel: str) -> Any:
    from cent import HistoryRequest

    return HistoryRequest(channel=channel, limit=0)


def _api_error(exc: Exception) -> ApiError:
    from cent.exceptions import CentApiResponseError, CentUnauthorizedError

    if isinstance(exc, CentApiResponseError):
        return ApiError(exc.code, exc.message)
    if isinstance(exc, CentUnauthorizedError):
        return ApiError(UNAUTHORIZED, "unauthorized: the HTTP API refused the api_key")
    return ApiError(UNREACHABLE, f"tidings unreachable: {exc!r}")


class HttpPublisher:
    """Over the HTTP API (``tidings.client.Client``)."""

    def __init__(self, api_url: str, api_key: str, *, timeout: float = 3.0,
                 retries: int = 2) -> None:
        from tidings.client import Client

        self.client = Client(api_url, api_key, timeout=timeout, retries=retries)

    def publish(self, channel: str, data: Any, *, idempotency_key: str = "",
                skip_history: bool = False,
                tags: Mapping[str, str] | None = None) -> PublishResult:
        from cent.exceptions import CentError

        request = _request(channel, data, idempotency_key, skip_history, tags)
        try:
            result = self.client.publish(request)
        except CentError as exc:
            raise _api_error(exc) from exc
        return PublishResult(offset=result.offset or 0, epoch=result.epoch or "")

    def position(self, channel: str) -> StreamPosition:
        from cent.exceptions import CentError

        try:
            result = self.client.history(_history(channel))
        except CentError as exc:
            raise _api_error(exc) from exc
        return StreamPosition(result.offset or 0, result.epoch or "")

    def close(self) -> None:
        self.client.close()


class AsyncHttpPublisher:
    """Over the HTTP API (``tidings.client.AsyncClient``; its aiohttp session belongs to the
    event loop that first uses it)."""

    def __init__(self, api_url: str, api_key: str, *, timeout: float = 3.0,
                 retries: int = 2) -> None:
        from tidings.client import AsyncClient

        self.client = AsyncClient(api_url, api_key, timeout=timeout, retries=retries)

    async def publish(self, channel: str, data: Any, *, idempotency_key: str = "",
                      skip_history: bool = False,
                      tags: Mapping[str, str] | None = None) -> PublishResult:
        from cent.exceptions import CentError

        request = _request(channel, data, idempotency_key, skip_history, tags)
        try:
            result = await self.client.publish(request)
        except CentError as exc:
            raise _api_error(exc) from exc
        return PublishResult(offset=result.offset or 0, epoch=result.epoch or "")

    async def position(self, channel: str) -> StreamPosition:
        from cent.exceptions import CentError

        try:
            result = await self.client.history(_history(channel))
        except CentError as exc:
            raise _api_error(exc) from exc
        return StreamPosition(result.offset or 0, result.epoch or "")

    async def close(self) -> None:
        await self.client.close()


class EmbeddedPublisher:
    """In process, to a :class:`tidings.BackgroundServer` (its own thread and loop)."""

    def __init__(self, server: BackgroundServer) -> None:
        self.server = server

    def publish(self, channel: str, data: Any, *, idempotency_key: str = "",
                skip_history: bool = False,
                tags: Mapping[str, str] | None = None) -> PublishResult:
        return self.server.publish(channel, data, idempotency_key=idempotency_key,
                                   skip_history=skip_history, tags=tags)

    def position(self, channel: str) -> StreamPosition:
        return self.server.position(channel)

    def close(self) -> None:
        """The server is the app's (or the integration's) to stop."""


class AsyncEmbeddedPublisher:
    """In process, to a :class:`tidings.Server` on this loop, or a
    :class:`tidings.BackgroundServer` on its own."""

    def __init__(self, server: Server | BackgroundServer) -> None:
        self.server = server

    async def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        if isinstance(self.server, Server):
            return await coro
        loop = self.server._loop
        if loop is None:
            coro.close()
            raise RuntimeError("the server is not started")
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, loop))

    def _server(self) -> Server:
        return self.server if isinstance(self.server, Server) else self.server.server

    async def publish(self, channel: str, data: Any, *, idempotency_key: str = "",
                      skip_history: bool = False,
                      tags: Mapping[str, str] | None = None) -> PublishResult:
        return await self._run(self._server().publish(
            channel, data, idempotency_key=idempotency_key, skip_history=skip_history,
            tags=tags))

    async def position(self, channel: str) -> StreamPosition:
        return await self._run(self._server().position(channel))

    async def close(self) -> None:
        """The server is the app's to stop."""
