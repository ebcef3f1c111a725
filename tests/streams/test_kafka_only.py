"""Real Apache Kafka only: two workers sharing the partitions, and exactly-once processing."""

from __future__ import annotations

from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer

from recloop.core.contract import decode_recommendation
from recloop.core.topics import ensure_topics
from tests.streams.helpers import (
    Worker,
    assert_states,
    collect_recommendations,
    comparable,
    duplicates,
    expected_states,
    metric,
    read_changelog,
    triggering,
    wait_for,
    wait_settled,
    worker_settings,
)
from tests.support import make_events, produce_events

pytestmark = pytest.mark.kafka


async def test_two_workers_share_partitions_and_answer_each_event_once(
    kafka, tmp_path: Path
) -> None:
    settings = worker_settings(kafka.bootstrap, tmp_path, "scale")
    settings.topics.partitions = 6
    await ensure_topics(settings)
    second = settings.model_copy(deep=True)
    second.worker.metrics_port = settings.worker.metrics_port + 1
    second.worker.data_dir = tmp_path / "worker-2"
    workers = [Worker(settings).start(), Worker(second).start()]
    ports = [settings.worker.metrics_port, second.worker.metrics_port]
    try:
        # Produce only once the group is stable with both members, so no rebalance overlaps.
        await wait_for(
            lambda: (
                [metric(p, "recloop_worker_assigned_partitions") for p in ports].count(0) == 0
                and sum(metric(p, "recloop_worker_assigned_partitions") for p in ports) == 6
            ),
            60,
            "both workers to own partitions",
        )
        events = make_events(n_users=200, per_user=6, prefix="s")
        await produce_events(kafka.bootstrap, settings.topics.events, events)
        want = triggering(events, settings)
        recs = await collect_recommendations(settings, want, timeout=120)
        assert {r.event_id for r in recs} == want
        assert not duplicates(recs), "outside a rebalance every event is answered exactly once"
        consumed = [metric(p, "recloop_worker_events_total") for p in ports]
        assert all(consumed) and sum(consumed) == len(events), consumed
        expected = expected_states(events, settings.worker.history_length)
        await wait_settled(settings)
        actual = await read_changelog(settings)
        assert {u: comparable(s) for u, s in actual.items()} == {
            u: comparable(s) for u, s in expected.items()
        }
        assert all(w.alive() for w in workers)
    finally:
        for w in workers:
            w.stop()


async def test_exactly_once_mode_answers_every_event_once(kafka, tmp_path: Path) -> None:
    # The clean run; SIGKILLs in this mode: test_worker_e2e.py::test_sigkill_under_exactly_once.
    settings = worker_settings(
        kafka.bootstrap, tmp_path, "eos", processing_guarantee="exactly_once"
    )
    await ensure_topics(settings)
    worker = Worker(settings).start()
    events = make_events(n_users=40, per_user=8, prefix="x")
    try:
        await produce_events(kafka.bootstrap, settings.topics.events, events)
        want = triggering(events, settings)
        committed = await _read_committed(settings, len(want), timeout=120)
        recs = [decode_recommendation(v) for v in committed]
        assert {r.event_id for r in recs} == want, worker.log()[-3000:]
        assert not duplicates(recs), "read_committed consumers must see each answer once"
        await assert_states(settings, events, worker)
    finally:
        worker.stop()
    assert "Traceback" not in worker.log(), worker.log()[-3000:]


async def _read_committed(settings, at_least: int, timeout: float) -> list[bytes]:
    import asyncio
    import time

    consumer = AIOKafkaConsumer(
        settings.topics.recommendations,
        bootstrap_servers=settings.bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        isolation_level="read_committed",
    )
    await consumer.start()
    values: list[bytes] = []
    deadline = time.monotonic() + timeout
    settle: float | None = None
    try:
        while time.monotonic() < deadline:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                values.extend(r.value for r in records if r.value is not None)
            if len(values) >= at_least:
                settle = settle or time.monotonic() + 3  # anything duplicated shows up too
                if time.monotonic() > settle:
                    break
            await asyncio.sleep(0)
    finally:
        await consumer.stop()
    return values
