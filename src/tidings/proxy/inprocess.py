"""Hooks in process: a Python function answers, with no HTTP hop (a Tidings addition).

The function takes the request struct and returns its result, its response, or None (no
result); it may raise ``HookError`` / ``HookDisconnect`` to refuse. ``async def`` functions
run on the loop; plain functions run in a worker thread (a Django ORM call must not block the
loop). Either way the proxy's ``timeout`` applies. Payload fields arrive as JSON values
(decoded), as a backend behind HTTP sees them, and ``request.headers`` holds the forwarded
headers.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import msgspec

from tidings.config.proxyschema import ProxyConfig
from tidings.protocol.proxyproto import RESULTS, HookDisconnect, HookError
from tidings.proxy.base import CountedCaller, HookFailure, Who

__all__ = ["PythonCaller", "import_hook"]

log = logging.getLogger("tidings.proxy")

R = TypeVar("R", bound=msgspec.Struct)
_PAYLOADS = ("data", "meta")
HOOK_THREADS = 32  # plain-function hooks running at once; more wait (within their timeout)


_POOL: list[ThreadPoolExecutor] = []


def _threads() -> ThreadPoolExecutor:
    """Plain-function hooks run on threads of their own: one that hangs past its timeout
    keeps its thread, and must not take the loop's default executor (DNS lookups) with it."""
    if not _POOL:
        _POOL.append(ThreadPoolExecutor(max_workers=HOOK_THREADS,
                                        thread_name_prefix="tidings-hook"))
    return _POOL[0]


def import_hook(endpoint: str) -> Callable[..., Any]:
    """``python:package.module:function`` -> the function (ValueError if it is not there)."""
    target = endpoint.removeprefix("python:")
    module_name, _, attr = target.partition(":")
    if not module_name or not attr:
        raise ValueError(f"{endpoint!r}: expected python:package.module:function")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"{endpoint!r}: {exc}") from exc
    if not callable(obj):
        raise ValueError(f"{endpoint!r} is not callable")
    return obj  # type: ignore[no-any-return]


class PythonCaller(CountedCaller):
    def __init__(self, name: str, config: ProxyConfig, fn: Callable[..., Any]) -> None:
        super().__init__(name, config)
        self.fn = fn
        self._is_async = inspect.iscoroutinefunction(fn)

    async def _call(self, hook: str, request: msgspec.Struct, response: type[R],
                   who: Who | None) -> R:
        changes: dict[str, Any] = {}
        for name in _PAYLOADS:
            value = getattr(request, name, None)
            if isinstance(value, msgspec.Raw):
                changes[name] = msgspec.json.decode(value)
        headers = self.headers.forwarded(who)
        if headers:
            changes["headers"] = headers
        if changes:
            request = msgspec.structs.replace(request, **changes)
        try:
            if self._is_async:
                answer = await asyncio.wait_for(self.fn(request), self.config.timeout)
            else:
                answer = await asyncio.wait_for(self._in_thread(request), self.config.timeout)
        except HookError as exc:
            answer = response(error=exc.wire())
        except HookDisconnect as exc:
            answer = response(disconnect=exc.wire())
        except TimeoutError:
            raise self._failed(hook, f"no answer within {self.config.timeout:g}s") from None
        except Exception as exc:
            log.exception("%s hook %r raised", hook, self.name,
                          extra={"hook": hook, "proxy": self.name,
                                 "endpoint": self.config.endpoint})
            raise HookFailure(f"{type(exc).__name__}: {exc}") from None
        return self._response(hook, answer, response)

    async def _in_thread(self, request: msgspec.Struct) -> Any:
        loop = asyncio.get_running_loop()
        answer = await loop.run_in_executor(_threads(), self.fn, request)
        if inspect.isawaitable(answer):  # an async callable that is not a coroutine function
            answer = await answer
        return answer

    def _response(self, hook: str, answer: Any, response: type[R]) -> R:
        """The answer as its response type, checked as an answer over HTTP is (types, code
        ranges): a struct built in Python is not validated when it is made."""
        if answer is None:
            return response()
        if isinstance(answer, RESULTS[response]):
            answer = response(result=answer)
        if not isinstance(answer, response):
            raise self._failed(hook, f"returned {type(answer).__name__}, expected "
                                     f"{RESULTS[response].__name__}, {response.__name__} "
                                     "or None")
        try:
            return msgspec.convert(msgspec.to_builtins(answer), type=response)
        except (TypeError, msgspec.ValidationError) as exc:
            raise self._failed(hook, f"returned an invalid {response.__name__}: {exc}") from None
