"""`runstream consume watchdog`: marks runs stalled or lost and ranks straggling, via the topic.

Every `interval` seconds it reads the live runs (`runs` through its partial index `runs_live`, and
their `run_ranks` by primary key: never the metrics tables), judges each (`judge`), and produces
its verdicts as `Status(source="watchdog")` and `RankStraggling` events onto the events topic,
keyed by run id, so that persist and export apply them in order with the run's own events and
PostgreSQL and Prometheus agree. Its events carry a producer session of its own (a uuid per process,
seq from 0). A verdict already sent is not repeated for `resend_after` seconds, which gives persist
time to apply it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from runstream._config import DatabaseConfig, KafkaConfig
from runstream._errors import TransportError
from runstream.consumers._database import Database
from runstream.consumers._dlq import Message, ServiceProducer
from runstream.consumers._runtable import live_runs
from runstream.consumers._verdicts import Verdict, WatchPolicy, judge
from runstream.schemas import default_codec

log = logging.getLogger("runstream.consumers")


class WatchdogHealth:
    """Verdicts sent, tick duration, live runs and failures, on an injected registry."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.verdicts = Counter(
            "runstream_watchdog_verdicts",
            "Verdicts sent, by outcome",
            ["outcome"],
            registry=registry,
        )
        self.tick_seconds = Histogram(
            "runstream_watchdog_tick_seconds", "Time to judge every live run", registry=registry
        )
        self.live_runs = Gauge(
            "runstream_watchdog_live_runs", "Runs judged at the last tick", registry=registry
        )
        self.failures = Counter(
            "runstream_watchdog_failures",
            "Ticks that could not read the database or send their verdicts",
            registry=registry,
        )
        self.last_tick = Gauge(
            "runstream_watchdog_last_tick_timestamp_seconds",
            "When the last tick completed (Unix time)",
            registry=registry,
        )


class RunWatchdog:
    """Judges live runs periodically and produces its verdicts as events."""

    def __init__(
        self,
        kafka: KafkaConfig,
        database: DatabaseConfig,
        *,
        registry: CollectorRegistry,
        policy: WatchPolicy | None = None,
        interval: float = 5.0,
        kafka_timeout: float = 30.0,
    ) -> None:
        self.kafka = kafka
        self.policy = policy or WatchPolicy()
        self.interval = interval
        self.resend_after = max(3 * interval, 10.0)
        self.health = WatchdogHealth(registry)
        self._database = Database(database)
        self._producer = ServiceProducer(kafka, timeout=kafka_timeout)
        self._producer_id = str(uuid.uuid4())
        self._seq = 0
        self._sent: dict[tuple[str, int, str], tuple[str, float]] = {}

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every `interval` seconds until `stop` is set."""
        try:
            while not stop.is_set():
                await self._tick_logged()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), self.interval)
        finally:
            await self._close()

    async def _tick_logged(self) -> None:
        started = time.perf_counter()
        try:
            await self.tick()
        except TransportError as exc:
            self.health.failures.inc()
            log.warning("watchdog tick failed (%s); next tick retries", exc)
            return
        self.health.tick_seconds.observe(time.perf_counter() - started)
        self.health.last_tick.set(time.time())

    async def tick(self, now: datetime | None = None) -> list[Verdict]:
        """Judge every live run once; send and return the new verdicts."""
        now = now or datetime.now(UTC)
        async with self._database.connection() as conn:
            runs = await live_runs(conn)
        self.health.live_runs.set(len(runs))
        verdicts = [v for run in runs.values() for v in judge(run, now, self.policy)]
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
        topic = self.kafka.topic
        messages: list[Message] = [
            (topic, self._encode(v), v.run_id.encode(), []) for v in verdicts
        ]
        errors = [e for e in await self._producer.send_all(messages, "verdicts") if e]
        if errors:
            raise TransportError(f"cannot send verdicts: {errors[0]!r}", retriable=True)
        moment = time.monotonic()
        for verdict in verdicts:
            self._sent[verdict.key] = (verdict.outcome, moment)
            self.health.verdicts.labels(verdict.outcome).inc()
            log.info("%s rank %d: %s", verdict.run_id, verdict.rank, verdict.outcome)

    def _encode(self, verdict: Verdict) -> bytes:
        event = {
            "run_id": verdict.run_id,
            "experiment": verdict.experiment,
            "rank": verdict.rank,
            "world_size": verdict.world_size,
            "producer_id": self._producer_id,
            "seq": self._seq,
            "time": time.time_ns() // 1000,
            "body": (verdict.kind, verdict.body),
        }
        self._seq += 1
        return default_codec().encode(event)

    async def _close(self) -> None:
        await self._producer.stop()
        await self._database.close()
