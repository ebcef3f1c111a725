"""The Faust recommender worker. Run with `recloop worker` or `faust -A streams.app worker`.

Topology: events topic (keyed by user id) -> per-event processor (decode, validate, update the
user's state table) -> micro-batches of pending requests (`stream.take`) -> one inference call
per batch in a thread (onnxruntime releases the GIL, so the loop keeps heartbeating) ->
recommendations topic. Bad messages go to the dead-letter topic with their reason.

Events are acked only after their batch's recommendations are handed to the producer, so the
guarantee is at-least-once: a crash can re-answer events consumed since the last commit
(same request id), never lose one.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import faust
from faust.types import EventT
from prometheus_client import start_http_server

from streams import metrics
from streams.config import Settings, load_settings
from streams.contract import Recommendation, encode
from streams.pipeline import Pending, Pipeline, Rejected, record_dead_letter, record_emitted
from streams.strategies import build_strategy

log = logging.getLogger("recloop.worker")


def faust_credentials(settings: Settings) -> Any:
    """Faust's form of the configured Kafka security settings (None for PLAINTEXT)."""
    sec = settings.security
    if sec.sasl_mechanism:
        return faust.SASLCredentials(
            username=sec.sasl_username,
            password=sec.sasl_password,
            mechanism=sec.sasl_mechanism,
            ssl_context=sec.ssl_context(),
        )
    return sec.ssl_context()


def create_app(settings: Settings) -> faust.App:
    """Build the worker app from settings (one app per process)."""
    cfg = settings.worker
    store = "memory://" if cfg.store == "memory" else "rocksdb://"
    app = faust.App(
        cfg.app_id,
        broker=[f"kafka://{host}" for host in settings.bootstrap.split(",")],
        broker_credentials=faust_credentials(settings),
        store=store,
        datadir=str(cfg.data_dir),
        topic_partitions=settings.topics.partitions,
        topic_replication_factor=settings.topics.replication_factor,
        processing_guarantee=cfg.processing_guarantee,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        key_serializer="raw",
        value_serializer="raw",
    )
    topics = settings.topics
    events = app.topic(topics.events, key_type=bytes, value_type=bytes)
    recommendations = app.topic(topics.recommendations, key_type=bytes, value_type=bytes)
    dead_letters = app.topic(topics.dead_letters, key_type=bytes, value_type=bytes)
    # use_partitioner: changelog records go to the partition of their key (the user id), which
    # is the events partition too, so recovery puts each user's state where its events are.
    table = app.Table(
        "user-state",
        default=None,
        key_type=bytes,
        value_type=bytes,
        partitions=topics.partitions,
        use_partitioner=True,
    )
    strategy = build_strategy(cfg.strategy, cfg.model_dir)
    pipeline = {"p": Pipeline(cfg, strategy, table, settings.max_message_bytes)}

    @app.task
    async def _start() -> None:
        metrics.MODEL_INFO.labels(strategy.name, strategy.version).set(1)
        if cfg.metrics_port:
            start_http_server(cfg.metrics_port, addr="0.0.0.0")
        log.info("worker ready: strategy=%s version=%s", strategy.name, strategy.version)

    async def process(value: bytes) -> Pending | Rejected | None:
        event: EventT | None = faust.current_event()
        assert event is not None
        msg = event.message
        return pipeline["p"].on_event(value, msg.key, msg.topic, msg.partition, msg.offset)

    async def emit(recs: list[Recommendation]) -> None:
        for rec in recs:
            record_emitted(rec)
            await recommendations.send(key=rec.user_id.encode(), value=encode(rec))

    @app.agent(events)
    async def recommend(stream: faust.StreamT[bytes]) -> None:
        stream.add_processor(process)
        async for batch in stream.take(cfg.batch_size, within=cfg.batch_wait_seconds or 0.001):
            pending: list[Pending] = []
            for item in batch:
                if isinstance(item, Pending):
                    pending.append(item)
                elif isinstance(item, Rejected):
                    record_dead_letter(item.letter)
                    await dead_letters.send(key=item.letter.key, value=encode(item.letter))
            if pending:
                recs = await asyncio.to_thread(pipeline["p"].answer, pending)
                await emit(recs)

    @app.timer(interval=5.0)
    async def _table_size() -> None:
        metrics.TABLE_USERS.set(len(table))

    return app


app = create_app(load_settings())
