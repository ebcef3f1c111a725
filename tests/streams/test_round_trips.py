"""No per-event Kafka round trip in the worker: records produced per batch, counted on a broker.

Not a timing test. A batch in which each user has several events must produce one changelog
record per user (the batch's last state), not one per event, and exactly one recommendation
per triggering event. A change that writes the table (or sends anything) per event fails here
whatever the machine's speed.
"""

from __future__ import annotations

from pathlib import Path

from recloop.core.topics import ensure_topics
from tests.streams.helpers import (
    Worker,
    changelog_records,
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

USERS = 4
PER_USER = 16


async def test_one_changelog_record_per_user_per_batch(broker, tmp_path: Path) -> None:
    # One batch holds all 64 events (batch_size 64; 5 s is far longer than they take to arrive).
    settings = worker_settings(
        broker.bootstrap,
        tmp_path,
        "trips",
        batch_size=USERS * PER_USER,
        batch_wait_seconds=5.0,
    )
    await ensure_topics(settings)
    worker = Worker(settings).start()
    port = settings.worker.metrics_port
    try:
        await wait_for(
            lambda: metric(port, "recloop_worker_assigned_partitions") > 0, 60, "the worker"
        )
        events = make_events(n_users=USERS, per_user=PER_USER, prefix="rt")
        await produce_events(broker.bootstrap, settings.topics.events, events)
        want = triggering(events, settings)
        recs = await collect_recommendations(settings, want)
        assert {r.event_id for r in recs} == want, worker.log()[-3000:]
        assert not duplicates(recs) and len(recs) == len(want), "one answer per trigger"
        batches = metric(port, "recloop_worker_inference_batch_size_count")
        # Guard: the test means something only if users had several events per batch.
        assert 1 <= batches < PER_USER / 2, f"{batches} batches for {PER_USER} events per user"
        records = len(await changelog_records(settings))
        assert records <= USERS * batches, (
            f"{records} changelog records for {len(events)} events of {USERS} users in "
            f"{batches:.0f} batches: the table is written to Kafka per event, not per batch"
        )
        # ... and the coalesced records hold each user's state after all of its events.
        expected = expected_states(events, settings.worker.history_length)
        await wait_settled(settings)
        actual = await read_changelog(settings)
        assert {u: comparable(s) for u, s in actual.items()} == {
            u: comparable(s) for u, s in expected.items()
        }
    finally:
        worker.stop()
    assert "Traceback" not in worker.log(), worker.log()[-3000:]
