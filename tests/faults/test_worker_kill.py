"""Fault: the worker SIGKILLed at random points while events keep arriving.

Guarantee (at-least-once): every triggering event produced is answered, by event id, with the
same request id whenever it is answered twice; each user's state in the changelog is as if
every event was applied once. Eight lives, each killed at a random moment (seeded) after its
first answer, under a steady 200 events/s; the events topic has 4 partitions, so each restart
also rebalances. The four fixed kill points of tests/streams/test_worker_e2e.py run in
`make test`; this longer variant runs in `make test-all`.
"""

from __future__ import annotations

import asyncio
import random
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer

from recloop.core.contract import encode
from recloop.core.topics import ensure_topics
from tests.streams.helpers import (
    Worker,
    assert_all_answered,
    assert_states,
    collect_recommendations,
    metric,
    triggering,
    wait_for,
    worker_settings,
)
from tests.support import make_events

pytestmark = [pytest.mark.kafka, pytest.mark.slow, pytest.mark.fault]

LIVES = 8
RATE = 200  # events/s, sent in 20-event chunks every 0.1 s


async def test_worker_sigkill_at_random_points_under_load(kafka, tmp_path: Path) -> None:
    rng = random.Random(20261128)
    settings = worker_settings(
        kafka.bootstrap, tmp_path, "chaos", batch_size=32, commit_interval_seconds=0.5
    )
    await ensure_topics(settings)
    # Seq-major: every user's events stay in order while all users are active at once.
    pool = sorted(make_events(n_users=100, per_user=200, prefix="c"), key=lambda e: e.seq)
    sent: list = []
    stop = asyncio.Event()

    async def load() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, linger_ms=5, acks="all")
        await producer.start()
        try:
            for i in range(0, len(pool), RATE // 10):
                if stop.is_set():
                    break
                chunk = pool[i : i + RATE // 10]
                acks = [
                    await producer.send(settings.topics.events, encode(e), e.user_id.encode())
                    for e in chunk
                ]
                await asyncio.gather(*acks)
                sent.extend(chunk)
                await asyncio.sleep(0.1)
        finally:
            await producer.stop()

    port = settings.worker.metrics_port
    kills: list[str] = []
    loader = asyncio.create_task(load())
    worker: Worker | None = None
    try:
        for life in range(LIVES):
            worker = Worker(settings).start()
            await wait_for(
                lambda: metric(port, "recloop_worker_recommendations_total") >= 1,
                90,
                f"life {life}'s first answer",
            )
            delay = rng.uniform(0.0, 3.0)
            await asyncio.sleep(delay)
            worker.kill()
            kills.append(f"{delay:.2f}s after the first answer, {len(sent)} sent")
        stop.set()
        await loader
        assert len(sent) >= 2000, f"only {len(sent)} events sent under the kills"
        want = triggering(sent, settings)
        worker = Worker(settings).start()
        recs = await collect_recommendations(settings, want, timeout=180)
        assert_all_answered(recs, want, f"kills: {kills}")
        await assert_states(settings, sent, worker)
    finally:
        stop.set()
        await asyncio.gather(loader, return_exceptions=True)
        if worker is not None:
            worker.stop()
