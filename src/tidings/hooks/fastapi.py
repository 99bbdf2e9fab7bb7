"""FastAPI / Starlette: ``app.post("/centrifugo/connect")(tidings.hooks.fastapi.endpoint(fn))``
(or ``Route(path, endpoint(fn), methods=["POST"])`` in Starlette).

``async def`` hooks run on the loop, plain functions in Starlette's thread pool.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from tidings.hooks.web import answer, answer_async, request_type_of

__all__ = ["endpoint"]


def endpoint(fn: Callable[..., Any]) -> Callable[[Request], Awaitable[Response]]:
    tp = request_type_of(fn)
    is_async = inspect.iscoroutinefunction(fn)

    async def hook_endpoint(request: Request) -> Response:
        body = await request.body()
        if is_async:
            status, out = await answer_async(fn, body, request.headers, tp)
        else:
            status, out = await run_in_threadpool(answer, fn, body, request.headers, tp)
        return Response(out, status_code=status, media_type="application/json")
    hook_endpoint.__name__ = getattr(fn, "__name__", "hook_endpoint")
    return hook_endpoint
