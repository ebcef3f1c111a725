"""The worker end to end on both brokers: every strategy through the same path, per-user state
in the changelog, hot reload, SIGKILL recovery, and property-generated malformed input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import Phase, given
from hypothesis import settings as hypothesis_settings

from recloop.core.contract import decode_dead_letter, encode
from recloop.core.topics import ensure_topics
from recloop.streams.pipeline import Rejected
from tests.streams.helpers import (
    Worker,
    collect_recommendations,
    comparable,
    duplicates,
    expected_states,
    metric,
    read_changelog,
    triggering,
    wait_for,
    worker_settings,
)
from tests.streams.modeldir import write_model_dir
from tests.streams.test_pipeline_props import MAX_BYTES, _pipeline, any_message
from tests.support import collect, make_events, produce, produce_events

pytestmark = pytest.mark.kafka


def _corpus(n: int) -> list[bytes]:
    """`n` messages drawn by hypothesis (derandomized, so a failure reproduces)."""
    drawn: list[bytes] = []

    @hypothesis_settings(
        max_examples=n, derandomize=True, database=None, deadline=None, phases=[Phase.generate]
    )
    @given(any_message)
    def draw(raw: bytes) -> None:
        drawn.append(raw)

    draw()
    return drawn


async def _assert_state(settings, events) -> None:
    expected = expected_states(events, settings.worker.history_length)
    actual = await read_changelog(settings)
    missing = set(expected) - set(actual)
    assert not missing, f"users without state in the changelog: {sorted(missing)[:5]}"
    wrong = [u for u in expected if comparable(actual[u]) != comparable(expected[u])]
    assert not wrong, f"{wrong[:3]}: {actual[wrong[0]]} != {expected[wrong[0]]}"


@pytest.mark.parametrize("strategy", ["onnx", "popular", "cooccurrence"])
async def test_every_strategy_through_the_same_path(broker, tmp_path: Path, strategy: str) -> None:
    model_dir = write_model_dir(tmp_path / "model", "v1")
    settings = worker_settings(
        broker.bootstrap, tmp_path, f"strat-{strategy}", strategy=strategy, model_dir=model_dir
    )
    await ensure_topics(settings)
    worker = Worker(settings, RECLOOP_WORKER__MODEL_POLL_SECONDS="0.2").start()
    try:
        # item_space 50 > the model's 40 items: ids 40..49 are out of vocabulary.
        first = make_events(n_users=15, per_user=5, prefix="a")
        await produce_events(broker.bootstrap, settings.topics.events, first)
        recs = await collect_recommendations(settings, triggering(first, settings))
        assert {r.event_id for r in recs} == triggering(first, settings), worker.log()[-3000:]
        assert not duplicates(recs)
        port = settings.worker.metrics_port
        for rec in recs:
            assert rec.strategy == strategy
            assert rec.model_version.startswith("v1")
            assert len(rec.items) == settings.worker.slate_size
            assert {i.item_id for i in rec.items} <= {str(i) for i in range(40)}
            t = rec.times
            assert t.consumed and t.inferred and t.emitted
            assert t.event <= t.consumed <= t.inferred <= t.emitted
        if strategy == "onnx":
            # The test model ranks the item after the user's last one first.
            by_event = {e.event_id: e for e in first}
            for rec in recs:
                item = by_event[rec.event_id].item_id
                if item is not None and int(item) < 38:
                    assert rec.items[0].item_id == str(int(item) + 1)

            # Hot reload: a new version in the directory is served without a restart.
            write_model_dir(model_dir, "v2")
            await wait_for(
                lambda: metric(port, "recloop_worker_model_info", 'version="v2"') == 1,
                30,
                "the worker to load model v2",
            )
            second = make_events(n_users=15, per_user=5, prefix="b")
            await produce_events(broker.bootstrap, settings.topics.events, second)
            want = triggering(first + second, settings)
            recs = await collect_recommendations(settings, want)
            assert {r.event_id for r in recs} == want
            assert not duplicates(recs), "a reload must not answer any event twice"
            assert {r.model_version for r in recs if r.event_id.startswith("b")} == {"v2"}
            assert metric(port, "recloop_worker_model_reloads_total", 'outcome="loaded"') == 1
            first = first + second
        await _assert_state(settings, first)
        assert metric(port, "recloop_worker_recommendations_total", f'strategy="{strategy}"') == (
            len(triggering(first, settings))
        )
        assert metric(port, "recloop_worker_assigned_partitions") == settings.topics.partitions
        await wait_for(
            lambda: (
                metric(port, "recloop_worker_table_users") == 15 * (2 if strategy == "onnx" else 1)
            ),
            10,
            "the table size gauge",
        )
        assert metric(port, "recloop_worker_consumer_lag") == 0
    finally:
        worker.stop()
    assert "Traceback" not in worker.log(), worker.log()[-3000:]


async def test_sigkill_mid_stream_recovers_state_and_answers_everything(
    broker, tmp_path: Path
) -> None:
    await _sigkill_recovery(broker.bootstrap, tmp_path, "memory")


async def test_sigkill_recovery_with_the_rocksdb_store(kafka, tmp_path: Path) -> None:
    """The same kill and restart with state in RocksDB (rocksdict): the restarted worker reopens
    its local store and catches up from the changelog. One broker is enough (the store is
    local); Kafka because that is what production runs."""
    await _sigkill_recovery(kafka.bootstrap, tmp_path, "rocksdb")
    assert any((tmp_path / "worker").rglob("CURRENT")), "no RocksDB files in the data dir"


async def _sigkill_recovery(bootstrap: str, tmp_path: Path, store: str) -> None:
    # A slow batch (inject_delay) keeps the stream busy when the worker is killed.
    settings = worker_settings(
        bootstrap, tmp_path, f"kill-{store}", inject_delay_seconds=0.05, store=store
    )
    await ensure_topics(settings)
    worker = Worker(settings).start()
    events = make_events(n_users=40, per_user=8, prefix="k")
    half = [e for e in events if e.seq < 4]
    rest = [e for e in events if e.seq >= 4]
    try:
        await produce_events(bootstrap, settings.topics.events, half)
        port = settings.worker.metrics_port
        await wait_for(
            lambda: metric(port, "recloop_worker_recommendations_total") >= 20,
            60,
            "the first recommendations",
        )
        await produce_events(bootstrap, settings.topics.events, rest)
        await wait_for(
            lambda: metric(port, "recloop_worker_events_total") >= len(half) + 10,
            60,
            "the second wave to be in flight",
        )
        answered_before = metric(port, "recloop_worker_recommendations_total")
        worker.kill()
        assert answered_before < len(triggering(events, settings)), "killed too late to matter"

        worker = Worker(settings).start()
        want = triggering(events, settings)
        recs = await collect_recommendations(settings, want, timeout=120)
        answered = {r.event_id for r in recs}
        assert answered >= want, f"lost: {sorted(want - answered)[:5]}\n{worker.log()[-3000:]}"
        # Redelivered events keep their request id; anything answered twice is identical.
        by_event: dict[str, set[str]] = {}
        for rec in recs:
            by_event.setdefault(rec.event_id, set()).add(rec.request_id)
        assert all(len(ids) == 1 for ids in by_event.values())
        # The restarted worker recovered the table: state counts each event exactly once.
        await _assert_state(settings, events)
    finally:
        worker.stop()


async def test_property_generated_malformed_messages_all_land_in_dead_letters(
    broker, tmp_path: Path
) -> None:
    settings = worker_settings(broker.bootstrap, tmp_path, "fuzz", max_message_bytes=MAX_BYTES)
    await ensure_topics(settings)
    corpus = _corpus(150)
    # Which of them must be rejected, decided by the same processor in-process.
    pipeline, _ = _pipeline()
    rejected = [
        raw for raw in corpus if isinstance(pipeline.on_event(raw, None, "e", 0, 0), Rejected)
    ]
    assert len(rejected) > 100, "the generator should mostly produce bad messages"
    valid = make_events(n_users=5, per_user=3, prefix="ok")
    worker = Worker(settings, RECLOOP_MAX_MESSAGE_BYTES=str(MAX_BYTES)).start()
    try:
        records = [(None, raw) for raw in rejected]
        records += [(e.user_id.encode(), encode(e)) for e in valid]
        await produce(broker.bootstrap, settings.topics.events, records)
        raw_dlq = await collect(
            broker.bootstrap, settings.topics.dead_letters, lambda vs: len(vs) >= len(rejected)
        )
        letters = [decode_dead_letter(v) for v in raw_dlq]
        assert sorted(d.raw for d in letters) == sorted(rejected)
        assert all(d.reason and d.detail for d in letters)
        recs = await collect_recommendations(settings, triggering(valid, settings))
        assert {r.event_id for r in recs} == triggering(valid, settings), "processing continued"
        assert worker.alive()
        assert metric(settings.worker.metrics_port, "recloop_worker_dead_letters_total") == len(
            rejected
        )
    finally:
        worker.stop()
    assert "Traceback" not in worker.log(), worker.log()[-3000:]
    json.dumps([d.reason.value for d in letters])
