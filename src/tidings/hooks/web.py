"""Answering a proxy call in any web framework: the request body in, (status, body) out.

``answer(fn, body, headers)`` parses the node's JSON into the request type ``fn`` takes (from
its first parameter's annotation), calls it, and encodes what it returned or raised as the
response the node reads. A body that is not a valid request is a 400 (the node then gives the
client error 100, as for any failed call). The framework adapters are a few lines around it.
"""

from __future__ import annotations

import inspect
import logging
import typing
from collections.abc import Callable, Mapping
from typing import Any

import msgspec

from tidings.protocol.proxyproto import RESPONSES, RESULTS, HookDisconnect, HookError

__all__ = ["answer", "answer_async", "request_type_of"]

log = logging.getLogger("tidings.hooks")

_encode = msgspec.json.Encoder().encode
Answer = tuple[int, bytes]


def request_type_of(fn: Callable[..., Any]) -> type[msgspec.Struct]:
    """The request type a hook takes: its first parameter's annotation."""
    hints = typing.get_type_hints(fn)
    params = [p for p in inspect.signature(fn).parameters if p != "self"]
    tp = hints.get(params[0]) if params else None
    if not (isinstance(tp, type) and tp in RESPONSES):
        names = ", ".join(t.__name__ for t in RESPONSES)
        raise TypeError(f"{fn!r}: annotate its first parameter with one of {names}")
    return tp


def _parse(tp: type[msgspec.Struct], body: bytes, headers: Mapping[str, str]
           ) -> msgspec.Struct | Answer:
    try:
        request = msgspec.json.decode(body, type=tp)
    except (msgspec.DecodeError, msgspec.ValidationError) as exc:
        return 400, _encode({"error": f"not a {tp.__name__}: {exc}"})
    return msgspec.structs.replace(request, headers={k.lower(): v for k, v in headers.items()})


def _encoded(tp: type[msgspec.Struct], value: Any) -> Answer:
    response = RESPONSES[tp]
    if value is None:
        return 200, b"{}"
    if isinstance(value, response | RESULTS[response]):
        wrapped = value if isinstance(value, response) else response(result=value)
        return 200, _encode(wrapped)
    raise TypeError(f"a {tp.__name__} hook returned {type(value).__name__}")


def _refusal(tp: type[msgspec.Struct], exc: HookError | HookDisconnect) -> Answer:
    response = RESPONSES[tp]
    if isinstance(exc, HookError):
        return 200, _encode(response(error=exc.wire()))
    return 200, _encode(response(disconnect=exc.wire()))


def answer(fn: Callable[..., Any], body: bytes, headers: Mapping[str, str],
           tp: type[msgspec.Struct] | None = None) -> Answer:
    """Answer one call with a plain function."""
    tp = tp or request_type_of(fn)
    request = _parse(tp, body, headers)
    if isinstance(request, tuple):
        return request
    try:
        return _encoded(tp, fn(request))
    except (HookError, HookDisconnect) as exc:
        return _refusal(tp, exc)


async def answer_async(fn: Callable[..., Any], body: bytes, headers: Mapping[str, str],
                       tp: type[msgspec.Struct] | None = None) -> Answer:
    """Answer one call with an ``async def`` function."""
    tp = tp or request_type_of(fn)
    request = _parse(tp, body, headers)
    if isinstance(request, tuple):
        return request
    try:
        return _encoded(tp, await fn(request))
    except (HookError, HookDisconnect) as exc:
        return _refusal(tp, exc)
