"""`ConsumeLoop`: the consume → write → commit cycle that persist and export share.

- A consumer group with auto-commit off, on the events topic and (persist, export) the verdict
  topic. Both have as many partitions and are keyed by run id, and the group assigns by range, so
  partition p of both goes to the same consumer: a run's verdicts reach the consumer of its
  events. `getmany` returns records per partition; each partition's records are decoded into one
  `DecodedBatch` (with the offset of each event) and handed to the sink (persist: one
  transaction).
- Offsets are committed only after the sink returned, and only for partitions still assigned; on a
  revocation the listener commits what was already written for the partitions leaving. An `owner`
  (the exporter) is told the partitions it has after every assignment. (aiokafka's rebalances are
  eager: every partition is revoked, then the new set assigned, so telling it at the revocation
  would empty its state at each rebalance; the assignment ends the rebalance.) Commits
  come at most every `commit_interval` (a commit is a broker round trip the next batch would wait
  for; what a crash leaves uncommitted is written again, and the sinks are idempotent).
- A sink that raises a retriable `TransportError` (database down, restarting) pauses every
  partition; the loop keeps polling (so the group keeps it as a member) and retries the same batch
  with exponential backoff, commits nothing meanwhile, and resumes by itself.
- What retrying cannot fix ends the loop with a `ServiceMisconfigured` naming the setting: Kafka
  refusing the login or a right, a topic the brokers do not have (see `_failfast`).
- Every aiokafka call that can hang runs under a timeout. On stop, the current batch finishes (the
  service cancels it past its deadline), written offsets are committed and the group is left.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import CommitFailedError, KafkaConnectionError, KafkaError

from runstream._config import EXPORT_GROUP, PERSIST_GROUP, WATCHDOG_GROUP, KafkaConfig
from runstream._errors import TransportError
from runstream.consumers._decode import DecodedBatch, decode_batch
from runstream.consumers._failfast import check_topic, explain_bootstrap_failure, refused_right
from runstream.consumers._health import ConsumerHealth
from runstream.consumers._partitions import PartitionOwner
from runstream.schemas import EventCodec

log = logging.getLogger("runstream.consumers")
T = TypeVar("T")


class BatchSink(Protocol):
    """Where decoded batches go. Raise a retriable `TransportError` to pause and retry."""

    async def write(self, batch: DecodedBatch) -> None:
        """Write one partition's batch (events and dead letters) before its offsets commit."""


@dataclass(frozen=True, slots=True)
class LoopOptions:
    """How a service consumes: its group, batch size, timeouts and commit cadence."""

    group_id: str
    max_records: int = 5000
    poll_seconds: float = 0.5
    kafka_timeout: float = 30.0
    backoff_initial: float = 0.5
    backoff_max: float = 10.0
    commit_interval: float = 1.0
    client_id: str = "runstream"
    auto_offset_reset: str = "earliest"
    verdicts: bool = False
    """Consume the verdict topic too (persist and export; the watchdog keeps its own)."""

    @classmethod
    def persist(cls, group_id: str = PERSIST_GROUP) -> LoopOptions:
        """The persist service's: offsets committed at most every second."""
        return cls(group_id=group_id, client_id="runstream-persist", verdicts=True)

    @classmethod
    def export(cls, group_id: str = EXPORT_GROUP) -> LoopOptions:
        """The export service's: it rebuilds from PostgreSQL on start, so it commits rarely."""
        return cls(
            group_id=group_id, client_id="runstream-export", commit_interval=5.0, verdicts=True
        )

    @classmethod
    def watchdog(cls, group_id: str = WATCHDOG_GROUP) -> LoopOptions:
        """The watchdog's: it rebuilds from PostgreSQL on start too, so it commits rarely."""
        return cls(group_id=group_id, client_id="runstream-watchdog", commit_interval=5.0)


@dataclass(frozen=True, slots=True)
class FetchProgress:
    """How far one assigned partition is read: what the broker last said, and where the loop is."""

    fetched_at: float | None  # when the client last had a fetch response for it (Unix seconds)
    highwater: int | None  # the partition's end offset in that response
    position: int | None  # the next offset the loop delivers


class _Assignment(ConsumerRebalanceListener):  # type: ignore[misc]
    """Keeps the loop's view of its partitions in step with the group's rebalances."""

    def __init__(self, loop: ConsumeLoop) -> None:
        self._loop = loop

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self._loop.partitions_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self._loop.partitions_assigned(set(assigned))


class ConsumeLoop:
    """Consumes one topic in a group, feeds a `BatchSink` and commits what it wrote."""

    def __init__(
        self,
        kafka: KafkaConfig,
        options: LoopOptions,
        sink: BatchSink,
        health: ConsumerHealth,
        codec: EventCodec,
        owner: PartitionOwner | None = None,
    ) -> None:
        self.kafka = kafka
        self._owner = owner
        self.options = options
        self._sink = sink
        self._health = health
        self._codec = codec
        self._consumer: Any = None
        self._assigned: set[TopicPartition] = set()
        self._pending: dict[TopicPartition, int] = {}
        self._next_offset: dict[TopicPartition, int] = {}
        self._paused = False
        self._last_commit = time.monotonic()

    async def _timed(self, call: Awaitable[T], what: str) -> T:
        try:
            return await asyncio.wait_for(call, self.options.kafka_timeout)
        except TimeoutError as exc:
            raise TransportError(f"Kafka {what} timed out", retriable=True) from exc

    # -- lifecycle -----------------------------------------------------------------------------

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until `stop` is set; then commit what was written and leave the group."""
        if not await self._start(stop):
            return
        try:
            while not stop.is_set():
                records = await self._poll_or_wait(stop)
                await self._handle(records, stop)
                if time.monotonic() - self._last_commit >= self.options.commit_interval:
                    await self._commit()
        finally:
            await self._close()

    async def _start(self, stop: asyncio.Event) -> bool:
        """Join the group, retrying while Kafka cannot be reached; False if stopped first."""
        delay = self.options.backoff_initial
        while not stop.is_set():
            try:
                await self._connect()
            except (KafkaError, TransportError) as exc:
                await self._raise_if_fatal(exc)
                log.warning("Kafka unavailable (%s); retrying in %.1fs", exc, delay)
                await _sleep_unless(stop, delay)
                delay = min(delay * 2, self.options.backoff_max)
            else:
                return True
        return False

    async def _connect(self) -> None:
        self._consumer = AIOKafkaConsumer(
            group_id=self.options.group_id,
            client_id=self.options.client_id,
            enable_auto_commit=False,
            auto_offset_reset=self.options.auto_offset_reset,
            max_poll_records=self.options.max_records,
            partition_assignment_strategy=(RangePartitionAssignor,),
            **self.kafka.client_options(),
        )
        try:
            await self._timed(self._consumer.start(), "consumer start")
            await check_topic(self._consumer, self.kafka)  # before subscribing, which would wait
            if self.options.verdicts:
                await check_topic(self._consumer, self.kafka, verdicts=True)
            self._consumer.subscribe(self.topics, listener=_Assignment(self))
        except BaseException:
            await asyncio.shield(self._consumer.stop())
            raise

    @property
    def topics(self) -> list[str]:
        """The topics this loop consumes."""
        return [self.kafka.topic] + ([self.kafka.verdict_topic] if self.options.verdicts else [])

    async def _raise_if_fatal(self, exc: BaseException) -> None:
        """Raise `ServiceMisconfigured` if `exc` is a refused login or right (retrying is vain)."""
        fatal = refused_right(self.kafka, exc, self.options.group_id)
        if fatal is None and isinstance(exc, KafkaConnectionError):
            fatal = await explain_bootstrap_failure(self.kafka)
        if fatal is not None:
            raise fatal from exc

    async def _close(self) -> None:
        try:
            await self._commit()
        finally:
            try:
                await self._timed(self._consumer.stop(), "consumer stop")
            except (TransportError, KafkaError) as exc:
                log.warning("leaving the consumer group failed: %s", exc)

    # -- rebalances ----------------------------------------------------------------------------

    async def partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        """Commit what was written for the partitions leaving, then forget them."""
        await self._commit(only=revoked)
        self._assigned -= revoked
        for tp in revoked:
            self._pending.pop(tp, None)
            self._next_offset.pop(tp, None)
            self._health.forget_partition(tp.topic, tp.partition)

    async def partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        """Take new partitions (paused too while the sink is away)."""
        self._assigned = set(assigned)
        if self._paused and assigned:
            self._consumer.pause(*assigned)
        await self._tell_owner()

    async def _tell_owner(self) -> None:
        """Give the owner the partition numbers of the topic this consumer has now."""
        count = len(self._consumer.partitions_for_topic(self.kafka.topic) or ())
        if self._owner is not None and count:
            owned = {tp.partition for tp in self._assigned if tp.topic == self.kafka.topic}
            await self._owner.partitions_changed(owned, count)

    # -- one round -----------------------------------------------------------------------------

    async def _poll(self, seconds: float) -> dict[TopicPartition, list[Any]]:
        timeout_ms = int(seconds * 1000)
        records: dict[TopicPartition, list[Any]] = await self._timed(
            self._consumer.getmany(timeout_ms=timeout_ms), "poll"
        )
        return records

    async def _poll_or_wait(self, stop: asyncio.Event) -> dict[TopicPartition, list[Any]]:
        """Poll; on a retriable Kafka error, log it and give the broker a moment."""
        try:
            return await self._poll(self.options.poll_seconds)
        except (KafkaError, TransportError) as exc:
            await self._raise_if_fatal(exc)
            if not getattr(exc, "retriable", False):
                raise
            log.warning("Kafka poll failed (%s); retrying", exc)
            await _sleep_unless(stop, self.options.backoff_initial)
            return {}

    async def _handle(self, records: dict[TopicPartition, list[Any]], stop: asyncio.Event) -> None:
        for tp, batch_records in records.items():
            if tp not in self._assigned or not batch_records:
                continue
            batch = decode_batch(self._codec, batch_records, verdict_topic=self.kafka.verdict_topic)
            if not await self._deliver(tp, batch, stop):
                if stop.is_set():
                    return
                continue  # the partition moved to another consumer while we waited
            self._health.consumed(batch.kinds)
            self._health.dead(d.reason for d in batch.dead)
            if tp in self._assigned:  # else revoked while writing: the new owner replays it
                self._pending[tp] = self._next_offset[tp] = batch.last_offset + 1
                self._observe_lag(tp)
        self._resume()

    async def _deliver(self, tp: TopicPartition, batch: DecodedBatch, stop: asyncio.Event) -> bool:
        """Write `batch`, pausing and retrying while the sink is unavailable; False if abandoned."""
        delay = self.options.backoff_initial
        while True:
            started = time.perf_counter()
            try:
                await self._sink.write(batch)
            except TransportError as exc:
                if not exc.retriable:
                    raise
                self._health.database_errors.inc()
                log.warning("sink unavailable (%s); retrying in %.1fs", exc, delay)
                if not await self._wait_paused(delay, stop) or tp not in self._assigned:
                    return False
                delay = min(delay * 2, self.options.backoff_max)
                continue
            self._health.batch_seconds.observe(time.perf_counter() - started)
            return True

    async def _wait_paused(self, seconds: float, stop: asyncio.Event) -> bool:
        """Stay in the group without taking records for `seconds`; False when told to stop."""
        if not self._paused:
            self._paused = True
            self._health.paused.set(1)
            self._consumer.pause(*self._assigned)
        deadline = time.monotonic() + seconds
        while not stop.is_set() and time.monotonic() < deadline:
            left = max(0.0, min(deadline - time.monotonic(), self.options.poll_seconds))
            self._rewind(await self._poll(left))
        return not stop.is_set()

    def _rewind(self, records: dict[TopicPartition, list[Any]]) -> None:
        """Put back records fetched while paused (partitions assigned meanwhile)."""
        for tp, batch_records in records.items():
            if batch_records and tp in self._consumer.assignment():
                self._consumer.seek(tp, batch_records[0].offset)
                self._consumer.pause(tp)

    def _resume(self) -> None:
        if self._paused:
            self._paused = False
            self._health.paused.set(0)
            self._consumer.resume(*self._consumer.assignment())

    def _observe_lag(self, tp: TopicPartition) -> None:
        highwater = self._consumer.highwater(tp)
        if highwater is not None:
            lag = max(0, highwater - self._next_offset[tp])
            self._health.lag.labels(tp.topic, str(tp.partition)).set(lag)

    async def progress(self) -> dict[TopicPartition, FetchProgress]:
        """Every assigned partition's `FetchProgress` (none before the group is joined)."""
        consumer, found = self._consumer, dict[TopicPartition, FetchProgress]()
        if consumer is None:
            return found
        for tp in sorted(self._assigned & consumer.assignment()):
            fetched_ms = consumer.last_poll_timestamp(tp)
            if fetched_ms is None:
                found[tp] = FetchProgress(None, None, None)
                continue
            position = self._next_offset.get(tp)
            if position is None:
                position = await self._timed(consumer.position(tp), "position")
            found[tp] = FetchProgress(fetched_ms / 1000, consumer.highwater(tp), position)
        return found

    def partition_count(self) -> int | None:
        """How many partitions the topic has, by the client's metadata (None before it knows)."""
        if self._consumer is None:
            return None
        partitions = self._consumer.partitions_for_topic(self.kafka.topic)
        return len(partitions) if partitions else None

    # -- commits -------------------------------------------------------------------------------

    async def _commit(self, only: set[TopicPartition] | None = None) -> None:
        """Commit written offsets of partitions still assigned (errors: the next commit retries)."""
        self._last_commit = time.monotonic()
        offsets = {
            tp: offset
            for tp, offset in self._pending.items()
            if tp in self._assigned and (only is None or tp in only)
        }
        if not offsets or self._consumer is None:
            return
        try:
            await self._timed(self._consumer.commit(offsets), "commit")
        except CommitFailedError as exc:
            log.warning("commit refused after a rebalance (the new owner replays): %s", exc)
            return
        except (KafkaError, TransportError) as exc:
            log.warning("commit failed, will retry with the next one: %s", exc)
            return
        for tp, offset in offsets.items():
            if self._pending.get(tp) == offset:
                del self._pending[tp]
        self._health.committed()


async def _sleep_unless(stop: asyncio.Event, seconds: float) -> None:
    """Sleep `seconds`, waking early when `stop` is set."""
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
