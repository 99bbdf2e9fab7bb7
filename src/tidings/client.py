"""The Python publish client for a Tidings (or Centrifugo) running beside the app: the
maintained ``cent`` package, with retries that cannot duplicate a publication.

``cent`` already gives typed requests and results (pydantic), a pooled session (``requests``,
sync; ``aiohttp``, async), timeouts and typed errors (``cent.CentApiResponseError`` with the
API's ``code``, ``CentNetworkError``, ``CentTimeoutError``, ``CentTransportError``), so Tidings
does not write another (docs/design.md). What it adds:

- ``retries``: a request that failed in transit (network error, timeout, HTTP 5xx) or with the
  API's temporary error 100 is sent again after a short backoff, up to ``retries`` more times;
- a ``publish`` or ``broadcast`` (also inside a ``batch``) without an ``idempotency_key`` gets one
  before its first attempt, so a retry of a publication that did reach the server is dropped
  there (Centrifugo's idempotency window, 5 minutes) instead of delivered twice.

::

    from cent import PublishRequest
    from tidings.client import Client

    client = Client("http://127.0.0.1:8000/api", "API_KEY", timeout=3, retries=2)
    result = client.publish(PublishRequest(channel="news", data={"text": "hi"}))
    print(result.offset)
"""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from cent import AsyncClient as _AsyncClient
from cent import BatchRequest, BroadcastRequest, PublishRequest
from cent import Client as _Client
from cent.dto import CentRequest, CentResultType
from cent.exceptions import (
    CentApiResponseError,
    CentError,
    CentNetworkError,
    CentTimeoutError,
    CentTransportError,
)

__all__ = ["AsyncClient", "Client", "retryable", "with_idempotency_key"]

BACKOFF = 0.1  # seconds before the first retry; doubled for each next one
_TEMPORARY = 100  # the API's "internal server error": temporary, worth another try


def retryable(exc: CentError) -> bool:
    """Whether a failed request may succeed when sent again."""
    if isinstance(exc, CentNetworkError | CentTimeoutError):
        return True
    if isinstance(exc, CentTransportError):
        return exc.status_code >= 500
    return isinstance(exc, CentApiResponseError) and exc.code == _TEMPORARY


def with_idempotency_key(request: CentRequest[Any]) -> CentRequest[Any]:
    """The request with an idempotency key on every publication it makes (a copy; the
    caller's own key is kept)."""
    if isinstance(request, PublishRequest | BroadcastRequest):
        if request.idempotency_key:
            return request
        return request.model_copy(update={"idempotency_key": uuid.uuid4().hex})
    if isinstance(request, BatchRequest):
        keyed = [with_idempotency_key(r) if isinstance(r, CentRequest) else r
                 for r in request.requests]
        return request.model_copy(update={"requests": keyed})
    return request


class Client(_Client):
    """``cent.Client`` with safe retries (module docstring)."""

    def __init__(self, api_url: str, api_key: str, *, timeout: float = 10.0,
                 retries: int = 2, **kwargs: Any) -> None:
        super().__init__(api_url, api_key, timeout=timeout, **kwargs)
        self.retries = retries

    def _send(
        self, request: CentRequest[CentResultType], timeout: float | None = None,
    ) -> CentResultType:
        request = with_idempotency_key(request)
        for attempt in range(self.retries + 1):
            try:
                return super()._send(request, timeout=timeout)
            except CentError as exc:
                if attempt == self.retries or not retryable(exc):
                    raise
            time.sleep(BACKOFF * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover


class AsyncClient(_AsyncClient):
    """``cent.AsyncClient`` with safe retries (module docstring)."""

    def __init__(self, api_url: str, api_key: str, *, timeout: float = 10.0,
                 retries: int = 2, **kwargs: Any) -> None:
        super().__init__(api_url, api_key, timeout=timeout, **kwargs)
        self.retries = retries

    async def _send(  # cent's signature, timeout included
        self, request: CentRequest[CentResultType],
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> CentResultType:
        request = with_idempotency_key(request)
        for attempt in range(self.retries + 1):
            try:
                return await super()._send(request, timeout=timeout)
            except CentError as exc:
                if attempt == self.retries or not retryable(exc):
                    raise
            await asyncio.sleep(BACKOFF * 2**attempt)
        raise AssertionError("unreachable")  # pragma: no cover
