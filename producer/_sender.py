"""One aiokafka producer that (re)connects with backoff, sends frames as record batches per
partition, and bounds every call that can hang by a timeout.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, UnknownTopicOrPartitionError
from aiokafka.partitioner import DefaultPartitioner

from runstream._config import ProducerConfig
from runstream._errors import TransportError
from runstream.producer._problems import ProblemReporter
from runstream.producer._spool import Frame

_BACKOFF_MAX = 5.0
_METADATA_WAIT = 5.0
_PARTITIONER = DefaultPartitioner()


class KafkaSender:
    """An aiokafka producer that (re)connects with backoff; every call bounded by a timeout."""

    def __init__(self, config: ProducerConfig, problems: ProblemReporter) -> None:
        self.config = config
        self.problems = problems
        self._producer: AIOKafkaProducer | None = None
        self._backoff = 0.1
        self._next_try = 0.0
        self._partition_of: dict[bytes, int] = {}

    async def _connected(self) -> AIOKafkaProducer | None:
        if self._producer is not None:
            return self._producer
        if time.monotonic() < self._next_try:
            return None
        producer = AIOKafkaProducer(
            **self.config.kafka.client_options(),
            acks="all",
            enable_idempotence=True,
            compression_type="lz4",
            linger_ms=5,
            max_batch_size=1000 * 1024,
            request_timeout_ms=int(self.config.send_timeout * 1000),
        )
        try:
            await asyncio.wait_for(producer.start(), self.config.send_timeout)
        except (KafkaError, OSError, TimeoutError) as exc:
            await self._discard(producer)
            self._failed(exc, "cannot reach Kafka; events wait in the spool")
            return None
        except asyncio.CancelledError:  # stopped while connecting: leave nothing open
            await self._discard(producer)
            raise
        self._producer = producer
        self._backoff = 0.1
        return producer

    async def ready(self) -> bool:
        """Whether a producer is connected (or could be started now); False while backing off."""
        return await self._connected() is not None

    async def send(self, frames: list[Frame]) -> bool:
        """Send frames in order and wait for every acknowledgement; False means retry later.

        A timed-out or retriable failure keeps the producer (aiokafka reconnects by itself and
        expires what it could not send); only a non-retriable error replaces it.
        """
        producer = await self._connected()
        if producer is None:
            return False
        try:
            async with asyncio.timeout(self.config.send_timeout):
                futures = await self._send_batches(producer, frames)
                await asyncio.wait(futures)  # unlike gather, never cancels aiokafka's futures
            for future in futures:
                future.result()
        except (KafkaError, OSError, TimeoutError) as exc:
            if not getattr(exc, "retriable", True):
                self._producer = None
                await self._discard(producer)
            self._failed(exc, "sending to Kafka failed; events wait in the spool")
            return False
        return True

    async def _partitions(self, producer: AIOKafkaProducer, topic: str) -> list[int]:
        """The topic's partitions (at once when known); a topic the brokers lack is a
        `TransportError` naming it within a few seconds (aiokafka would only wait on it).
        """
        wait = min(self.config.send_timeout, _METADATA_WAIT)
        try:
            known = await asyncio.wait_for(producer.partitions_for(topic), wait)
        except (UnknownTopicOrPartitionError, TimeoutError) as exc:
            servers = self.config.kafka.bootstrap_servers
            raise TransportError(
                f"topic {topic!r} does not exist on {servers} (or no broker there answers for "
                "it): create it (`runstream stack up` does) or fix RUNSTREAM_TOPIC",
                retriable=True,
            ) from exc
        return sorted(known)

    async def _send_batches(
        self, producer: AIOKafkaProducer, frames: list[Frame]
    ) -> list[asyncio.Future[object]]:
        """Frames grouped into record batches per partition (key order kept within a partition)."""
        topic = self.config.kafka.topic
        partitions = await self._partitions(producer, topic)
        by_partition: dict[int, list[Frame]] = {}
        for key, value in frames:
            partition = self._partition_of.get(key)
            if partition is None or partition >= len(partitions):
                partition = _PARTITIONER(key, partitions, partitions)
                self._partition_of[key] = partition
            by_partition.setdefault(partition, []).append((key, value))
        futures = []
        for partition, items in by_partition.items():
            batch = producer.create_batch()
            for key, value in items:
                if batch.append(key=key, value=value, timestamp=None) is None:
                    futures.append(await producer.send_batch(batch, topic, partition=partition))
                    batch = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None) is None:
                        error = TransportError(f"event of {len(value)} bytes", retriable=False)
                        self.problems.report("oversize", error, "event larger than a batch dropped")
            futures.append(await producer.send_batch(batch, topic, partition=partition))
        return futures

    def _failed(self, exc: BaseException, message: str) -> None:
        self.problems.report("kafka", exc, message)
        self._next_try = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, _BACKOFF_MAX)

    async def _discard(self, producer: AIOKafkaProducer) -> None:
        with contextlib.suppress(KafkaError, OSError, TimeoutError):
            await asyncio.wait_for(producer.stop(), 2.0)

    async def stop(self) -> None:
        """Stop the producer within a bounded time."""
        if self._producer is not None:
            await self._discard(self._producer)
            self._producer = None
