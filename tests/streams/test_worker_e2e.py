"""The worker end to end on both brokers: every strategy through the same path, per-user state
in the changelog, hot reload, SIGKILL recovery, and property-generated malformed input."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from hypothesis import Phase, given
from hypothesis import settings as hypothesis_settings

from recloop.core.contract import decode_dead_letter, encode
from recloop.core.topics import ensure_topics
from recloop.streams.pipeline import Rejected
from tests.streams.helpers import (
    CommitWatcher,
    Worker,
    assert_all_answered,
    assert_states,
    collect_recommendations,
    duplicates,
    metric,
    triggering,
    wait_for,
    where_events_are,
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
        await assert_states(settings, first, worker)
        assert metric(port, "recloop_worker_recommendations_total", f'strategy="{strategy}"') == (
            len(triggering(first, settings))
        )
        # A gauge the lag timer sets every lag_interval_seconds (2 s): wait for its next round.
        await wait_for(
            lambda: (
                metric(port, "recloop_worker_assigned_partitions") == settings.topics.partitions
            ),
            10,
            "the assigned-partitions gauge",
        )
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


KILL_POINTS = ("first answers", "commit", "half the answers", "commit")
"""Where each of the worker's lives ends with SIGKILL: after its first answers, right after a
commit lands, halfway through the answers, and after a commit again (each restart also
redelivers what the previous life had not committed)."""


async def test_sigkill_mid_stream_recovers_state_and_answers_everything(
    broker, tmp_path: Path
) -> None:
    await _sigkill_recovery(broker.bootstrap, tmp_path, "memory")


async def test_sigkill_recovery_with_the_rocksdb_store(kafka, tmp_path: Path) -> None:
    """The same kills and restarts with state in RocksDB (rocksdict): each restarted worker
    reopens its local store and catches up from the changelog. Kafka only: on Tansu the
    restarted worker stops with Faust's ConsistencyError (the offset RocksDB persisted from a
    changelog record's produce response is beyond the changelog's high watermark)."""
    await _sigkill_recovery(kafka.bootstrap, tmp_path, "rocksdb")
    assert any((tmp_path / "worker").rglob("CURRENT")), "no RocksDB files in the data dir"


@pytest.mark.fault
@pytest.mark.slow  # ~70 s: each restart reads the changelog read_committed past aborted txns
async def test_sigkill_under_exactly_once_shows_each_answer_once(kafka, tmp_path: Path) -> None:
    """The same kills under processing_guarantee=exactly_once (Kafka transactions; Tansu has
    none): a read_committed reader sees every triggering event answered exactly once."""
    await _sigkill_recovery(kafka.bootstrap, tmp_path, "memory", "exactly_once")


async def _sigkill_recovery(
    bootstrap: str, tmp_path: Path, store: str, guarantee: str = "at_least_once"
) -> None:
    """SIGKILL the worker at several points of a stream, then check nothing was lost: every
    triggering event answered (same request id if answered twice) and every user's state in
    the changelog counting each event once. Commits every 0.1 s, slow batches (injected delay)
    and a long producer linger keep offset commits racing the answers and state updates, so an
    offset committed before what its event caused is on the broker shows up as a lost answer
    or a wrong state."""
    settings = worker_settings(
        bootstrap,
        tmp_path,
        f"kill-{store}",
        store=store,
        processing_guarantee=guarantee,
        inject_delay_seconds=0.02,
        batch_size=16,
        commit_interval_seconds=0.1,
        # Records wait up to 0.3 s in the producer before they are sent: a commit that does
        # not wait for the broker's acknowledgement would be well ahead of the answers.
        producer_linger_seconds=0.3,
    )
    await ensure_topics(settings)
    port = settings.worker.metrics_port
    per_wave = 4
    events = make_events(n_users=40, per_user=per_wave * len(KILL_POINTS), prefix="k")
    want = triggering(events, settings)
    kills: list[str] = []
    worker: Worker | None = None

    def answered() -> float:  # by the current worker process
        return metric(port, "recloop_worker_recommendations_total")

    try:
        async with CommitWatcher(settings) as watcher:
            for i, point in enumerate(KILL_POINTS):
                wave = [e for e in events if per_wave * i <= e.seq < per_wave * (i + 1)]
                worker = Worker(settings).start()
                before = await watcher.committed()
                await produce_events(bootstrap, settings.topics.events, wave)
                if point == "commit":
                    deadline = time.monotonic() + 60
                    while await watcher.committed() == before:
                        assert time.monotonic() < deadline, f"no commit\n{worker.log()[-3000:]}"
                        await asyncio.sleep(0.01)
                else:
                    n = 5 if point == "first answers" else len(triggering(wave, settings)) // 2
                    try:
                        await wait_for(lambda n=n: answered() >= n, 60, f"{n} answers")
                    except AssertionError as exc:
                        raise AssertionError(f"{exc} ({kills})\n{worker.log()[-3000:]}") from None
                worker.kill()
                kills.append(f"{point}: {await watcher.committed()}")

        worker = Worker(settings).start()
        exactly_once = guarantee == "exactly_once"
        isolation = "read_committed" if exactly_once else "read_uncommitted"
        recs = await collect_recommendations(settings, want, 90, isolation)
        context = f"kills: {kills}\n{worker.log()[-3000:]}"
        if lost := want - {r.event_id for r in recs}:  # where they are, to find out why
            async with CommitWatcher(settings) as watcher:
                context += f"\nlost: {await where_events_are(settings, lost)}"
                context += f"\ncommitted at the end: {await watcher.committed()}"
        assert_all_answered(recs, want, context)
        if exactly_once:
            twice = duplicates(recs)
            assert not twice, f"read_committed saw {len(twice)} answered twice: {kills}"
        # The restarted worker recovered the table: state counts each event exactly once.
        await assert_states(settings, events, worker)
    finally:
        if worker is not None:
            worker.stop()


async def test_a_failed_delivery_is_not_acked(kafka, tmp_path: Path) -> None:
    """The broker refuses the recommendations (larger than the topic's max.message.bytes). A
    handoff to the producer is not a delivery: the worker must stop rather than commit those
    events, so that once the topic is fixed a restarted worker answers every one of them.
    Apache Kafka only (max.message.bytes is set through Kafka's AlterConfigs)."""
    settings = worker_settings(kafka.bootstrap, tmp_path, "refused", commit_interval_seconds=0.1)
    await ensure_topics(settings)
    topic = settings.topics.recommendations
    await _set_topic_config(settings, topic, {"max.message.bytes": "200"})
    events = make_events(n_users=10, per_user=4, prefix="r")
    worker = Worker(settings).start()
    try:
        await produce_events(kafka.bootstrap, settings.topics.events, events)
        with contextlib.suppress(AssertionError):  # judged below, after the answers
            await wait_for(lambda: not worker.alive(), 30, "the worker to stop")
        crashed = not worker.alive()
        worker.kill()
        log = worker.log()
        await _set_topic_config(settings, topic, {"max.message.bytes": "1048588"})
        worker = Worker(settings).start()
        want = triggering(events, settings)
        recs = await collect_recommendations(settings, want, timeout=60)
        lost = sorted(want - {r.event_id for r in recs})
        assert not lost, f"lost {len(lost)}: {lost[:8]}\n{log[-3000:]}"
        assert crashed, f"the worker went on after a refused delivery\n{log[-3000:]}"
    finally:
        worker.stop()


async def _set_topic_config(settings, topic: str, configs: dict[str, str]) -> None:
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.bootstrap)
    await admin.start()
    try:
        await admin.alter_configs([ConfigResource(ConfigResourceType.TOPIC, topic, configs)])
    finally:
        await admin.close()


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
