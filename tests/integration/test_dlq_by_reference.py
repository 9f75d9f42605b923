"""A record too large for the dead-letter topic is dead-lettered by reference, and the events
after it on its partition are stored: no partition stalls on one record."""

from __future__ import annotations

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from runstream.consumers._dlq import REFERENCE_BYTES
from tests.harness import EventFactory, Harness, read_topic, wait_until

_DLQ_LIMIT = 200_000
_SIZE = 600_000


async def limit_dlq(harness: Harness, max_bytes: int) -> None:
    """Make the harness's dead-letter topic refuse records larger than `max_bytes`."""
    admin = AIOKafkaAdminClient(**harness.kafka.client_options())
    await admin.start()
    try:
        resource = ConfigResource(
            ConfigResourceType.TOPIC,
            harness.kafka.dlq_topic,
            configs={"max.message.bytes": str(max_bytes)},
        )
        await admin.alter_configs([resource])
    finally:
        await admin.close()


async def produce_compressed(harness: Harness, messages: list[tuple[bytes, bytes]]) -> None:
    """What a producer with compression can put on the events topic: a batch far smaller than
    its largest record."""
    producer = AIOKafkaProducer(
        acks="all",
        compression_type="gzip",
        max_request_size=2_000_000,
        **harness.kafka.client_options(),
    )
    await producer.start()
    try:
        for key, value in messages:
            await (await producer.send(harness.kafka.topic, value, key=key))
    finally:
        await producer.stop()


async def committed(harness: Harness, partition: int) -> int:
    """The offset persist's group has committed on `partition` of the events topic (-1: none)."""
    group = harness.env()["RUNSTREAM_PERSIST_GROUP"]
    consumer = AIOKafkaConsumer(group_id=group, **harness.kafka.client_options())
    await consumer.start()
    try:
        offset = await consumer.committed(TopicPartition(harness.kafka.topic, partition))
    finally:
        await consumer.stop()
    return -1 if offset is None else int(offset)


async def test_a_dead_letter_too_large_for_the_dlq_goes_by_reference(harness: Harness) -> None:
    await limit_dlq(harness, _DLQ_LIMIT)
    run = EventFactory(f"byref-{harness.suffix}")
    huge = b"\x00\x01" + b"A" * (_SIZE - 2)  # wrong magic: a dead letter, and compressible
    after = run.metrics(1, {"loss": 0.5})
    await produce_compressed(
        harness, [(run.key, run.run_started()), (run.key, huge), (run.key, after)]
    )
    harness.service("persist").start()

    stored = await harness.wait_for_rows("SELECT count(*) FROM metrics", 1, within=60)
    assert stored == 1, "the event after the oversized record was never stored"
    (letter,) = await read_topic(harness.kafka, harness.kafka.dlq_topic, count=1, within=30)
    headers = {name: value.decode() for name, value in letter.headers}
    assert headers["by_reference"] == "true"
    assert headers["source_size"] == str(_SIZE)
    assert headers["source_topic"] == harness.kafka.topic
    assert headers["source_offset"] == "1"
    assert headers["reason"]
    assert letter.value == huge[:REFERENCE_BYTES]
    partition = int(headers["source_partition"])
    assert await wait_until(lambda: _at(harness, partition, 3), within=30), "the partition stalled"


async def _at(harness: Harness, partition: int, offset: int) -> bool:
    return await committed(harness, partition) == offset
