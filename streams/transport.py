"""Faust's aiokafka transport with a configurable consumer fetch wait and a safe commit offset.

Faust creates the worker's `AIOKafkaConsumer` with `fetch_max_wait_ms=1500` and no setting to
change it. On Apache Kafka that does not matter (a waiting fetch is answered as soon as a
record arrives), but Tansu only re-reads the log between sleeps of half the remaining wait,
so on it every event waited 0-750 ms before the worker saw it. `WorkerApp` builds its transport
from the classes below, which give the consumer `Settings.fetch_max_wait_ms` instead.

They also close a window in which Faust commits an offset past an event that is still being
processed (see `_Consumer._new_offset`), which lost events when the worker was SIGKILLed.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TP, TransportT
from faust.types.tuples import ack_lock


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its Fetcher, which is after this.
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)

    def _new_offset(self, tp: TP) -> int | None:
        """The offset to commit for `tp`: never past a delivered event that is not acked.

        Faust commits the end of the first run of consecutive acked offsets, and only refuses
        when that run starts more than one offset after the committed one (it tolerates one,
        for a transaction marker) or when the committed offset is 0 (falsy). So with offset N
        still being scored and N+1.. acked, it committed past N; a SIGKILL then lost N for good.
        Checked here before Faust's own bookkeeping, which drops the offsets it returns.
        """
        with ack_lock:  # the lock Faust's ack() takes: no message is acked while we look
            acked = self._acked[tp]
            if acked:
                pending = [m.offset for m in self._unacked_messages if m.tp == tp and not m.acked]
                if pending and min(pending) < min(acked):
                    return None
            return super()._new_offset(tp)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class WorkerApp(faust.App):
    """A `faust.App` whose worker consumer waits at most `fetch_max_wait_ms` per fetch."""

    def __init__(self, *args: Any, fetch_max_wait_ms: int, **kwargs: Any) -> None:
        # Set before faust.App.__init__, which may already build the transport.
        self.fetch_max_wait_ms = fetch_max_wait_ms
        super().__init__(*args, **kwargs)

    def _new_transport(self) -> TransportT:
        return _Transport(self.conf.broker_consumer, self)
