"""`transport._resume`: a coroutine whose first step ran outside a task is finished by one,
with results, errors and cancellation going where they would have without the first step."""

from __future__ import annotations

import asyncio

import pytest

from recloop.streams.transport import _resume


async def _waits(gate: asyncio.Future[int], log: list[str]) -> int:
    log.append("started")
    try:
        value = await gate
    except asyncio.CancelledError:
        log.append("cancelled")
        raise
    await asyncio.sleep(0)
    log.append("finished")
    return value + 1


def _resumed(gate: asyncio.Future[int], log: list[str]) -> asyncio.Future[int]:
    """`_waits` with its first step run here and the rest in a task, as the consumer does."""
    coro = _waits(gate, log)
    return asyncio.ensure_future(_resume(coro, coro.send(None)))


async def test_resume_returns_the_coroutines_result() -> None:
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    log: list[str] = []
    task = _resumed(gate, log)
    await asyncio.sleep(0)
    assert not task.done() and log == ["started"]
    gate.set_result(41)
    assert await task == 42
    assert log == ["started", "finished"]


async def test_resume_raises_the_awaited_error_inside_the_coroutine() -> None:
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    task = _resumed(gate, [])
    gate.set_exception(ValueError("boom"))
    with pytest.raises(ValueError, match="boom"):
        await task


async def test_cancelling_the_task_cancels_the_coroutine() -> None:
    gate: asyncio.Future[int] = asyncio.get_running_loop().create_future()
    log: list[str] = []
    task = _resumed(gate, log)
    await asyncio.sleep(0)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert log == ["started", "cancelled"]
