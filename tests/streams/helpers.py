"""Helpers for worker integration tests: settings, expected state, changelog and metrics."""

from __future__ import annotations

import asyncio
import os
import time
import urllib.request
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import ConsumerRecord

from recloop.brokers import free_port
from recloop.core.contract import (
    Recommendation,
    UserEvent,
    decode_event,
    decode_recommendation,
)
from recloop.core.settings import Settings, WorkerConfig
from recloop.streams.state import UserState, apply, decode_state
from tests.support import WorkerProcess, collect, unique_topics


def worker_settings(bootstrap: str, tmp_path: Path, prefix: str, **worker: object) -> Settings:
    """Settings for one test's worker(s): fresh topics, app id, metrics port and data dir."""
    port = free_port()
    defaults: dict[str, object] = {
        "app_id": f"{prefix}-{port}",
        "strategy": "random",
        "model_dir": tmp_path / "no-model",
        "metrics_port": port,
        "data_dir": tmp_path / "worker",
    }
    return Settings(
        bootstrap=bootstrap,
        topics=unique_topics(prefix),
        worker=WorkerConfig(**(defaults | worker)),  # type: ignore[arg-type]
    )


def expected_states(events: Iterable[UserEvent], history_length: int) -> dict[str, UserState]:
    """Each user's state after folding their events in order (what the table must hold)."""
    states: dict[str, UserState] = {}
    for event in events:
        apply(states.setdefault(event.user_id, UserState()), event, history_length)
    return states


def triggering(events: Iterable[UserEvent], settings: Settings) -> set[str]:
    return {e.event_id for e in events if e.event_type.value in settings.worker.trigger_on}


async def collect_recommendations(
    settings: Settings,
    want: set[str],
    timeout: float = 90.0,
    isolation_level: str = "read_uncommitted",
) -> list[Recommendation]:
    """Every recommendation on the topic, once all of `want` are answered (or the timeout);
    `read_committed` sees only what committed transactions wrote."""
    raw = await collect(
        settings.bootstrap,
        settings.topics.recommendations,
        lambda vs: {decode_recommendation(v).event_id for v in vs} >= want,
        timeout=timeout,
    )
    # Records produced just after the last wanted one (duplicates) must be seen too. Read up to
    # the end offsets rather than for a fixed time: a slow machine must not turn an answered
    # event into a "lost" one because the reader gave up first.
    await asyncio.sleep(1.0)
    raw = await read_to_end(settings.bootstrap, settings.topics.recommendations, isolation_level)
    return [decode_recommendation(v) for v in raw]


async def read_to_end(
    bootstrap: str, topic: str, isolation_level: str = "read_uncommitted", timeout: float = 60.0
) -> list[bytes]:
    """Every value in `topic`, from the beginning up to its end offsets when called (the last
    stable offset for `read_committed`)."""
    records = await read_records(bootstrap, topic, isolation_level, timeout)
    return [r.value for r in records if r.value is not None]


async def read_records(
    bootstrap: str, topic: str, isolation_level: str = "read_uncommitted", timeout: float = 60.0
) -> list[ConsumerRecord]:
    """`read_to_end`, as records (with their partition and offset)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, isolation_level=isolation_level
    )
    await consumer.start()
    try:
        parts = [TopicPartition(topic, p) for p in sorted(await _partitions(consumer, topic))]
        consumer.assign(parts)
        await consumer.seek_to_beginning(*parts)
        end = await consumer.end_offsets(parts)
        records: list[ConsumerRecord] = []
        deadline = time.monotonic() + timeout
        while any([await consumer.position(tp) < end[tp] for tp in parts]):
            assert time.monotonic() < deadline, f"could not read {topic} to its end offsets"
            for batch in (await consumer.getmany(timeout_ms=500)).values():
                records.extend(batch)
        return records
    finally:
        await consumer.stop()


async def where_events_are(settings: Settings, event_ids: Iterable[str]) -> str:
    """Partition and offset of each of `event_ids` on the events topic, for a failure message."""
    wanted = set(event_ids)
    found = {}
    for r in await read_records(settings.bootstrap, settings.topics.events):
        event = decode_event(r.value)
        if event.event_id in wanted:
            found[event.event_id] = f"p{r.partition}@{r.offset}"
    return ", ".join(f"{e} {found.get(e, 'not on the topic')}" for e in sorted(wanted))


async def _partitions(consumer: AIOKafkaConsumer, topic: str) -> set[int]:
    deadline = time.monotonic() + 30
    while not (parts := consumer.partitions_for_topic(topic)):
        assert time.monotonic() < deadline, f"no metadata for {topic}"
        await consumer._client.force_metadata_update()  # a topic created moments ago
        await asyncio.sleep(0.1)
    return parts


class CommitWatcher:
    """Reads a consumer group's committed offsets on the events topic (without joining it)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=settings.bootstrap,
            group_id=settings.worker.app_id,
            enable_auto_commit=False,
        )
        self.parts = [
            TopicPartition(settings.topics.events, p) for p in range(settings.topics.partitions)
        ]

    async def __aenter__(self) -> CommitWatcher:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def committed(self) -> dict[int, int]:
        """Committed offset per partition (0 where nothing is committed yet)."""
        return {tp.partition: (await self.consumer.committed(tp)) or 0 for tp in self.parts}

    async def behind(self) -> dict[int, tuple[int, int]]:
        """(committed, end offset) of each partition whose events are not all committed."""
        ends = await self.consumer.end_offsets(self.parts)
        committed = await self.committed()
        return {
            tp.partition: (committed[tp.partition], ends[tp])
            for tp in self.parts
            if committed[tp.partition] < ends[tp]
        }


async def group_lag(settings: Settings) -> int:
    """Events on the events topic that the worker's group has not committed, from the broker."""
    async with CommitWatcher(settings) as watcher:
        return sum(end - committed for committed, end in (await watcher.behind()).values())


async def wait_settled(settings: Settings, timeout: float = 60.0) -> None:
    """Wait until the worker's group has committed every event now on the events topic.

    The worker commits an offset only after that event's changelog record is delivered, so
    this is when the changelog holds every event's state. Events that trigger no answer
    (views at a user's end) give no other sign that they were processed.
    """
    async with CommitWatcher(settings) as watcher:
        deadline = time.monotonic() + timeout
        while behind := await watcher.behind():
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"the worker had not committed every event after {timeout:.0f}s; "
                    f"(committed, end) per partition behind: {behind}"
                )
            await asyncio.sleep(0.25)


def changelog_topic(settings: Settings) -> str:
    """The worker's table changelog topic (Faust names it after the app id and the table)."""
    return f"{settings.worker.app_id}-user-state-changelog"


async def changelog_records(settings: Settings) -> list[tuple[bytes | None, bytes | None]]:
    """Every (key, value) record of the worker's table changelog topic, each partition's
    in offset order."""
    return [
        (r.key, r.value) for r in await read_records(settings.bootstrap, changelog_topic(settings))
    ]


async def read_changelog(settings: Settings) -> dict[str, UserState]:
    """The latest state per user from the worker's table changelog topic."""
    return {
        key.decode(): decode_state(value)
        for key, value in await changelog_records(settings)
        if key is not None and value is not None
    }


def metric(port: int, name: str, label: str = "") -> float:
    """Sum of the samples of `name` (lines containing `label`) from a worker's endpoint."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    total = 0.0
    for line in text.splitlines():
        sample, _, value = line.rpartition(" ")
        if sample.split("{")[0] == name and label in sample:
            total += float(value)
    return total


class Worker(WorkerProcess):
    """A worker subprocess with extra RECLOOP_* variables (settings `settings_env` omits)."""

    def __init__(self, settings: Settings, **env: str) -> None:
        super().__init__(settings)
        self.extra_env = env

    def start(self) -> Worker:
        saved = {k: os.environ.get(k) for k in self.extra_env}
        os.environ.update(self.extra_env)
        try:
            super().start()
        finally:
            for k, v in saved.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
        return self


async def wait_for(check: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `check` (exceptions count as False) until true, else fail naming `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except OSError:
            pass
        await asyncio.sleep(0.25)
    raise AssertionError(f"timed out after {timeout:.0f}s waiting for {what}")


def duplicates(recs: Iterable[Recommendation]) -> dict[str, int]:
    return {k: n for k, n in Counter(r.event_id for r in recs).items() if n > 1}


def comparable(state: UserState) -> tuple[object, ...]:
    """The parts of a state that depend only on the events (not on timing)."""
    return (state.history, state.counts, state.last_seq, state.session_id, state.session_events)


async def assert_states(
    settings: Settings, events: Iterable[UserEvent], worker: WorkerProcess | None = None
) -> None:
    """Every user's state in the changelog is as if each of `events` was applied once
    (read once the worker has committed every event on the topic); a failure carries the
    end of `worker`'s log."""
    try:
        await _assert_states(settings, events)
    except AssertionError as exc:
        if worker is None:
            raise
        raise AssertionError(f"{exc}\nworker log:\n{worker.log()[-3000:]}") from None


async def _assert_states(settings: Settings, events: Iterable[UserEvent]) -> None:
    expected = expected_states(events, settings.worker.history_length)
    await wait_settled(settings)
    actual = await read_changelog(settings)
    missing = set(expected) - set(actual)
    assert not missing, f"users without state in the changelog: {sorted(missing)[:5]}"
    wrong = [u for u in expected if comparable(actual[u]) != comparable(expected[u])]
    if wrong:  # every changelog record of that user, to find out why
        trail = [
            f"p{r.partition}@{r.offset}: seq {decode_state(r.value).last_seq}"
            for r in await read_records(settings.bootstrap, changelog_topic(settings))
            if r.key == wrong[0].encode() and r.value is not None
        ]
        where = await where_events_are(settings, [f"{wrong[0]}-{expected[wrong[0]].last_seq}"])
        raise AssertionError(
            f"{wrong[:3]}: {actual[wrong[0]]} != {expected[wrong[0]]}\n"
            f"its changelog records: {trail}\nits last event: {where}"
        )


def assert_all_answered(recs: Iterable[Recommendation], want: set[str], context: str) -> None:
    """Every event id in `want` answered; an event answered twice kept its request id
    (a redelivery after a crash is answered again, identically)."""
    request_ids: dict[str, set[str]] = {}
    for rec in recs:
        request_ids.setdefault(rec.event_id, set()).add(rec.request_id)
    lost = sorted(want - set(request_ids))
    assert not lost, f"lost {len(lost)} of {len(want)}: {lost[:8]}\n{context}"
    changed = [e for e, ids in request_ids.items() if len(ids) > 1]
    assert not changed, f"answered with different request ids: {changed[:5]}"
