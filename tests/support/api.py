"""The server HTTP API, called the way a backend calls it: ``POST <api_url>/<method>`` with the
key in ``X-API-Key``. (``tests/integration/test_cent_client.py`` drives the real ``cent`` client
instead; that is what it tests.)

``api`` returns the decoded JSON body of an answer with the expected status (200 unless told);
``api_result`` and ``api_publish`` are for calls that must succeed. ``api_sync`` is for the
synchronous tests (the browser tests block on their page process).
"""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import aiohttp

from tests.support.timing import T


class ApiTarget(Protocol):
    """Where the API is: a ``ServerProcess``, or an ``ApiEndpoint`` (e.g. behind a proxy)."""

    @property
    def api_url(self) -> str: ...

    @property
    def api_key(self) -> str: ...


@dataclass(frozen=True)
class ApiEndpoint:
    api_url: str
    api_key: str


def _decoded(status: int, content_type: str, body: bytes, expect_status: int) -> dict[str, Any]:
    assert status == expect_status, (status, body[:2000])
    assert content_type.startswith("application/json"), content_type
    decoded = json.loads(body)
    assert isinstance(decoded, dict), decoded
    return decoded


async def api(
    target: ApiTarget,
    method: str,
    payload: dict[str, Any],
    *,
    session: aiohttp.ClientSession | None = None,
    within: float = T,
    expect_status: int = 200,
    headers: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """POST ``payload`` to ``method``; the decoded JSON body (its status and JSON content type
    asserted). Uses ``session`` when given (its connections are reused), else one of its own."""
    if session is None:
        async with aiohttp.ClientSession() as own:
            return await api(target, method, payload, session=own, within=within,
                             expect_status=expect_status, headers=headers)
    async with session.post(
        f"{target.api_url}/{method}",
        json=payload,
        headers={"X-API-Key": target.api_key, **(headers or {})},
        timeout=aiohttp.ClientTimeout(total=within),
    ) as resp:
        body = await resp.read()
        content_type = resp.headers.get("Content-Type", "")
    return _decoded(resp.status, content_type, body, expect_status)


def _result(reply: dict[str, Any]) -> dict[str, Any]:
    assert set(reply) == {"result"}, reply
    result = reply["result"]
    assert isinstance(result, dict), reply
    return result


async def api_result(
    target: ApiTarget, method: str, payload: dict[str, Any], **options: Any
) -> dict[str, Any]:
    """An API call that must succeed (``options`` as for ``api``); returns its ``result``."""
    return _result(await api(target, method, payload, **options))


async def api_publish(
    target: ApiTarget, channel: str, data: Any, *, session: aiohttp.ClientSession | None = None
) -> dict[str, Any]:
    """Publish ``data`` into ``channel``; the result (offset and epoch)."""
    return await api_result(target, "publish", {"channel": channel, "data": data},
                            session=session)


def api_sync(target: ApiTarget, method: str, payload: dict[str, Any], *,
             within: float = T) -> dict[str, Any]:
    """``api_result`` for synchronous tests (urllib, blocking)."""
    request = urllib.request.Request(
        f"{target.api_url}/{method}",
        data=json.dumps(payload).encode(),
        headers={"X-API-Key": target.api_key, "Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=within) as resp:
        reply = _decoded(resp.status, resp.headers.get("Content-Type", ""), resp.read(), 200)
    return _result(reply)
