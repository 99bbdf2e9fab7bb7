"""``transports/eager.py``: a coroutine run without a task until it has to wait, then driven
by a task exactly as a task would drive it."""

from __future__ import annotations

import asyncio

import pytest

from tidings.transports.eager import start


async def test_a_coroutine_that_never_waits_needs_no_task() -> None:
    done: list[str] = []

    async def quick() -> None:
        done.append("ran")

    suspended: list[int] = []
    assert start(quick(), asyncio.get_running_loop(), lambda: suspended.append(1)) is None
    assert done == ["ran"] and suspended == []  # it ran in the caller, before start returned


async def test_one_that_waits_goes_on_in_a_task() -> None:
    loop = asyncio.get_running_loop()
    gate: asyncio.Future[str] = loop.create_future()
    steps: list[str] = []

    async def waits() -> None:
        steps.append("first")
        steps.append(await gate)
        await asyncio.sleep(0)  # a bare yield
        steps.append("end")

    suspended: list[int] = []
    task = start(waits(), loop, lambda: suspended.append(1))
    assert task is not None and steps == ["first"] and suspended == [1]
    await asyncio.sleep(0)  # the task waits on the gate now
    assert steps == ["first"]
    gate.set_result("second")
    await asyncio.wait_for(task, 5)
    assert steps == ["first", "second", "end"]
    assert suspended == [1, 1]  # before each wait


async def test_the_coroutine_sees_what_it_waited_on_raise() -> None:
    loop = asyncio.get_running_loop()
    gate: asyncio.Future[None] = loop.create_future()
    seen: list[str] = []

    async def catches() -> None:
        try:
            await gate
        except KeyError as exc:
            seen.append(str(exc))

    task = start(catches(), loop, lambda: None)
    assert task is not None
    gate.set_exception(KeyError("boom"))
    await asyncio.wait_for(task, 5)
    assert seen == ["'boom'"]


@pytest.mark.parametrize("bare", [False, True])
async def test_cancelling_the_task_cancels_the_coroutine(bare: bool) -> None:
    loop = asyncio.get_running_loop()
    gate: asyncio.Future[None] = loop.create_future()
    cleaned: list[str] = []

    async def waits_forever() -> None:
        try:
            if bare:
                for _ in range(1000):  # bare yields (asyncio.sleep(0)) until cancelled
                    await asyncio.sleep(0)
            await gate
        finally:
            cleaned.append("finally")

    task = start(waits_forever(), loop, lambda: None)
    assert task is not None
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert cleaned == ["finally"]
    assert bare or gate.cancelled()
