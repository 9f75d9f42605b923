"""`runstream consume watchdog`: marks runs stalled or lost and ranks straggling, from the stream.

The watchdog reads the events topic itself, in a group of its own (`runstream-watchdog`), and
folds each run by the rules persist and export use (`WatchedRuns`), on its own clock: an event's
time is when the watchdog received it, and time during which it could not see a partition (broker
unreachable, a backlog) is left out of every silence (`consumers/_sightings.py`). So neither
persist's lag, nor PostgreSQL, nor a trainer's clock can make a verdict; when the pipeline is the
problem, the watchdog says so on /metrics (`runstream_watchdog_blind_partitions`, the
WatchdogBlind alert) and judges nothing it cannot see.

Every `interval` seconds it judges each run of its partitions (`judge`) and produces its verdicts
as `Status(source="watchdog")` and `RankStraggling` events onto the verdict topic (which only the
watchdog may write), keyed by run id, so that a run's verdicts sit on the partition number of its
events. Each carries `judged_through`, the last offset of that events partition the watchdog had
read, by which persist and export order it against the run's own events (`_runstate.py`), so
PostgreSQL and Prometheus agree. Its events carry a producer session of its own (a uuid per
process, seq from 0). Once Kafka acknowledges a verdict, the watchdog applies it to its own state
(it does not read the verdict topic). A verdict already sent is not repeated for `resend_after`
seconds. On start it rebuilds the live runs from PostgreSQL (read-only role) when it can,
then consumes from its group's committed offsets (a new group reads the retained topic).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import replace

from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from runstream._config import DatabaseConfig, KafkaConfig
from runstream._errors import TransportError
from runstream.consumers._database import Database, DatabaseUnavailable
from runstream.consumers._decode import DecodedBatch
from runstream.consumers._dlq import Message, ServiceProducer
from runstream.consumers._health import ConsumerHealth
from runstream.consumers._loop import ConsumeLoop, LoopOptions
from runstream.consumers._runtable import live_runs
from runstream.consumers._sightings import WatchedRuns
from runstream.consumers._verdicts import Verdict, WatchPolicy
from runstream.consumers._watchhealth import StragglerCollector, WatchdogHealth
from runstream.schemas import default_codec, event_record

log = logging.getLogger("runstream.consumers")
Clock = Callable[[], float]


class WatchdogSink:
    """Folds each partition's batch into `WatchedRuns`, stamped on the watchdog's clock."""

    def __init__(self, runs: WatchedRuns, clock: Clock) -> None:
        self._runs = runs
        self._clock = clock

    async def write(self, batch: DecodedBatch) -> None:
        """Apply the batch's events (dead letters are persist's to send)."""
        if batch.sources:
            first = batch.sources[0]
            tp = TopicPartition(first.topic, first.partition)
            self._runs.fold(tp, batch.events, self._clock(), batch.offsets)


class RunWatchdog:
    """Judges the runs it reads from the topic periodically and produces its verdicts as events."""

    def __init__(
        self,
        kafka: KafkaConfig,
        database: DatabaseConfig | None,
        *,
        registry: CollectorRegistry,
        policy: WatchPolicy | None = None,
        interval: float = 5.0,
        kafka_timeout: float = 30.0,
        options: LoopOptions | None = None,
        clock: Clock = time.time,
    ) -> None:
        self.kafka = kafka
        self.policy = policy or WatchPolicy()
        self.interval = interval
        self.resend_after = max(3 * interval, 10.0)
        self.options = options or LoopOptions.watchdog()
        stale_after = max(3 * self.options.poll_seconds, 3.0)  # fetches answer every 0.5 s
        self.runs = WatchedRuns(
            self.policy, stale_after=stale_after, finished_ttl=600.0, straggler_hold=6 * interval
        )
        self.health = WatchdogHealth(registry)
        self.consumer_health = ConsumerHealth(registry)
        registry.register(StragglerCollector(self.runs))
        self.clock = clock
        self._database = Database(database, command_timeout=30.0) if database else None
        self._producer = ServiceProducer(kafka, timeout=kafka_timeout)
        self._producer_id = str(uuid.uuid4())
        self._seq = 0
        self._sent: dict[tuple[str, int, str], tuple[str, float]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Rebuild, then consume and tick every `interval` seconds until `stop` is set."""
        await self.rebuild()
        sink = WatchdogSink(self.runs, self.clock)
        loop = ConsumeLoop(self.kafka, self.options, sink, self.consumer_health, default_codec())
        ticker = asyncio.create_task(self._tick_every(loop, stop))
        try:
            await loop.run(stop)
        finally:
            ticker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await ticker
            await self._close()

    async def rebuild(self) -> bool:
        """Load PostgreSQL's live runs; False when there is no database or it cannot be read."""
        if self._database is None:
            return False
        try:
            async with self._database.connection() as conn:
                states = await live_runs(conn)
        except DatabaseUnavailable as exc:
            log.warning("cannot rebuild from PostgreSQL (%s); starting from the topic", exc)
            return False
        finally:
            await self._database.close()
        self.runs.load(states, self.clock())
        log.info("rebuilt %d live runs from PostgreSQL", len(states))
        return True

    async def _tick_every(self, loop: ConsumeLoop, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.interval)
            if not stop.is_set():
                await self._tick_logged(loop)

    async def _tick_logged(self, loop: ConsumeLoop) -> None:
        started = time.perf_counter()
        try:
            await self.tick(loop)
        except TransportError as exc:
            self.health.failures.inc()
            log.warning("watchdog tick failed (%s); next tick retries", exc)
            return
        self.health.tick_seconds.observe(time.perf_counter() - started)
        self.health.last_tick.set(time.time())

    async def tick(self, loop: ConsumeLoop) -> list[Verdict]:
        """See how far each partition is read, judge every run once; send the new verdicts."""
        progress = await loop.progress()
        now = self.clock()
        self.runs.observe(progress, now, time.time())
        self.runs.place(self.kafka.topic, loop.partition_count())
        self.runs.evict(now)
        verdicts = self.runs.verdicts(now)
        self.health.observe(self.runs)
        fresh = self._not_sent_recently(verdicts)
        await self._send(fresh)
        return fresh

    def _not_sent_recently(self, verdicts: Sequence[Verdict]) -> list[Verdict]:
        moment = time.monotonic()
        fresh = []
        for verdict in verdicts:
            sent = self._sent.get(verdict.key)
            if sent is None or sent[0] != verdict.outcome or moment - sent[1] > self.resend_after:
                fresh.append(verdict)
        return fresh

    async def _send(self, verdicts: Sequence[Verdict]) -> None:
        if not verdicts:
            return
        topic = self.kafka.verdict_topic
        encoded = [self._encode(v) for v in verdicts]
        messages: list[Message] = [
            (topic, data, v.run_id.encode(), []) for v, data in zip(verdicts, encoded, strict=True)
        ]
        errors = [e for e in await self._producer.send_all(messages, "verdicts") if e]
        if errors:
            raise TransportError(f"cannot send verdicts: {errors[0]!r}", retriable=True)
        self.runs.settle(default_codec().decode(data) for data in encoded)
        moment = time.monotonic()
        for verdict in verdicts:
            self._sent[verdict.key] = (verdict.outcome, moment)
            self.health.verdicts.labels(verdict.outcome).inc()
            log.info("%s rank %d: %s", verdict.run_id, verdict.rank, verdict.outcome)

    def _encode(self, verdict: Verdict) -> bytes:
        record = event_record(
            run_id=verdict.run_id,
            experiment=verdict.experiment,
            rank=verdict.rank,
            world_size=verdict.world_size,
            producer_id=self._producer_id,
            seq=self._seq,
            kind=verdict.kind,
            body=replace(verdict.body, judged_through=verdict.judged_through),
            time_us=int(self.clock() * 1_000_000),
        )
        self._seq += 1
        return default_codec().encode_record(record)

    async def _close(self) -> None:
        await self._producer.stop()
