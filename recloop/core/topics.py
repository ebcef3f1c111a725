"""RecLoop's topics on a cluster: which they are, create the missing ones, describe them."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

from recloop.core.errors import InvalidInputError, RunError, kafka_unreachable
from recloop.core.settings import Settings

TOPIC_ROLES = ("events", "recommendations", "dead-letters")
"""The contract's topics by role; the names come from `settings.topics`."""


class TopicError(RunError):
    """A topic cannot be read or created; the message names it and the cause."""


@dataclass(frozen=True)
class TopicInfo:
    """One topic as the cluster sees it (`partitions` and `replication_factor` None if missing)."""

    role: str
    name: str
    exists: bool
    partitions: int | None = None
    replication_factor: int | None = None


def contract_topics(settings: Settings, roles: Iterable[str] | None = None) -> dict[str, str]:
    """Role -> topic name for the contract's topics (all of them, or the `roles` asked for)."""
    t = settings.topics
    by_role = {
        "events": t.events,
        "recommendations": t.recommendations,
        "dead-letters": t.dead_letters,
    }
    wanted = list(roles) if roles else list(TOPIC_ROLES)
    unknown = [r for r in wanted if r not in by_role]
    if unknown:
        raise InvalidInputError(
            f"unknown topic role {unknown[0]!r}; choose from {', '.join(TOPIC_ROLES)}"
        )
    return {role: by_role[role] for role in dict.fromkeys(wanted)}


def create_hint(settings: Settings, role: str, name: str) -> str:
    """The command that creates topic `name` in `role`, for missing-topic messages.

    A name other than the settings' (a scenario's `topics:`, replay's `--topic`) needs the
    variable that makes `recloop topics create` use it.
    """
    if contract_topics(settings, [role])[role] == name:
        return "`recloop topics create` (`recloop worker` also creates missing topics)"
    variable = "RECLOOP_TOPICS__" + role.upper().replace("-", "_")
    return f"`{variable}={name} recloop topics create {role}`"


async def _admin(settings: Settings) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(**settings.kafka_kwargs())
    try:
        await admin.start()
    except KafkaError as exc:
        await admin.close()
        raise TopicError(
            kafka_unreachable(settings.bootstrap, exc, settings.security.protocol)
        ) from None
    return admin


async def _layout(admin: AIOKafkaAdminClient) -> dict[str, tuple[int, int]]:
    """Every topic on the cluster -> (partitions, replication factor).

    Asks for all topics: a metadata request naming a missing topic would create it on brokers
    with auto.create.topics.enable, with the broker's defaults instead of ours.
    """
    layout: dict[str, tuple[int, int]] = {}
    for topic in await admin.describe_topics():
        if topic["error_code"] != 0:
            continue
        parts = topic["partitions"]
        replicas = max((len(p["replicas"]) for p in parts), default=0)
        layout[topic["topic"]] = (len(parts), replicas)
    return layout


async def describe_topics(
    settings: Settings, roles: Iterable[str] | None = None, extra: Sequence[str] = ()
) -> list[TopicInfo]:
    """The contract's topics (and `extra` ones, role ""), each existing or missing."""
    wanted = [*contract_topics(settings, roles).items(), *(("", name) for name in extra)]
    admin = await _admin(settings)
    try:
        layout = await _layout(admin)
    except KafkaError as exc:
        raise TopicError(f"cannot list topics on {settings.bootstrap}: {exc}") from None
    finally:
        await admin.close()
    infos = []
    for role, name in wanted:
        found = layout.get(name)
        infos.append(TopicInfo(role, name, found is not None, *(found or (None, None))))
    return infos


async def missing_topics(settings: Settings, roles: Iterable[str] | None = None) -> list[str]:
    """Names of the contract's topics that do not exist on the cluster."""
    return [info.name for info in await describe_topics(settings, roles) if not info.exists]


async def ensure_topics(
    settings: Settings,
    extra: Sequence[str] | None = None,
    *,
    roles: Iterable[str] | None = None,
    partitions: int | None = None,
    replication_factor: int | None = None,
    timeout: float = 30.0,
) -> list[str]:
    """Create the contract's topics (and `extra` ones) that are missing; return those created.

    Idempotent and safe to race: a topic another process created first counts as there.
    Existing topics are left as they are, whatever their partitions. Returns once the cluster's
    metadata lists every new topic, so a client started next finds them.
    """
    t = settings.topics
    partitions = partitions or t.partitions
    replication_factor = replication_factor or t.replication_factor
    names = list(dict.fromkeys([*contract_topics(settings, roles).values(), *(extra or [])]))
    admin = await _admin(settings)
    try:
        existing = await _layout(admin)
        missing = [name for name in names if name not in existing]
        if not missing:
            return []
        response = await admin.create_topics(
            [NewTopic(name, partitions, replication_factor) for name in missing]
        )
        # create_topics does not raise for a topic it could not create: read each topic's
        # error code (e.g. a replication factor above the number of brokers).
        for name, code, *rest in response.topic_errors:
            error = for_code(code)
            if code == 0 or error is TopicAlreadyExistsError:
                continue
            detail = rest[0] if rest and rest[0] else error.description
            raise TopicError(
                f"cannot create topic {name!r} ({partitions} partitions, replication factor "
                f"{replication_factor}) on {settings.bootstrap}: {error.__name__}: {detail}"
            )
        deadline = time.monotonic() + timeout
        while not set(missing) <= set(await _layout(admin)):
            if time.monotonic() > deadline:
                raise TopicError(
                    f"created {', '.join(missing)} on {settings.bootstrap} but the cluster "
                    f"did not list them within {timeout:.0f} s"
                )
            await asyncio.sleep(0.2)
        return missing
    except KafkaError as exc:
        raise TopicError(f"cannot create topics on {settings.bootstrap}: {exc}") from None
    finally:
        await admin.close()


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
