"""A coroutine run at once, without a task, as far as it goes without waiting.

Most API publishes on the memory engine finish without waiting for anything; a Task for each
costs its creation and a turn of the loop before it starts. :func:`start` runs the coroutine's
first step at once, in the caller; only when it has to wait does a Task take over, driving it
exactly as a Task would (:func:`_finish`: wait for what it waits on, resume it, repeat), and
``suspended`` is called before each wait (the HTTP connection writes the answers it held
back, so nothing waits behind a request that waits).

Rules: the first step runs with no current task, so only code that never enters
``asyncio.timeout()`` (or, from Python 3.12, ``wait_for``) before its first wait may be started
this way: the routes say which (``Request.eager``). Cancelling the task cancels what the
coroutine waits on, and the coroutine sees the CancelledError there, as under a Task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

__all__ = ["start"]


def start(coro: Coroutine[Any, Any, None], loop: asyncio.AbstractEventLoop,
          suspended: Callable[[], None]) -> asyncio.Task[None] | None:
    """Run ``coro`` now; None when it finished, else the task that finishes it."""
    try:
        awaiting = coro.send(None)
    except StopIteration:
        return None
    suspended()
    return loop.create_task(_finish(coro, awaiting, suspended))


async def _finish(coro: Coroutine[Any, Any, None], awaiting: Any,
                  suspended: Callable[[], None]) -> None:
    while True:
        try:
            if awaiting is None:  # a bare yield (asyncio.sleep(0)): one turn of the loop
                await asyncio.sleep(0)
            else:
                awaiting._asyncio_future_blocking = False  # taken, as a Task takes it
                await awaiting
        except BaseException as exc:
            if awaiting is None or not awaiting.done():
                # Cancelled while the coroutine waited on nothing cancellable: tell it.
                try:
                    awaiting = coro.throw(exc)
                except StopIteration:
                    return
                suspended()
                continue
            # Otherwise the coroutine reads the outcome (an error, a cancellation) from the
            # future it waits on, as under a Task.
        try:
            awaiting = coro.send(None)
        except StopIteration:
            return
        suspended()
