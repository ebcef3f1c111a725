"""Create RecLoop's topics on a cluster (idempotent)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Iterable

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError

from recloop.core.errors import RunError
from recloop.core.settings import Settings


async def ensure_topics(settings: Settings, extra: list[str] | None = None) -> None:
    """Create the events, recommendations and dead-letter topics if they are missing."""
    t = settings.topics
    names = [t.events, t.recommendations, t.dead_letters, *(extra or [])]
    admin = AIOKafkaAdminClient(**settings.kafka_kwargs())
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [
            NewTopic(name, num_partitions=t.partitions, replication_factor=t.replication_factor)
            for name in dict.fromkeys(names)
            if name not in existing
        ]
        if missing:
            # Another process may win the race; the topic is there, which is all we need.
            with contextlib.suppress(TopicAlreadyExistsError):
                await admin.create_topics(missing)
    finally:
        await admin.close()


class TopicError(RunError):
    """A topic cannot be read or created; the message names it and the cause."""


async def assign_at_end(
    consumer: AIOKafkaConsumer, producer: AIOKafkaProducer, topic: str, timeout: float = 30.0
) -> list[TopicPartition]:
    """Assign every partition of `topic` and resolve the end offsets, so nothing is missed.

    Retried: right after a topic is created, Kafka may not have elected its leaders yet.
    """
    deadline = time.monotonic() + timeout
    while True:
        try:
            # The producer's lookup waits for the topic's metadata (the consumer's does not).
            ids = await producer.partitions_for(topic)
            if not ids:
                raise KafkaError(f"no partitions known for {topic!r} yet")
            parts = [TopicPartition(topic, p) for p in sorted(ids)]
            consumer.assign(parts)
            await consumer.seek_to_end(*parts)
            for tp in parts:
                await consumer.position(tp)
            return parts
        except KafkaError as exc:
            if time.monotonic() > deadline:
                raise TopicError(f"cannot read {topic!r}: {exc!r}") from None
            await asyncio.sleep(0.5)


async def topic_partitions(settings: Settings, topics: Iterable[str]) -> dict[str, set[int]]:
    """Partition ids of each of `topics` (an empty set for a missing topic), in one request.

    Asks for the metadata of all topics, so a missing topic is not auto-created.
    """
    client = AIOKafkaClient(**settings.kafka_kwargs())
    try:
        await client.bootstrap()
        cluster = await client.fetch_all_metadata()
    finally:
        await client.close()
    return {topic: set(cluster.partitions_for_topic(topic) or ()) for topic in topics}
