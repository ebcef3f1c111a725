#!/usr/bin/env python
"""A minimal Faust (faust-streaming) app: one agent forwarding each event unchanged.

The `faust_passthrough` baseline of `scripts/bench_worker.py`: Faust's own per-message cost
(fetch, stream, agent, ack, commit, produce), without the worker's decode, state table,
changelog, batching or inference. Progress is the Prometheus counter
`faust_passthrough_events_total` on `--metrics-port`.

    .venv/bin/python scripts/faust_passthrough.py --bootstrap 127.0.0.1:9092 \
        --events recloop.events --recommendations recloop.recommendations --metrics-port 9101

`--transport faust` (default) runs stock Faust and does not import `recloop.streams`: the few
settings that matter are read from the worker's defaults (`recloop.core.settings`).
`--transport worker` runs the same agent on the worker's own `WorkerApp`
(`streams/transport.py`), whose consumer shortens Faust's per-message path: the floor of the
worker's Faust share. There the offset ledger commits nothing (this agent never feeds it),
which saves the commits' cost; a floor, not a like-for-like worker.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from typing import Any

import faust
from faust.transport.drivers import aiokafka as faust_aiokafka
from faust.types import TransportT
from prometheus_client import Counter, start_http_server

from recloop.core.settings import Settings

FORWARDED = Counter("faust_passthrough_events", "Events forwarded to the recommendations topic.")

# The worker's defaults, from the one place they are set (recloop/core/settings.py, passed to
# Faust by streams/app.py create_app): read, not copied, so the baseline follows them.
_DEFAULTS = Settings()
FETCH_MAX_WAIT_MS = _DEFAULTS.fetch_max_wait_ms  # applied by streams/transport.py
COMMIT_INTERVAL_SECONDS = _DEFAULTS.worker.commit_interval_seconds
PRODUCER_LINGER_SECONDS = _DEFAULTS.worker.producer_linger_seconds
STREAM_BUFFER_MAXSIZE = _DEFAULTS.worker.stream_buffer_maxsize
SESSION_TIMEOUT_SECONDS = _DEFAULTS.worker.session_timeout_seconds
REBALANCE_TIMEOUT_SECONDS = _DEFAULTS.worker.rebalance_timeout_seconds
HEARTBEAT_INTERVAL_SECONDS = _DEFAULTS.worker.heartbeat_interval_seconds
# Producer acks: neither sets it, so Faust's default (-1, all in-sync replicas) in both.


class _ConsumerThread(faust_aiokafka.AIOKafkaConsumerThread):
    """The consumer's fetch wait, as streams/transport.py `_ConsumerThread` sets it."""

    def _create_worker_consumer(self, transport: Any) -> Any:
        consumer = super()._create_worker_consumer(transport)
        consumer._fetch_max_wait_ms = FETCH_MAX_WAIT_MS
        return consumer


class _Consumer(faust_aiokafka.Consumer):
    def _new_consumer_thread(self) -> faust_aiokafka.AIOKafkaConsumerThread:
        return _ConsumerThread(self, loop=self.loop, beacon=self.beacon)


class _Transport(faust_aiokafka.Transport):
    Consumer = _Consumer


class PassthroughApp(faust.App):
    """streams/transport.py `WorkerApp`'s fetch wait, nothing else."""

    def _new_transport(self) -> TransportT:
        return _Transport(self.conf.broker_consumer, self)


def create_app(args: argparse.Namespace) -> faust.App:
    app_class: Any = PassthroughApp
    extra: dict[str, Any] = {}
    if args.transport == "worker":
        from recloop.streams.transport import WorkerApp

        app_class = WorkerApp
        extra = {
            "fetch_max_wait_ms": FETCH_MAX_WAIT_MS,
            "client_kwargs": {"bootstrap_servers": args.bootstrap},
        }
    app = app_class(
        args.app_id,
        **extra,
        broker=[f"kafka://{host}" for host in args.bootstrap.split(",")],
        store="memory://",
        datadir=args.data_dir or tempfile.mkdtemp(prefix="faust-passthrough-"),
        topic_partitions=args.partitions,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=SESSION_TIMEOUT_SECONDS,
        broker_rebalance_timeout=REBALANCE_TIMEOUT_SECONDS,
        broker_heartbeat_interval=HEARTBEAT_INTERVAL_SECONDS,
        broker_commit_interval=COMMIT_INTERVAL_SECONDS,
        key_serializer="raw",
        value_serializer="raw",
        producer_linger=PRODUCER_LINGER_SECONDS,
        stream_buffer_maxsize=STREAM_BUFFER_MAXSIZE,
    )
    events = app.topic(args.events, key_type=bytes, value_type=bytes)
    recommendations = app.topic(args.recommendations, key_type=bytes, value_type=bytes)
    recommendations_name = recommendations.get_topic_name()

    @app.task
    async def _start() -> None:
        # As streams/app.py `_start`: Faust's Monitor sensor only feeds its web views (off).
        app.sensors.remove(app.monitor)
        start_http_server(args.metrics_port, addr="127.0.0.1")

    @app.agent(events)
    async def forward(stream: faust.StreamT[bytes]) -> None:
        # Straight to Faust's producer, as streams/app.py `sender()` does (not `Topic.send`,
        # whose per-message future and bookkeeping the worker skips); awaiting the send hands
        # the record to the producer's buffer. The event is acked when the next one is taken.
        producer = await app.maybe_start_producer()
        async for event in stream.events():
            await producer.send(recommendations_name, event.key, event.value, None, None, None)
            FORWARDED.inc()

    return app


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", required=True)
    p.add_argument("--events", required=True, help="topic to read")
    p.add_argument("--recommendations", required=True, help="topic to forward to")
    p.add_argument("--partitions", type=int, default=4)
    p.add_argument("--metrics-port", type=int, required=True)
    p.add_argument("--app-id", default="faust-passthrough")
    p.add_argument("--data-dir", help="Faust's data directory (default: a new temporary one)")
    p.add_argument("--loglevel", default="warning")
    p.add_argument(
        "--transport",
        choices=["faust", "worker"],
        default="faust",
        help="stock Faust, or the worker's WorkerApp (streams/transport.py)",
    )
    return p


def main() -> None:
    args = parser().parse_args()
    from faust.worker import Worker

    worker = Worker(create_app(args), loglevel=args.loglevel)
    # As recloop/cli/worker.py: Faust's spinner sets the root logger to DEBUG (~8% of CPU).
    worker.spinner = None
    logging.getLogger("faust").setLevel(args.loglevel.upper())
    worker.execute_from_commandline()


if __name__ == "__main__":
    main()
