"""Faust's aiokafka transport with a configurable consumer fetch wait and a safe commit offset.

Faust creates the worker's `AIOKafkaConsumer` with `fetch_max_wait_ms=1500` and no setting to
change it. On Apache Kafka that does not matter (a waiting fetch is answered as soon as a
record arrives), but Tansu only re-reads the log between sleeps of half the remaining wait,
so on it every event waited 0-750 ms before the worker saw it. `WorkerApp` builds its transport
from the classes below, which give the consumer `Settings.fetch_max_wait_ms` instead.

They also take the commit decision away from Faust's ack bookkeeping: the offset committed is
the worker's own (`streams/offsets.py`), so a record Faust dropped or skipped on its way to the
agent is fetched again instead of committed unprocessed.

`WorkerApp`'s flow control fetches again what Faust throws away: Faust empties the agent's
queue of fetched records at every resume of its flow control, and it resumes right after it
seeks every partition to its committed offset when a rebalance (or the start) ends, so the
first records fetched from there could be dropped. A partition with later records showed the
hole and was fetched again; one whose dropped records were its last waited for good (the
stalled partition behind a restarted worker, and a CI run that read a user's state before the
worker had it).

And they read the true end of each changelog partition before a table is restored: Tansu 0.6
answers ListOffsets(latest) with the first offset of the partition's last record batch + 1,
below the real end when that batch holds several records, and Faust's recovery stops at that
offset, leaving the last changelog records out of the restored table (users' state one batch
behind after a restart; streams/README.md).
"""

from __future__ import annotations

import asyncio
import logging
import time
import types
from collections.abc import Callable, Coroutine, Generator, Iterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

import faust
from aiokafka import AIOKafkaConsumer, TopicPartition
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, Message, TransportT
from faust.types.tuples import ack_lock
from mode.services import WaitResults
from mode.utils.futures import notify
from mode.utils.objects import cached_property
from mode.utils.queues import FlowControlEvent

from recloop.streams import metrics
from recloop.streams.offsets import OffsetLedger

log = logging.getLogger("recloop.worker")


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its Fetcher, which is after this.
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms
        return consumer


class _ReadOffsetsOff(dict):  # type: ignore[type-arg]
    """Faust's per-partition read offsets, always unknown.

    Faust drops a record below its read offset and counts offsets skipped above it as
    committable gaps; after a seek that dropped re-fetched records and committed ones never
    processed. With every read offset unknown Faust passes every record on and adds no gap;
    the `OffsetLedger` decides instead."""

    def __getitem__(self, tp: TP) -> None:
        return None


class _Consumer(faust_aiokafka.Consumer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.ledger: OffsetLedger[TP] = OffsetLedger()
        self._refetches: set[asyncio.Future[None]] = set()
        self._read_offset = _ReadOffsetsOff()
        self.quiesce: Callable[[], AbstractAsyncContextManager[None]] | None = None
        """Set by the worker under exactly_once: a context in which nothing is being processed
        and everything processed is settled, so that a transaction commits exactly the
        records of the offsets it commits."""

    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    async def perform_seek(self) -> None:
        """Faust's seek to the committed offsets, and the ledger restarted at them."""
        await super().perform_seek()
        assigned = {tp for tp in self.assignment() if self.app.topics.acks_enabled_for(tp.topic)}
        committed = {tp: self._committed_offset.get(tp) for tp in assigned}
        # No committed offset (Faust also stores 0 as None): the group starts at the log's
        # beginning (auto_offset_reset=earliest), which is not always offset 0.
        missing = [tp for tp, offset in committed.items() if offset is None]
        earliest = await self.earliest_offsets(*missing) if missing else {}
        anchors = {
            tp: offset if offset is not None else earliest.get(tp, 0)
            for tp, offset in committed.items()
        }
        for tp, offset in anchors.items():
            self.ledger.anchor(tp, offset)
        self.ledger.retain(assigned)
        # Faust seeks only partitions with a committed offset above 0, and it fetched while it
        # restored the table: records already delivered then (and skipped, unanchored) would
        # wait for a later record to reveal the hole, forever if none comes. Fetch them again.
        if anchors:
            await self._thread.seek_wait(anchors)

    async def highwaters(self, *partitions: TP) -> Mapping[TP, int]:
        """The broker's end offsets, and for table changelogs the true end (see the module doc)."""
        ends = dict(await super().highwaters(*partitions))
        if self.in_transaction:  # exactly_once: the last stable offset, from Apache Kafka
            return ends
        changelogs = self.app.tables.changelog_topics
        behind = {tp: end for tp, end in ends.items() if tp.topic in changelogs and end and end > 0}
        if behind:
            assert isinstance(self.app, WorkerApp)  # the only app this consumer is built for
            ends.update(await last_batch_ends(self.app.client_kwargs, behind))
        return ends

    def refetch_dropped(self, messages: list[Message]) -> None:
        """Fetch again the partitions of `messages`, which Faust fetched and then dropped
        before the agent saw them, each from the ledger's next offset."""
        ours = [m for m in messages if self.app.topics.acks_enabled_for(m.topic)]
        for message in ours:
            self.ack(message)  # Faust would otherwise wait for them at the next rebalance
        known = [tp for tp in {m.tp for m in ours} if tp in self.ledger.partitions()]
        if not known:  # none anchored yet: the seek to the committed offsets fetches them
            return
        log.info(
            "flow control dropped %d fetched records of %s; fetching them again",
            len(ours),
            ", ".join(str(tp) for tp in known),
        )
        task = asyncio.ensure_future(self._refetch(known))
        self._refetches.add(task)
        task.add_done_callback(self._refetches.discard)

    async def _refetch(self, tps: list[TP]) -> None:
        for tp in tps:
            if tp not in self.assignment() or tp not in self.ledger.partitions():
                continue  # revoked meanwhile: its next owner seeks it to the committed offset
            metrics.DROPPED_REFETCHES.inc()
            try:
                # The ledger's next offset when the seek runs: records processed since the
                # drop moved it on, and any record below it is skipped anyway.
                await self.seek_back(tp, self.ledger.next_offset(tp))
            except Exception as exc:  # revoked between the check and the seek
                log.info("could not fetch %s again: %r", tp, exc)

    async def seek_back(self, tp: TP, offset: int) -> None:
        """Fetch `tp` again from `offset`."""
        # In the consumer's own thread: Faust's `seek` changes the aiokafka consumer from the
        # main thread, and the wake-up aiokafka sets then is not seen by its fetcher's loop.
        log.info("fetching %s again from offset %d", tp, offset)
        await self._thread.seek_wait({tp: offset})

    async def force_commit(self, topics: Any = None, start_new_transaction: bool = True) -> bool:
        if self.quiesce is None:
            return await super().force_commit(topics, start_new_transaction)
        # A transaction commits every record sent in it, so under exactly_once the records of
        # events still in flight (beyond the offsets committed with it) must not be in it:
        # after a SIGKILL those events are processed again and their answers were visible twice.
        async with self.quiesce():
            return await super().force_commit(topics, start_new_transaction)

    async def wait_first(self, *coros: Any, timeout: Any = None) -> WaitResults:
        """Faust's `_drain_messages` hands every message to the conductor with
        `wait_first(callback(message), suspend_flow.wait())`, which makes four tasks and an
        `asyncio.wait` per message (~8% of the event loop in the profile). The callback almost
        always finishes without waiting (the stream's queue has room), so it is run one step
        here first; only a callback that has to wait goes through Faust's `wait_first`."""
        first, *rest = coros
        if not (asyncio.iscoroutine(first) and len(rest) == 1 and asyncio.iscoroutine(rest[0])):
            return await super().wait_first(*coros, timeout=timeout)
        try:
            yielded = first.send(None)
        except StopIteration as done:
            rest[0].close()  # suspend_flow.wait(), never started
            stopped = self._stopped.is_set() or self._crashed.is_set()
            return (
                WaitResults([], [], True) if stopped else WaitResults([first], [done.value], False)
            )
        rest_of_first = asyncio.ensure_future(_resume(first, yielded))
        return await super().wait_first(rest_of_first, *rest, timeout=timeout)

    def ack(self, message: Message) -> bool:
        """Mark `message` done for Faust (no commit bookkeeping: the ledger decides)."""
        with ack_lock:
            if message.acked:
                return False
            message.acked = True
            self._unacked_messages.discard(message)
            self._n_acked += 1
            notify(self._waiting_for_ack)
            return True

    def _filter_tps_with_pending_acks(self, topics: Any = None) -> Iterator[TP]:
        assigned = self.assignment()  # a revoked partition is another worker's to commit
        # aiokafka's own type: under exactly_once the offsets go to send_offsets_to_transaction,
        # which refuses Faust's equal but distinct TP tuples.
        return (
            TopicPartition(tp.topic, tp.partition)
            for tp in self.ledger.partitions()
            if tp in assigned and (topics is None or tp in topics or tp.topic in topics)
        )

    def _new_offset(self, tp: TP) -> int | None:
        return self.ledger.commit_offset(tp)


async def last_batch_ends(
    client: Mapping[str, Any], ends: Mapping[TP, int], timeout: float = 3.0
) -> dict[TP, int]:
    """Each partition's end offset read from its last record batch: the offset after the last
    record fetched from `end - 1` (a broker that answers ListOffsets with the last batch's
    first offset + 1 has records past it). Keeps `end` where nothing comes back in time (a
    transaction marker at `end - 1`, or an end that was right)."""
    consumer = AIOKafkaConsumer(**client, enable_auto_commit=False)
    await consumer.start()
    try:
        tps = {TopicPartition(tp.topic, tp.partition): tp for tp in ends}
        consumer.assign(list(tps))
        for atp, tp in tps.items():
            consumer.seek(atp, ends[tp] - 1)
        found: dict[TP, int] = {}
        deadline = time.monotonic() + timeout
        while len(found) < len(tps) and time.monotonic() < deadline:
            fetched = await consumer.getmany(timeout_ms=200)
            for atp, records in fetched.items():
                if records:
                    tp = tps[atp]
                    found[tp] = max(found.get(tp, 0), records[-1].offset + 1)
        corrected = {tp: max(end, found.get(tp, end)) for tp, end in ends.items()}
        for tp, end in corrected.items():
            if end != ends[tp]:
                log.info("%s ends at offset %d, not %d as the broker said", tp, end, ends[tp])
        return corrected
    finally:
        await consumer.stop()


@types.coroutine
def _resume(coro: Coroutine[Any, Any, Any], yielded: Any) -> Generator[Any, Any, Any]:
    """The rest of `coro`, whose first step already ran and yielded `yielded` (what a task
    waits on): `yield from` by hand, so a task can finish it."""
    while True:
        try:
            sent = yield yielded
        except GeneratorExit:
            coro.close()
            raise
        except BaseException as exc:  # cancellation and errors go into the coroutine
            try:
                yielded = coro.throw(exc)
            except StopIteration as done:
                return done.value
        else:
            try:
                yielded = coro.send(sent)
            except StopIteration as done:
                return done.value


class _FlowControl(FlowControlEvent):
    """Faust's flow control, handing the records its clear drops to `on_drop`.

    Faust clears the stream queues at every `resume()` (and at a revocation), records the
    consumer has already fetched and will not fetch again by itself."""

    def __init__(self, on_drop: Callable[[list[Message]], None], **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self._on_drop = on_drop

    def clear(self) -> None:
        dropped = [
            item.message
            for queue in self._queues
            for item in list(queue._queue)  # type: ignore[attr-defined]
            if isinstance(getattr(item, "message", None), Message)
        ]
        super().clear()
        if dropped:
            self._on_drop(dropped)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class WorkerApp(faust.App):
    """A `faust.App` whose worker consumer waits at most `fetch_max_wait_ms` per fetch."""

    def __init__(
        self,
        *args: Any,
        fetch_max_wait_ms: int,
        client_kwargs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        # Set before faust.App.__init__, which may already build the transport.
        self.fetch_max_wait_ms = fetch_max_wait_ms
        self.client_kwargs = dict(client_kwargs or {})
        """Connection settings for the worker's own aiokafka clients (`last_batch_ends`)."""
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> TransportT:
        return _Transport(self.conf.broker_consumer, self)

    @cached_property
    def flow_control(self) -> FlowControlEvent:
        """Faust's flow control, with what its clears drop fetched again."""
        return _FlowControl(self._refetch_dropped, loop=self.loop)

    def _refetch_dropped(self, messages: list[Message]) -> None:
        consumer = self.consumer
        if isinstance(consumer, _Consumer):  # always, but a client-only app has another
            consumer.refetch_dropped(messages)
