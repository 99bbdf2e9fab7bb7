"""The one time unit of the tests, and polling with it.

``TIMEOUT_FACTOR`` (env ``TIDINGS_TESTS_TIMEOUT_FACTOR``, default 1) scales every wait for slow
machines; ``T`` is the usual bound of one wait: 5 seconds times that factor.
"""

from __future__ import annotations

import asyncio
import inspect
import os
import time
from collections.abc import Awaitable, Callable

TIMEOUT_FACTOR = float(os.environ.get("TIDINGS_TESTS_TIMEOUT_FACTOR", "1"))
T = 5.0 * TIMEOUT_FACTOR


async def eventually(
    check: Callable[[], bool | Awaitable[bool]], within: float = T, interval: float = 0.05
) -> bool:
    """Poll ``check`` (sync or async) until it returns True (-> True) or ``within`` seconds
    pass (-> False)."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return True
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(interval)
