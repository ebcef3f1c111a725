"""Pipelined micro-batching for the worker's agent (free of Faust, so it can be unit-tested).

Faust's `stream.take()` stops the stream while its body runs: no event is decoded or folded
into state while a batch is scored and sent. Under load that made the worker alternate between
a short collecting window and a long dead time (inference in a thread, then one send per
recommendation). Here the agent keeps processing events while one task handles full batches
strictly in order (so per-user order holds); a bounded queue of waiting batches is the back
pressure. Handing records to a producer is not durability, so a second stage settles batches:
`handle` returns an awaitable that completes once the broker has acknowledged the batch's
output, and `settle` (where the worker acks the batch's events) runs only after it, again in
batch order. The handler meanwhile goes on with the next batch, so broker round trips do not
stall scoring.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Batcher(Generic[T]):
    """Collects items into batches of at most `max_size`, or whatever arrived within `max_wait`
    of a batch's first item, and hands them to `handle` one batch at a time, in order.

    `handle` may return an awaitable that completes when the batch's output is durable; then
    `settle(batch)` is called, batches in order. At most `max_queued` batches wait for `handle`
    and at most `max_queued` for durability."""

    def __init__(
        self,
        handle: Callable[[list[T]], Awaitable[Awaitable[object] | None]],
        max_size: int,
        max_wait: float,
        max_queued: int = 2,
        clock: Callable[[], float] | None = None,
        on_error: Callable[[BaseException], object] | None = None,
        settle: Callable[[list[T]], Awaitable[None]] | None = None,
    ) -> None:
        self.handle = handle
        self.settle = settle
        self.max_size = max_size
        self.max_wait = max(max_wait, 0.0005)
        self.queue: asyncio.Queue[list[T]] = asyncio.Queue(max_queued)
        self.settling: asyncio.Queue[tuple[list[T], Awaitable[object] | None]] = asyncio.Queue(
            max_queued
        )
        self.items: list[T] = []
        self.started = 0.0
        self.error: BaseException | None = None
        self._clock = clock
        self._on_error = on_error
        """Called once if `handle` raises (the worker crashes: its batches are not acked)."""
        self._tasks: list[asyncio.Task[None]] = []

    def _now(self) -> float:
        return self._clock() if self._clock else asyncio.get_running_loop().time()

    def start(self) -> None:
        self._tasks = [
            asyncio.create_task(self._handler(), name="batcher-handler"),
            asyncio.create_task(self._settler(), name="batcher-settler"),
            asyncio.create_task(self._timer(), name="batcher-timer"),
        ]

    async def add(self, item: T) -> None:
        """Add one item; waits only when `max_queued` full batches are already waiting."""
        if self.error is not None:
            raise RuntimeError("batch handler failed") from self.error
        if not self.items:
            self.started = self._now()
        self.items.append(item)
        if len(self.items) >= self.max_size:
            await self.flush()

    async def flush(self) -> None:
        """Queue the current batch (if any) for the handler."""
        if self.items:
            batch, self.items = self.items, []
            await self.queue.put(batch)  # putters are served in order: batches stay in order

    async def drain(self) -> None:
        """Flush and wait until every queued batch has been handled and settled."""
        await self.flush()
        await self.queue.join()
        await self.settling.join()
        if self.error is not None:
            raise RuntimeError("batch handler failed") from self.error

    async def stop(self) -> None:
        """Cancel the tasks; batches not settled yet are simply not acked (redelivered)."""
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):  # a handler error is in self.error
                await task
        self._tasks = []

    def _failed(self, exc: BaseException) -> None:
        # The agent raises it on its next add(); nothing after the failed batch is settled.
        if self.error is None:
            self.error = exc
            if self._on_error is not None:
                self._on_error(exc)

    async def _handler(self) -> None:
        while True:
            batch = await self.queue.get()
            try:
                durable = await self.handle(batch)
                if self.settle is not None:
                    await self.settling.put((batch, durable))  # waits: back pressure
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                self._failed(exc)
                raise
            finally:
                self.queue.task_done()

    async def _settler(self) -> None:
        while True:
            batch, durable = await self.settling.get()
            try:
                if durable is not None:
                    await durable  # e.g. every record of the batch acknowledged by the broker
                if self.settle is not None:
                    await self.settle(batch)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:
                self._failed(exc)
                raise
            finally:
                self.settling.task_done()

    async def _timer(self) -> None:
        # A partial batch goes out max_wait after its first item (checked every max_wait / 2),
        # also when no further event arrives to trigger it.
        while True:
            await asyncio.sleep(self.max_wait / 2)
            if self.items and self._now() - self.started >= self.max_wait:
                await self.flush()
