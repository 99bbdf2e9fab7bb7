"""Flask: ``app.post("/centrifugo/connect")(tidings.hooks.flask.view(connect))``.

The view reads the node's POST, calls the hook with the parsed request (its ``headers``: the
headers Tidings forwarded, e.g. ``cookie``) and answers JSON.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

from flask import Response, request

from tidings.hooks.web import answer, request_type_of

__all__ = ["view"]


def view(fn: Callable[..., Any]) -> Callable[[], Response]:
    if inspect.iscoroutinefunction(fn):
        raise TypeError(f"{fn!r}: Flask views are synchronous; give a plain function (or "
                        "serve async hooks with tidings.hooks.fastapi)")
    tp = request_type_of(fn)

    @functools.wraps(fn)
    def flask_view() -> Response:
        headers = {k.lower(): v for k, v in request.headers.items()}
        status, body = answer(fn, request.get_data(), headers, tp)
        return Response(body, status=status, content_type="application/json")
    return flask_view
