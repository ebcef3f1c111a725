"""Faust's aiokafka transport with a configurable consumer fetch wait.

Faust creates the worker's `AIOKafkaConsumer` with `fetch_max_wait_ms=1500` and no setting to
change it. On Apache Kafka that does not matter (a waiting fetch is answered as soon as a
record arrives), but Tansu only re-reads the log between sleeps of half the remaining wait,
so on it every event waited 0-750 ms before the worker saw it. `WorkerApp` builds its transport
from the classes below, which give the consumer `Settings.fetch_max_wait_ms` instead.
"""

from __future__ import annotations

from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TransportT


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        # Read by AIOKafkaConsumer.start() when it builds its Fetcher, which is after this.
        consumer._fetch_max_wait_ms = self.app.fetch_max_wait_ms
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


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
