"""The worker's pipelined batcher: order, size and time limits, back pressure, failures."""

from __future__ import annotations

import asyncio

import pytest

from recloop.streams.batcher import Batcher


async def test_batches_keep_order_and_respect_the_size_limit() -> None:
    seen: list[list[int]] = []

    async def handle(batch: list[int]) -> None:
        await asyncio.sleep(0.001)  # slower than adding: batches queue up
        seen.append(batch)

    b = Batcher(handle, max_size=4, max_wait=0.05)
    b.start()
    try:
        for i in range(22):
            await b.add(i)
        await b.drain()
    finally:
        await b.stop()
    assert [i for batch in seen for i in batch] == list(range(22))
    assert all(len(batch) <= 4 for batch in seen)


async def test_a_partial_batch_goes_out_after_max_wait_without_more_items() -> None:
    seen: list[list[int]] = []
    done = asyncio.Event()

    async def handle(batch: list[int]) -> None:
        seen.append(batch)
        done.set()

    b = Batcher(handle, max_size=100, max_wait=0.01)
    b.start()
    try:
        await b.add(1)
        await b.add(2)
        await asyncio.wait_for(done.wait(), 1.0)
    finally:
        await b.stop()
    assert seen == [[1, 2]]


async def test_back_pressure_while_the_handler_is_busy() -> None:
    release = asyncio.Event()
    handled: list[list[int]] = []

    async def handle(batch: list[int]) -> None:
        await release.wait()
        handled.append(batch)

    b = Batcher(handle, max_size=1, max_wait=1.0, max_queued=2)
    b.start()
    try:
        await b.add(0)  # taken by the handler, which blocks
        await asyncio.sleep(0.01)
        await b.add(1)
        await b.add(2)  # the queue (2) is now full
        blocked = asyncio.create_task(b.add(3))
        await asyncio.sleep(0.05)
        assert not blocked.done(), "add() must wait while max_queued batches are waiting"
        release.set()
        await asyncio.wait_for(blocked, 1.0)
        await b.drain()
    finally:
        await b.stop()
    assert handled == [[0], [1], [2], [3]]


async def test_a_failing_handler_stops_the_agent() -> None:
    async def handle(batch: list[int]) -> None:
        raise ValueError("boom")

    b = Batcher(handle, max_size=1, max_wait=1.0)
    b.start()
    try:
        await b.add(1)
        with pytest.raises(RuntimeError, match="batch handler failed"):
            await b.drain()
        with pytest.raises(RuntimeError):
            await b.add(2)
    finally:
        await b.stop()


async def test_batches_are_settled_in_order_only_once_durable() -> None:
    deliveries: list[asyncio.Future[None]] = []
    settled: list[list[int]] = []

    async def handle(batch: list[int]) -> asyncio.Future[None]:
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        deliveries.append(fut)
        return fut

    async def settle(batch: list[int]) -> None:
        settled.append(batch)

    b = Batcher(handle, max_size=1, max_wait=1.0, max_queued=4, settle=settle)
    b.start()
    try:
        for i in range(3):
            await b.add(i)
        await asyncio.sleep(0.05)
        assert len(deliveries) == 3, "the handler goes on while earlier batches are in flight"
        deliveries[1].set_result(None)
        await asyncio.sleep(0.02)
        assert settled == [], "batch 1 is durable but batch 0 is not: nothing is settled yet"
        deliveries[0].set_result(None)
        await asyncio.sleep(0.02)
        assert settled == [[0], [1]]
        deliveries[2].set_exception(OSError("refused by the broker"))
        with pytest.raises(RuntimeError, match="batch handler failed"):
            await b.drain()
    finally:
        await b.stop()
    assert settled == [[0], [1]], "a failed delivery is never settled"
