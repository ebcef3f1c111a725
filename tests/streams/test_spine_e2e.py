"""The spine, end to end on a real broker: producer -> Faust worker (per-user table) -> output.

Runs on the embedded Tansu broker and on real Apache Kafka. Every triggering event must get
its recommendation (matched by event id), per-user state must reflect the events sent, and
malformed messages must land on the dead-letter topic with a reason naming the field.
"""

from __future__ import annotations

import json
import urllib.request

import pytest

from recloop.brokers import free_port
from recloop.core.contract import (
    DeadLetterReason,
    EventType,
    decode_dead_letter,
    decode_recommendation,
    encode,
)
from recloop.core.settings import Settings, WorkerConfig
from recloop.core.topics import ensure_topics
from tests.support import WorkerProcess, collect, make_events, produce, unique_topics

pytestmark = pytest.mark.kafka


def _metric(port: int, name: str, label: str) -> float:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name) and label in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


async def test_events_in_recommendations_out_and_dead_letters(broker, tmp_path) -> None:
    port = free_port()
    settings = Settings(
        bootstrap=broker.bootstrap,
        topics=unique_topics("spine"),
        worker=WorkerConfig(
            app_id=f"spine-{port}",
            strategy="random",
            model_dir=tmp_path / "no-model",
            metrics_port=port,
            data_dir=tmp_path / "worker",
        ),
    )
    await ensure_topics(settings)
    worker = WorkerProcess(settings).start()
    try:
        events = make_events(n_users=20, per_user=6)
        malformed = [
            (b"u-bad1", b"{not json"),
            (b"u-bad2", b'{"event_id":"x","user_id":"u-bad2","event_type":"view","event_time":1,"seq":"one","item_id":"1"}'),
            (b"u-bad3", b'{"event_id":"x","user_id":"u-bad3","event_type":"click","event_time":1,"seq":0}'),
            (b"u-bad4", b'{"user_id":"u-bad4","event_type":"view","event_time":1,"seq":0,"item_id":"1"}'),
            (b"u-bad5", b'{"event_id":"x","user_id":"u-bad5","event_type":"teleport","event_time":1,"seq":0}'),
            (b"u-bad6", b"x" * (settings.max_message_bytes + 1)),
        ]  # fmt: skip
        records = [(e.user_id.encode(), encode(e)) for e in events]
        await produce(broker.bootstrap, settings.topics.events, records + malformed)

        triggers = {e.event_id for e in events if e.event_type.value in settings.worker.trigger_on}
        raw_recs = await collect(
            broker.bootstrap,
            settings.topics.recommendations,
            lambda vs: {decode_recommendation(v).event_id for v in vs} >= triggers,
            timeout=90,
        )
        recs = [decode_recommendation(v) for v in raw_recs]
        answered = {r.event_id for r in recs}
        assert answered >= triggers, (
            f"unanswered: {sorted(triggers - answered)[:5]}\n{worker.log()[-3000:]}"
        )
        assert answered <= triggers, "only triggering events are answered"
        for rec in recs:
            assert rec.strategy == "random"
            # Random draws from items seen so far: only a very first session start may find none.
            assert rec.items or rec.event_id.endswith("-0")
            assert rec.times.consumed and rec.times.inferred and rec.times.emitted
            assert rec.times.event <= rec.times.consumed <= rec.times.inferred <= rec.times.emitted
            # A user's own history is excluded from the slate.
            seen = {e.item_id for e in events if e.user_id == rec.user_id and e.item_id}
            assert len({i.item_id for i in rec.items}) == len(rec.items)
            if rec.event_id.endswith("-5"):
                assert not seen & {i.item_id for i in rec.items}

        raw_dlq = await collect(
            broker.bootstrap, settings.topics.dead_letters, lambda vs: len(vs) >= len(malformed)
        )
        letters = {bytes(d.key or b"").decode(): d for d in map(decode_dead_letter, raw_dlq)}
        assert letters["u-bad1"].reason is DeadLetterReason.DECODE_ERROR
        assert (letters["u-bad2"].reason, letters["u-bad2"].field) == (
            DeadLetterReason.VALIDATION_ERROR,
            "seq",
        )
        assert letters["u-bad3"].field == "item_id"
        assert letters["u-bad4"].field == "event_id"
        assert letters["u-bad5"].field == "event_type"
        assert letters["u-bad6"].reason is DeadLetterReason.OVERSIZED
        assert all(d.raw and d.topic == settings.topics.events for d in letters.values())
        assert letters["u-bad2"].raw == malformed[1][1]

        assert worker.alive(), "no exception may escape the worker"
        assert _metric(port, "recloop_worker_dead_letters_total", 'reason="validation_error"') == 4
        assert _metric(port, "recloop_worker_events_total", 'event_type="click"') == sum(
            e.event_type is EventType.CLICK for e in events
        )
    finally:
        worker.stop()
    assert "Traceback" not in worker.log(), worker.log()[-3000:]
    json.dumps(settings.model_dump(mode="json"))
