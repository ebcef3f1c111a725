"""Capture Kafka topics to a recording, bounded by count, time or offsets.

The consumer is assigned every partition of the topics (no consumer group, nothing
committed), starts at the beginning, the end or given offsets, and stops at whichever bound
comes first: `max_records`, `max_seconds` of wall-clock time, `to_end` (the end offsets as
they were when recording started), or Ctrl-C. The trailer says which.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from aiokafka import AIOKafkaConsumer, TopicPartition

from recloop.core.contract import SCHEMA_VERSION
from recloop.core.errors import RunError, kafka_unreachable
from recloop.core.settings import Settings
from recloop.core.topics import topic_partitions
from recloop.simulator.replay.recording import Header, Record, RecordingWriter, Trailer


class RecordError(RunError):
    """Recording could not start or continue (broker unreachable, unknown topic)."""


@dataclass(frozen=True, slots=True)
class Bounds:
    """When to start and stop. `start` is "earliest", "latest" or per-partition offsets."""

    start: Literal["earliest", "latest"] = "earliest"
    start_offsets: dict[str, dict[int, int]] | None = None
    max_records: int | None = None
    max_seconds: float | None = None
    to_end: bool = True
    """Stop at the end offsets seen when recording started (else keep going until a bound)."""
    idle_seconds: float | None = None
    """Stop after this long without a record (useful when not stopping at the end)."""

    def describe(self) -> dict[str, str]:
        out = {"start": self.start}
        for name in ("max_records", "max_seconds", "idle_seconds"):
            if (value := getattr(self, name)) is not None:
                out[name] = str(value)
        if self.to_end:
            out["to_end"] = "true"
        return out


async def record(
    settings: Settings,
    topics: list[str],
    path: str | Path,
    bounds: Bounds = Bounds(),
    progress: Callable[[int], None] | None = None,
) -> Trailer:
    """Record `topics` to `path`; returns the trailer written."""
    if not topics:
        raise RecordError("name at least one topic to record")
    consumer = AIOKafkaConsumer(
        **settings.kafka_kwargs(),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_bytes=16 * 1024 * 1024,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    try:
        await consumer.start()
    except Exception as exc:
        await consumer.stop()
        raise RecordError(
            kafka_unreachable(settings.bootstrap, exc, settings.security.protocol)
        ) from exc
    header = Header(
        created=time.time(),
        topics=list(topics),
        source=settings.bootstrap,
        bounds=bounds.describe(),
        contract_schema=SCHEMA_VERSION,
    )
    writer = RecordingWriter(path, header)
    stopped_by = "interrupted"
    try:
        tps: list[TopicPartition] = []
        for topic, partitions in (await topic_partitions(settings, topics)).items():
            if not partitions:
                raise RecordError(f"topic {topic!r} does not exist")
            tps.extend(TopicPartition(topic, p) for p in sorted(partitions))
        consumer.assign(tps)
        if bounds.start == "earliest":
            await consumer.seek_to_beginning(*tps)
        else:
            await consumer.seek_to_end(*tps)
        for tp in tps:
            offset = (bounds.start_offsets or {}).get(tp.topic, {}).get(tp.partition)
            if offset is not None:
                consumer.seek(tp, offset)
        end = await consumer.end_offsets(tps) if bounds.to_end else {}
        stopped_by = await _consume(consumer, writer, tps, end, bounds, progress)
    except BaseException:
        writer.close(stopped_by="error")
        raise
    finally:
        await consumer.stop()
    return writer.close(stopped_by=stopped_by)


async def _consume(
    consumer: AIOKafkaConsumer,
    writer: RecordingWriter,
    tps: list[TopicPartition],
    end: dict[TopicPartition, int],
    bounds: Bounds,
    progress: Callable[[int], None] | None,
) -> str:
    started = time.monotonic()
    last_record = started
    settled: set[TopicPartition] = set()
    remaining = {tp for tp in tps if end.get(tp, 1) > 0} if bounds.to_end else set(tps)
    if bounds.to_end:
        remaining = {tp for tp in remaining if await consumer.position(tp) < end[tp]}
    while True:
        if bounds.to_end and not remaining:
            return "end_offsets"
        now = time.monotonic()
        if bounds.max_seconds is not None and now - started >= bounds.max_seconds:
            return "max_seconds"
        if bounds.idle_seconds is not None and now - last_record >= bounds.idle_seconds:
            return "idle"
        batches = await consumer.getmany(timeout_ms=200, max_records=10_000)
        if bounds.to_end:
            for tp in list(remaining):
                # Some brokers (Tansu) answer ListOffsets(latest) with less than the real end;
                # the high watermark of the first fetch is right, so take the larger, once.
                hw = consumer.highwater(tp)
                if hw is not None and tp not in settled:
                    end[tp] = max(end[tp], hw)
                    settled.add(tp)
                if tp in settled and await consumer.position(tp) >= end[tp]:
                    remaining.discard(tp)
        for tp, records in batches.items():
            stop = end.get(tp) if bounds.to_end else None
            for r in records:
                if stop is not None and r.offset >= stop:
                    remaining.discard(tp)
                    break
                writer.write(
                    Record.of(
                        tp.topic,
                        tp.partition,
                        r.offset,
                        r.timestamp,
                        r.key,
                        r.value,
                        [(k, bytes(v)) for k, v in r.headers] if r.headers else None,
                    )
                )
                if bounds.max_records is not None and writer.count >= bounds.max_records:
                    return "max_records"
            if stop is not None and tp in remaining and await consumer.position(tp) >= stop:
                remaining.discard(tp)
            if records:
                last_record = time.monotonic()
        if progress is not None:
            progress(writer.count)
        await asyncio.sleep(0)
