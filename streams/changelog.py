"""The user-state table with one changelog record per user per batch, not one per event.

Faust's table sends a changelog record for every `table[key] = value`, through its producer
buffer (a `FutureMessage`, a buffer task, `Topic.publish_message`, sensors): in the profile of
the MovieLens benchmark that was ~12% of the worker's samples, and under load the buffer
filled and Faust's conductor stopped taking events until it drained ("producer buffer full"),
one of the causes of the latency steps. `CoalescingTable` writes the table's local store at
once (reads see every event's update) and remembers what each event wrote; the worker sends
each batch's latest value per user straight to the producer (`send_batch`), and the batch is
settled only when the broker has acknowledged those records, as before.
"""

from __future__ import annotations

from collections.abc import Awaitable, Iterable, Iterator, MutableMapping
from typing import Any

import faust
from faust.types import EventT

Write = tuple[bytes, int, bytes]
"""One table write: key, events partition of the event that made it, value."""


class CoalescingTable(MutableMapping[bytes, bytes]):
    """A Faust table's store as the pipeline sees it: reads and writes go to the local store
    (memory or RocksDB, which needs the current event's partition); the changelog gets what
    `take_writes` returned, sent once per key and batch by `send_batch`."""

    def __init__(self, table: faust.Table) -> None:
        self.table = table
        self._writes: list[Write] = []

    @property
    def store(self) -> Any:
        # Looked up per call: Faust may replace the store when partitions are reassigned.
        return self.table.data

    def __getitem__(self, key: bytes) -> bytes:
        value: bytes = self.store[key]
        return value

    def get(self, key: bytes, default: Any = None) -> Any:
        return self.store.get(key, default)

    def __setitem__(self, key: bytes, value: bytes) -> None:
        event: EventT | None = faust.current_event()
        if event is None:
            raise RuntimeError("the user-state table is written only while processing an event")
        self.store[key] = value  # RocksDB files the key under the current event's partition
        self._writes.append((key, event.message.partition, value))

    def __delitem__(self, key: bytes) -> None:
        raise NotImplementedError("user state is never deleted by the worker")

    def __iter__(self) -> Iterator[bytes]:
        return iter(self.store)

    def __len__(self) -> int:
        return len(self.store)

    def take_writes(self) -> list[Write]:
        """The writes since the last call (normally one: the current event's)."""
        writes, self._writes = self._writes, []
        return writes

    async def send_batch(self, producer: Any, writes: Iterable[Write]) -> list[Awaitable[object]]:
        """Send one changelog record per key of `writes` (its last value) through `producer`
        (Faust's, or its transaction manager under exactly_once); returns the delivery futures.

        The record goes to the partition of the event that wrote it, which is where Faust's
        recovery looks for the state of that events partition (`use_partitioner` hashed the
        key to the same partition when the events were keyed by user id)."""
        latest: dict[bytes, tuple[int, bytes]] = {}
        for key, partition, value in writes:
            latest[key] = (partition, value)
        topic = self.table.changelog_topic.get_topic_name()
        sent: list[Awaitable[object]] = []
        for key, (partition, value) in latest.items():
            fut = await producer.send(topic, key, value, partition, None, None)
            fut.add_done_callback(self._persisted)
            sent.append(fut)
        return sent

    def _persisted(self, fut: Any) -> None:
        # What Faust's `Collection._on_changelog_sent` does: a RocksDB store remembers the
        # changelog offset its files hold, so a restart replays only what came after it.
        if fut.cancelled() or fut.exception() is not None:
            return  # the batch's gather raises it and the worker crashes
        res = fut.result()
        app = self.table.app
        if app.in_transaction:
            app.tables.persist_offset_on_commit(self.store, res.topic_partition, res.offset)
        else:
            self.store.set_persisted_offset(res.topic_partition, res.offset)
