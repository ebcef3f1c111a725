"""Create RecLoop's topics on a cluster (idempotent)."""

from __future__ import annotations

import contextlib

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError

from streams.config import Settings


async def ensure_topics(settings: Settings, extra: list[str] | None = None) -> None:
    """Create the events, recommendations, dead-letter and control topics if they are missing."""
    t = settings.topics
    names = [t.events, t.recommendations, t.dead_letters, t.control, *(extra or [])]
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
