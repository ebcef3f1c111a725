"""The Faust recommender worker. Run with `recloop worker` or `faust -A recloop.streams.app worker`.

Topology: events topic (keyed by user id) -> per-event processor (decode, validate, update the
user's state table) -> micro-batches of pending requests (`Batcher`) -> one inference call
per batch in a thread (onnxruntime releases the GIL, so the loop keeps heartbeating) ->
recommendations topic. Bad messages go to the dead-letter topic with their reason.

Events are acked only after the broker has acknowledged everything they caused: their
recommendations or dead letters and their state's changelog record. Faust commits only acked
offsets, so the guarantee is at-least-once: a crash can re-answer events consumed since the
last commit (same request id), never lose an answer or a state update. A failed delivery
crashes the worker instead of being acked.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import faust
from faust.types import TP, EventT
from prometheus_client import start_http_server

from recloop.core.contract import (
    ContractError,
    DeadLetterReason,
    encode,
)
from recloop.core.errors import RunError
from recloop.core.settings import ConfigError, Settings, load_settings
from recloop.streams import metrics
from recloop.streams.batcher import Batcher
from recloop.streams.changelog import CoalescingTable, Write
from recloop.streams.offsets import Verdict
from recloop.streams.pipeline import Pending, Pipeline, Rejected, record_dead_letter, record_emitted
from recloop.streams.strategies import ModelStrategy, ModelWatcher, build_strategy
from recloop.streams.transport import WorkerApp

log = logging.getLogger("recloop.worker")

Send = Callable[[str, bytes, bytes, int], Awaitable[Awaitable[object]]]
"""Sends (topic, key, value) for an event of the given events partition; returns its ack."""

Item = tuple[EventT, Pending | Rejected | None, list[Write]]
"""One event in a batch: the event, what the processor made of it, its table writes."""


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


CRASH_STOP_SECONDS = 10.0
"""How long a crashed worker may take to stop before it exits anyway. Faust's stop waits until
every message in flight is acked, which the failed batch's never are: a worker whose answers
the broker refused stayed in "Wait for streams" for over 90 s under load. Exiting loses
nothing: the offset ledger commits settled offsets only, so those events are redelivered."""


STALL_SECONDS = 5.0
"""How long a partition with records waiting may deliver nothing before it is fetched again
(checked every `worker.lag_interval_seconds`). An overloaded worker still delivers from every
partition within a second or two (Faust takes records round-robin); a stalled one never does."""


def _exit_now(exc: BaseException) -> None:
    log.error("the worker did not stop within %.0f s of %r; exiting", CRASH_STOP_SECONDS, exc)
    logging.shutdown()
    os._exit(RunError.exit_code)


def create_app(settings: Settings) -> faust.App:
    """Build the worker app from settings (one app per process)."""
    cfg = settings.worker
    store = "memory://" if cfg.store == "memory" else "rocksdb://"
    if cfg.store == "rocksdb":
        try:
            import rocksdict  # noqa: F401  (Faust's rocksdb:// store uses it when installed)
        except ImportError:
            raise ConfigError(
                "worker.store=rocksdb needs rocksdict: pip install 'recloop[rocksdb]'"
            ) from None
    app = WorkerApp(
        cfg.app_id,
        fetch_max_wait_ms=settings.fetch_max_wait_ms,
        client_kwargs=settings.kafka_kwargs(),
        broker=[f"kafka://{host}" for host in settings.bootstrap.split(",")],
        broker_credentials=faust_credentials(settings),
        store=store,
        datadir=str(cfg.data_dir),
        topic_partitions=settings.topics.partitions,
        topic_replication_factor=settings.topics.replication_factor,
        processing_guarantee=cfg.processing_guarantee,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        broker_session_timeout=cfg.session_timeout_seconds,
        broker_rebalance_timeout=cfg.rebalance_timeout_seconds,
        broker_heartbeat_interval=cfg.heartbeat_interval_seconds,
        broker_commit_interval=cfg.commit_interval_seconds,
        key_serializer="raw",
        value_serializer="raw",
        producer_linger=cfg.producer_linger_seconds,
        stream_buffer_maxsize=cfg.stream_buffer_maxsize,
    )
    topics = settings.topics
    events = app.topic(topics.events, key_type=bytes, value_type=bytes)
    recommendations = app.topic(topics.recommendations, key_type=bytes, value_type=bytes)
    dead_letters = app.topic(topics.dead_letters, key_type=bytes, value_type=bytes)
    # use_partitioner: changelog records go to the partition of their key (the user id), which
    # is the events partition too, so recovery puts each user's state where its events are.
    table = app.tables.add(
        faust.Table(
            app,
            name="user-state",
            default=None,
            beacon=app.tables.beacon,
            key_type=bytes,
            value_type=bytes,
            partitions=topics.partitions,
            use_partitioner=True,
        )
    )
    # The pipeline writes the table's store directly; the changelog gets one record per user
    # per batch (streams/changelog.py), sent with the batch's answers.
    state = CoalescingTable(table)
    strategy = build_strategy(cfg.strategy, cfg.model_dir, cfg.inference_threads)
    pipeline = Pipeline(cfg, strategy, state, settings.max_message_bytes)
    watcher = (
        ModelWatcher(strategy.name, cfg.model_dir, strategy.card_version, cfg.inference_threads)
        if isinstance(strategy, ModelStrategy)
        else None
    )

    @app.task
    async def _start() -> None:
        # Faust's Monitor sensor keeps statistics for Faust's web views (off here) in four
        # calls per event; the worker's own figures are its Prometheus metrics.
        app.sensors.remove(app.monitor)
        metrics.MODEL_INFO.labels(strategy.name, strategy.version).set(1)
        if cfg.metrics_port:
            start_http_server(cfg.metrics_port, addr="0.0.0.0")
        log.info("worker ready: strategy=%s version=%s", strategy.name, strategy.version)

    async def process(value: bytes) -> Pending | Rejected | None:
        event: EventT | None = faust.current_event()
        assert event is not None
        msg = event.message
        try:
            return pipeline.on_event(value, msg.key, msg.topic, msg.partition, msg.offset)
        except Exception as exc:  # a bug must cost one event, not the worker
            log.exception("processing failed at %s[%d]@%d", msg.topic, msg.partition, msg.offset)
            err = ContractError(
                DeadLetterReason.PROCESSING_ERROR, f"{type(exc).__name__}: {exc}"[:1000]
            )
            return Rejected(
                err.dead_letter(
                    value if isinstance(value, bytes) else b"",
                    topic=msg.topic,
                    partition=msg.partition,
                    offset=msg.offset,
                    key=msg.key,
                )
            )

    recommendations_topic = recommendations.get_topic_name()
    dead_letters_topic = dead_letters.get_topic_name()

    events_topic = events.get_topic_name()
    exactly_once = cfg.processing_guarantee == "exactly_once"

    async def sender() -> Send:
        """A function sending one record for an event of a given events partition, returning
        its delivery future; taken once per batch."""
        if not exactly_once:
            # Straight to Faust's producer: the same record and partitioning as `Topic.send`,
            # without its per-message future, sensor and logging bookkeeping (~40 us per
            # recommendation in the profile).
            producer = await app.maybe_start_producer()

            async def send(topic: str, key: bytes, value: bytes, source: int) -> Awaitable[object]:
                return await producer.send(topic, key, value, None, None, None)

            return send
        # Under exactly_once a record goes into the transaction of the events partition it
        # answers, the one that commits that partition's offsets: answer and offset become
        # visible together. Faust's TransactionManager picks the transaction of the record's
        # destination partition, from the consumer's metadata, which has no partitions for a
        # topic the worker does not read: our answers went out in no transaction at all,
        # visible at once, and a restart showed them twice to read_committed readers.
        producer = app.producer
        group = app.assignor.group_for_topic(events_topic)

        async def send_in_transaction(
            topic: str, key: bytes, value: bytes, source: int
        ) -> Awaitable[object]:
            tid = f"{app.conf.id}-{group}-{source}"
            return await producer.send(topic, key, value, None, None, None, transactional_id=tid)

        return send_in_transaction

    async def answer_batch(batch: Sequence[Item]) -> list[Awaitable[object]]:
        """Score one batch and hand its recommendations and dead letters to the producer;
        returns their delivery futures."""
        send = await sender()
        sent: list[Awaitable[object]] = []
        pending: list[Pending] = []
        sources: list[int] = []  # the events partition of each pending request
        for event, item, _ in batch:
            if isinstance(item, Pending):
                pending.append(item)
                sources.append(event.message.partition)
            elif isinstance(item, Rejected):
                record_dead_letter(item.letter)
                letter = item.letter
                source = event.message.partition
                sent.append(await send(dead_letters_topic, letter.key, encode(letter), source))
        if pending:
            try:
                # In a thread: onnxruntime and numpy release the GIL, so the loop keeps
                # consuming, folding state and sending while a batch is scored.
                recs = await asyncio.to_thread(pipeline.answer, pending)
            except Exception as exc:  # any strategy bug: dead-letter the batch, keep going
                log.exception("inference failed for a batch of %d", len(pending))
                for letter, source in zip(pipeline.failed(pending, exc), sources, strict=True):
                    record_dead_letter(letter)
                    sent.append(await send(dead_letters_topic, letter.key, encode(letter), source))
            else:
                for rec, source in zip(recs, sources, strict=True):
                    record_emitted(rec)
                    key = rec.user_id.encode()
                    sent.append(await send(recommendations_topic, key, encode(rec), source))
        return sent

    buffered: list[Callable[[], int]] = []

    @app.agent(events)
    async def recommend(stream: faust.StreamT[bytes]) -> None:
        # Per event, in the agent (the event is `current_event`, which the changelog and
        # RocksDB need): decode, validate and fold into the user's state. Batches are scored
        # and sent by the batcher's own task while the agent goes on with the next events.
        events_in = stream.noack()
        # The records Faust has buffered for this agent: a partition is only silent (see
        # `_refetch_stalled`) while the agent has nothing left to take.
        buffered[:] = [stream.channel.queue.qsize]  # type: ignore[attr-defined]

        async def handle(batch: list[Item]) -> Awaitable[object]:
            sent = await answer_batch(batch)
            producer = await app.maybe_start_producer()
            sent.extend(await state.send_batch(producer, (w for _, _, ws in batch for w in ws)))
            # Completes once the broker has acknowledged every record; the first failed
            # delivery raises (and crashes the worker) instead of letting the batch be acked.
            return asyncio.gather(*sent)

        async def settle(batch: list[Item]) -> None:
            # Only now may these offsets be committed: a handoff to the producer is not
            # durability (a record can still be in Faust's buffer or aiokafka's accumulator,
            # or fail, when the commit goes out).
            for event, _, _ in batch:
                msg = event.message
                ledger.settle(msg.tp, msg.offset)
                await events_in.ack(event)

        crashing: list[asyncio.Future[None]] = []

        def crash(exc: BaseException) -> None:
            # Not a strategy error (those are dead-lettered): a bug or a producer failure.
            # Crash the worker; unacked events are redelivered after the restart.
            log.error("batch handling failed, stopping the worker: %r", exc)
            asyncio.get_running_loop().call_later(CRASH_STOP_SECONDS, _exit_now, exc)
            crashing.append(asyncio.ensure_future(app.crash(exc)))

        batcher: Batcher[Item] = Batcher(
            handle,
            cfg.batch_size,
            cfg.batch_wait_seconds or 0.001,
            cfg.max_queued_batches,
            on_error=crash,
            settle=settle,
        )
        batcher.start()
        consumer = app.consumer
        ledger = consumer.ledger
        # Under exactly_once a commit waits until the event being processed is in the batcher
        # and every batch is settled (see `_Consumer.force_commit`); otherwise nothing waits.
        gate = asyncio.Lock() if cfg.processing_guarantee == "exactly_once" else None

        @contextlib.asynccontextmanager
        async def quiesced() -> AsyncIterator[None]:
            assert gate is not None
            async with gate:
                await batcher.drain()
                yield

        if gate is not None:
            consumer.quiesce = quiesced
        changelog_known = False
        try:
            async for event in events_in.events():
                if not changelog_known:
                    await _fetch_changelog_metadata(app, table)
                    changelog_known = True
                msg = event.message
                verdict = ledger.receive(msg.tp, msg.offset)
                if verdict is not Verdict.PROCESS:
                    # Delivered again, or fetched past records that never arrived: nothing
                    # to do but let Faust forget it (the ledger alone decides the commit).
                    if verdict is Verdict.SEEK:
                        metrics.OFFSET_HOLES.inc()
                        await consumer.seek_back(msg.tp, ledger.next_offset(msg.tp))
                    await events_in.ack(event)
                    continue
                if gate is None:
                    outcome = await process(event.value)
                    await batcher.add((event, outcome, state.take_writes()))
                else:
                    async with gate:
                        outcome = await process(event.value)
                        await batcher.add((event, outcome, state.take_writes()))
        finally:
            consumer.quiesce = None
            await batcher.stop()
            # Where each partition stood: what a lost or stuck record is traced back to.
            log.info("offset ledger at stop: %s", ledger.describe())

    @app.timer(interval=cfg.model_poll_seconds)
    async def _reload_model() -> None:
        if watcher is None:
            return
        previous_error = watcher.last_error
        fresh = await asyncio.to_thread(watcher.check)
        if watcher.last_error and watcher.last_error != previous_error:
            metrics.MODEL_RELOADS.labels("failed").inc()
            log.warning(
                "model reload failed, still serving %s: %s",
                pipeline.strategy.version,
                watcher.last_error,
            )
        if fresh is None:
            return
        old = pipeline.strategy
        pipeline.strategy = fresh  # one assignment: the next batch uses the new version
        metrics.MODEL_INFO.clear()
        metrics.MODEL_INFO.labels(fresh.name, fresh.version).set(1)
        metrics.MODEL_RELOADS.labels("loaded").inc()
        log.info("model reloaded: %s -> %s", old.version, fresh.version)

    lag_partitions: set[str] = set()  # the CONSUMER_LAG label values this worker has set

    @app.timer(interval=cfg.lag_interval_seconds)
    async def _gauges() -> None:
        metrics.TABLE_USERS.set(len(table))
        ends = await _update_lag(app, topics.events, pipeline, lag_partitions)
        await _refetch_stalled(app, ends, buffered[0]() if buffered else 0)

    return app


async def _fetch_changelog_metadata(app: faust.App, table: faust.Table) -> None:
    """Make the producer fetch the changelog topic's metadata, once, before the first event.

    Faust partitions a changelog record with the producer's metadata without waiting for it;
    a producer that had never fetched the changelog topic (Faust created it a moment before)
    made every table write raise, and each event was dead-lettered as processing_error for
    the worker's whole life (seen with several workers starting at once, in
    tests/faults/test_alerts.py and tests/observability/test_prometheus_live.py).
    """
    await app.maybe_start_producer()
    # app.producer: the one Faust's key partitioning asks (also under exactly_once).
    await app.producer._ensure_producer().partitions_for(table.changelog_topic.get_topic_name())


async def _update_lag(
    app: faust.App, topic: str, pipeline: Pipeline, reported: set[str]
) -> Mapping[TP, int]:
    """Consumer lag per assigned events partition, and how many partitions this worker has;
    returns the end offsets the broker reported (none if it did not answer in time).

    `reported` holds the partitions with a lag gauge, so those revoked by a rebalance are
    removed (prometheus-client has no public listing of a metric's label sets).
    """
    consumer = app.consumer
    assigned = sorted(tp for tp in consumer.assignment() if tp.topic == topic)
    metrics.ASSIGNED_PARTITIONS.set(len(assigned))
    mine = {str(tp.partition) for tp in assigned}
    for partition in reported - mine:
        metrics.CONSUMER_LAG.remove(partition)
    reported &= mine
    # The end offsets from the broker (ListOffsets), not `consumer.highwater(tp)`: that is
    # the high watermark of the last fetch response, and while Faust pauses a partition
    # (the stream buffer is full: the worker is overloaded) nothing is fetched: in a 60 s
    # overload lag read at most 3,312 during the run while ~20,000 events were waiting
    # (tests/faults/test_overload.py), so the lag alert under-reported too.
    # Bounded: the gauges must keep updating even if the broker does not answer.
    try:
        ends = await asyncio.wait_for(consumer.highwaters(*assigned), 2.0) if assigned else {}
    except Exception:  # unreachable, slow, or a rebalance under way: the fetch's value
        ends = {}
    for tp in assigned:
        try:
            highwater = ends.get(tp)
            if highwater is None:
                highwater = consumer.highwater(tp)
            position = pipeline.next_offset.get((tp.topic, tp.partition))
            if position is None:  # nothing processed here yet: the fetch position
                position = await consumer.position(tp)
        except Exception:  # the partition moved during a rebalance; next round will see
            continue
        if highwater is not None and highwater >= 0 and position is not None:
            metrics.CONSUMER_LAG.labels(str(tp.partition)).set(max(0, highwater - position))
            reported.add(str(tp.partition))
    return ends


async def _refetch_stalled(app: faust.App, ends: Mapping[TP, int], buffered: int) -> None:
    """Fetch again each partition with records waiting that delivered nothing for a while.

    Only while the agent has taken every record Faust buffered for it (`buffered` is 0): a
    slow or overloaded worker leaves partitions silent for long stretches because the records
    ahead of theirs are still waiting for the agent, not because they were lost (a worker slowed
    to 2 answers/s was fetched again 3-6 times per run before this condition)."""
    consumer = app.consumer
    if app.rebalancing or app.in_recovery or buffered:  # nothing is lost now
        consumer.ledger.hear_all()
        return
    for tp, offset in consumer.ledger.stalled(ends, STALL_SECONDS).items():
        # Faust's own view of the partition, to trace why it stalled if it stalls again.
        log.warning(
            "partition %s delivered nothing for %.0f s with records up to offset %d waiting "
            "(active %s, paused %s, buffer full %s)",
            tp,
            STALL_SECONDS,
            ends[tp] - 1,
            tp in (consumer._active_partitions or ()),
            tp in consumer._paused_partitions,
            tp in consumer._buffered_partitions,
        )
        metrics.STALL_REFETCHES.inc()
        try:
            await consumer.seek_back(tp, offset)
        except Exception as exc:  # revoked meanwhile: the next assignment seeks it anyway
            log.info("could not fetch %s again: %r", tp, exc)


app = create_app(load_settings())
