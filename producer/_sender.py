"""One aiokafka producer that (re)connects with backoff, sends frames as record batches per
partition, and bounds every call that can hang by a timeout.

A frame is handed to the producer once. The producer is idempotent: it retries what the broker
did not answer (a paused or unreachable broker) with the same sequence numbers until the broker
takes it, so that the broker keeps one copy. A frame is handed over again only after the producer
gave up on its batch, which it does only for a batch the broker refused; and a producer is
replaced only once nothing it was given is unsettled. So no copy of a frame can reach the topic
after the resend that replaced it (docs/DESIGN.md, "Resends").
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError, KafkaTimeoutError, UnknownTopicOrPartitionError
from aiokafka.partitioner import DefaultPartitioner
from aiokafka.producer.message_accumulator import BatchBuilder

from runstream._config import ProducerConfig
from runstream._errors import TransportError
from runstream.producer._problems import ProblemReporter
from runstream.producer._spool import Frame

_BACKOFF_MAX = 5.0
_METADATA_WAIT = 5.0
_STOP_WAIT = 2.0
_PARTITIONER = DefaultPartitioner()

Numbered = tuple[int, Frame]  # a frame and its place in its shipment


@dataclass(frozen=True, slots=True)
class _Batch:
    """Frames handed to the producer as one record batch, and its acknowledgement."""

    frames: list[Numbered]
    acked: asyncio.Future[object]


class KafkaSender:
    """An aiokafka producer that (re)connects with backoff; every call bounded by a timeout."""

    def __init__(self, config: ProducerConfig, problems: ProblemReporter) -> None:
        self.config = config
        self.problems = problems
        self._producer: AIOKafkaProducer | None = None
        self._unsettled: set[asyncio.Future[object]] = set()  # batches the producer holds
        self._spoiled = False  # the producer gave up on a batch: replace it once all settled
        self._backoff = 0.1
        self._next_try = 0.0
        self._partition_of: dict[bytes, int] = {}
        self._connecting = asyncio.Lock()  # one producer at a time, never two started at once

    async def _connected(self) -> AIOKafkaProducer | None:
        async with self._connecting:  # the courier's loop and its orphans' delivery share it
            return await self._connect()

    async def _connect(self) -> AIOKafkaProducer | None:
        if self._spoiled and not self._unsettled:
            await self._replace()
        if self._producer is not None:
            return None if self._spoiled else self._producer
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

    def shipment(self, frames: list[Frame]) -> Shipment:
        """`frames` on their way: call the shipment's `send()` until it returns True."""
        return Shipment(self, frames)

    async def hand_over(self, frames: list[Numbered], handed: list[_Batch]) -> bool:
        """Give `frames` to the producer as record batches, appending each batch to `handed`
        as soon as the producer has it; False when no producer can take them now.
        """
        producer = await self._connected()
        if producer is None:
            return False
        try:
            await self._send_batches(producer, frames, handed)
        except KafkaError as exc:
            if not exc.retriable and not isinstance(exc, KafkaTimeoutError):
                self._spoiled = True  # closed, or its sender died and failed everything it had
            raise
        return True

    def _track(self, acked: asyncio.Future[object]) -> None:
        self._unsettled.add(acked)
        acked.add_done_callback(self._settled)

    def _settled(self, acked: asyncio.Future[object]) -> None:
        self._unsettled.discard(acked)
        if acked.cancelled() or acked.exception() is not None:
            # An idempotent producer gives up on a batch only when the broker refused it; its
            # sequence numbers then have a gap, and every later batch of that partition would be
            # refused too: a new producer takes over once the old one holds nothing.
            self._spoiled = True

    def failed(self, error: BaseException) -> None:
        """A shipment could not finish now: say why, and back off before the next producer."""
        self._failed(error, "sending to Kafka failed; events wait in the spool")

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
        self, producer: AIOKafkaProducer, frames: list[Numbered], handed: list[_Batch]
    ) -> None:
        """Frames grouped into record batches per partition (key order kept within a partition)."""
        topic = self.config.kafka.topic
        partitions = await self._partitions(producer, topic)
        for partition, items in self._by_partition(frames, partitions).items():
            batch, inside = producer.create_batch(), list[Numbered]()
            for numbered in items:
                if not self._append(batch, numbered):
                    handed.append(await self._send_batch(producer, batch, inside, partition))
                    batch, inside = producer.create_batch(), []
                    if not self._append(batch, numbered):
                        handed.append(self._dropped(numbered))
                        continue
                inside.append(numbered)
            handed.append(await self._send_batch(producer, batch, inside, partition))

    def _dropped(self, numbered: Numbered) -> _Batch:
        """A frame no batch can hold: said and dropped (settled at once)."""
        error = TransportError(f"event of {len(numbered[1][1])} bytes", retriable=False)
        self.problems.report("oversize", error, "event larger than a batch dropped")
        settled: asyncio.Future[object] = asyncio.get_running_loop().create_future()
        settled.set_result(None)
        return _Batch([numbered], settled)

    def _by_partition(
        self, frames: list[Numbered], partitions: list[int]
    ) -> dict[int, list[Numbered]]:
        by_partition: dict[int, list[Numbered]] = {}
        for numbered in frames:
            key = numbered[1][0]
            partition = self._partition_of.get(key)
            if partition is None or partition >= len(partitions):
                partition = _PARTITIONER(key, partitions, partitions)
                self._partition_of[key] = partition
            by_partition.setdefault(partition, []).append(numbered)
        return by_partition

    @staticmethod
    def _append(batch: BatchBuilder, numbered: Numbered) -> bool:
        key, value = numbered[1]
        return batch.append(key=key, value=value, timestamp=None) is not None

    async def _send_batch(
        self,
        producer: AIOKafkaProducer,
        batch: BatchBuilder,
        frames: list[Numbered],
        partition: int,
    ) -> _Batch:
        acked = await producer.send_batch(batch, self.config.kafka.topic, partition=partition)
        self._track(acked)
        return _Batch(frames, acked)

    def _failed(self, exc: BaseException, message: str) -> None:
        self.problems.report("kafka", exc, message)
        self._next_try = time.monotonic() + self._backoff
        self._backoff = min(self._backoff * 2, _BACKOFF_MAX)

    async def _replace(self) -> None:
        """Discard the spoiled producer (it holds nothing unsettled); the next call starts one."""
        producer, self._producer, self._spoiled = self._producer, None, False
        if producer is not None:
            await self._discard(producer)

    async def _discard(self, producer: AIOKafkaProducer) -> None:
        try:
            await asyncio.wait_for(producer.stop(), _STOP_WAIT)
        except (KafkaError, OSError, TimeoutError):
            # A broker that does not answer keeps `stop()` waiting on the batches it holds:
            # close the connections anyway, so that no socket outlives the producer.
            with contextlib.suppress(KafkaError, OSError, TimeoutError):
                await asyncio.wait_for(producer.client.close(), _STOP_WAIT)

    async def stop(self) -> None:
        """Stop the producer within a bounded time. What it still holds stays in the spool (the
        spool is only acknowledged past what Kafka acknowledged), for the next courier.
        """
        if self._producer is not None:
            await self._discard(self._producer)
            self._producer = None


class Shipment:
    """Frames on their way to Kafka, handed to the producer once each; handed over again only
    when the producer gave up on their batch (the broker refused it).
    """

    def __init__(self, sender: KafkaSender, frames: list[Frame]) -> None:
        self._sender = sender
        self._waiting: list[Numbered] = list(enumerate(frames))  # not with a producer now
        self._in_flight: list[_Batch] = []

    async def send(self) -> bool:
        """Hand over what waits and wait (up to the send timeout) for every acknowledgement;
        True once every frame is acknowledged; False means call again later.
        """
        try:
            async with asyncio.timeout(self._sender.config.send_timeout):
                await self._hand_over()
                await self._settle()
        except (KafkaError, OSError, TimeoutError) as exc:
            self._sender.failed(exc)
            return False
        return not self._waiting and not self._in_flight

    async def _hand_over(self) -> None:
        if not self._waiting:
            return
        handed: list[_Batch] = []
        try:
            await self._sender.hand_over(self._waiting, handed)
        finally:  # also when cut short: what the producer took is in flight
            self._in_flight += handed
            taken = {number for batch in handed for number, _ in batch.frames}
            self._waiting = [numbered for numbered in self._waiting if numbered[0] not in taken]

    async def _settle(self) -> None:
        """Wait for every batch in flight; a refused batch's frames wait to be handed over again."""
        if not self._in_flight:
            return
        await asyncio.wait([batch.acked for batch in self._in_flight])  # never cancels them
        refused = [batch for batch in self._in_flight if batch.acked.exception() is not None]
        self._in_flight = []
        for batch in refused:
            self._waiting += batch.frames
        self._waiting.sort(key=lambda numbered: numbered[0])
        for batch in refused:
            error = batch.acked.exception()
            raise error if isinstance(error, Exception) else KafkaError(repr(error))
