"""Django: ``path("centrifugo/connect", tidings.hooks.django.view(connect))``.

The view takes the node's POST (CSRF-exempt: the caller is Tidings, not a browser; protect the
URL by network or a static header), calls the hook with the parsed request and answers JSON.
``request.headers`` of the hook holds the headers Tidings forwarded (e.g. ``cookie``), so the
hook can read Django's session (see docs/hooks.md). ``async def`` hooks give an async view.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed
from django.views.decorators.csrf import csrf_exempt

from tidings.hooks.web import answer, answer_async, request_type_of

__all__ = ["view"]


def _response(status: int, body: bytes) -> HttpResponse:
    return HttpResponse(body, status=status, content_type="application/json")


def view(fn: Callable[..., Any]) -> Callable[..., Any]:
    tp = request_type_of(fn)
    if inspect.iscoroutinefunction(fn):
        async def async_view(request: HttpRequest) -> HttpResponse:
            if request.method != "POST":
                return HttpResponseNotAllowed(["POST"])
            return _response(*await answer_async(fn, request.body, request.headers, tp))
        return csrf_exempt(async_view)  # type: ignore[no-any-return]

    def sync_view(request: HttpRequest) -> HttpResponse:
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        return _response(*answer(fn, request.body, request.headers, tp))
    return csrf_exempt(sync_view)  # type: ignore[no-any-return]
