"""Kafka plumbing the services share: creating the event, verdict and dead-letter topics where
the broker does not create them by itself, and starting an idempotent producer.
"""

from __future__ import annotations

import asyncio

from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import KafkaError

from runstream._config import KafkaConfig
from runstream._errors import TransportError

_ALREADY_EXISTS = 36


async def start_producer(kafka: KafkaConfig) -> AIOKafkaProducer:
    """A started producer (acks=all, idempotent); stopped again if starting fails."""
    producer = AIOKafkaProducer(acks="all", enable_idempotence=True, **kafka.client_options())
    try:
        await producer.start()
    except BaseException:
        await asyncio.shield(producer.stop())
        raise
    return producer


async def ensure_topics(
    kafka: KafkaConfig,
    *,
    partitions: int = 8,
    replication: int = 1,
    min_insync: int = 1,
    within: float = 30.0,
) -> list[str]:
    """Create `kafka.topic` and `kafka.verdict_topic` (`partitions` each: a run's verdicts go to
    the partition number of its events) and `kafka.dlq_topic` (one partition) where missing, each
    with `replication` replicas of which `min_insync` must acknowledge a write (acks=all).

    Return the names created; existing topics are left as they are.
    """
    admin = AIOKafkaAdminClient(**kafka.client_options())
    configs = {"min.insync.replicas": str(min_insync)}
    wanted = [
        NewTopic(kafka.topic, partitions, replication, topic_configs=configs),
        NewTopic(kafka.verdict_topic, partitions, replication, topic_configs=configs),
        NewTopic(kafka.dlq_topic, 1, replication, topic_configs=configs),
    ]
    try:
        async with asyncio.timeout(within):
            await admin.start()
            response = await admin.create_topics(wanted)
    except (KafkaError, TimeoutError) as exc:
        raise TransportError(f"cannot create topics: {exc!r}", retriable=True) from exc
    finally:
        await admin.close()
    created = []
    for topic, code, *message in response.topic_errors:
        if code == 0:
            created.append(topic)
        elif code != _ALREADY_EXISTS:
            raise TransportError(f"cannot create topic {topic}: {code} {message}", retriable=False)
    return created


async def delete_topics(kafka: KafkaConfig, topics: list[str], *, within: float = 30.0) -> None:
    """Delete `topics` (tests and benchmarks clean up after themselves)."""
    admin = AIOKafkaAdminClient(**kafka.client_options())
    try:
        async with asyncio.timeout(within):
            await admin.start()
            await admin.delete_topics(topics)
    except (KafkaError, TimeoutError) as exc:
        raise TransportError(f"cannot delete topics: {exc!r}", retriable=True) from exc
    finally:
        await admin.close()
