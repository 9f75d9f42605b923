"""`runstream consume export`: live run state as Prometheus series (group runstream-export).

State lives in memory (`LiveRuns`) and is rendered at scrape time by a custom collector
(`RunCollector.render`, served after the registry by `MetricsEndpoint(extra=…)`); the service's own
health (`ConsumerHealth`) is on the same endpoint.

Restart: the exporter first rebuilds live runs (and runs that ended within the TTL) from
PostgreSQL's `runs`, `run_ranks` and `metric_latest`, read with the read-only role, then consumes
from its group's committed offsets (committed every few seconds). Events between the committed
offset and the snapshot are folded again, which changes nothing: values only move to a newer time
and statuses are last-writer-wins in topic order. A new group (no committed offsets) reads the
retained topic from the beginning once: starting at the end would drop whatever arrives while the
group first forms. Whatever the snapshot missed (events the exporter had committed but persist had
not yet written) is refreshed by the run's next event, at most one heartbeat interval later.

Scaling out: an exporter shows only the runs of the partitions it owns. When a rebalance ends
(the assignment) the runs of partitions it no longer owns leave its state at once, before its next
scrape, and the runs of partitions it gained are loaded from PostgreSQL, so in a group no run is
exported twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Set

from prometheus_client import CollectorRegistry

from runstream._config import DatabaseConfig, ExportConfig, KafkaConfig
from runstream.consumers._collector import RunCollector
from runstream.consumers._database import Database, DatabaseUnavailable
from runstream.consumers._decode import DecodedBatch
from runstream.consumers._health import ConsumerHealth
from runstream.consumers._livestate import LiveRuns
from runstream.consumers._loop import ConsumeLoop, LoopOptions
from runstream.consumers._partitions import partition_of
from runstream.consumers._runtable import recent_runs
from runstream.schemas import default_codec

log = logging.getLogger("runstream.consumers")
_LATEST = (
    "SELECT run_id, name, rank, value, step, time FROM metric_latest WHERE run_id = ANY($1::text[])"
)


class ExportSink:
    """Folds batches into `LiveRuns` (in memory: it cannot be unavailable)."""

    def __init__(self, live: LiveRuns) -> None:
        self._live = live

    async def write(self, batch: DecodedBatch) -> None:
        """Apply the batch's events; dead letters are only counted (persist sends them)."""
        self._live.apply(batch.events, batch.offsets)


class ExportService:
    """The exporter: Kafka → in-memory state → /metrics on the injected `registry`."""

    def __init__(
        self,
        kafka: KafkaConfig,
        database: DatabaseConfig | None,
        *,
        registry: CollectorRegistry,
        config: ExportConfig | None = None,
        options: LoopOptions | None = None,
    ) -> None:
        config = config or ExportConfig()
        self.live = LiveRuns(finished_ttl=config.finished_ttl, idle_ttl=config.idle_ttl)
        self.health = ConsumerHealth(registry)
        self.collector = RunCollector(self.live, ranks_limit=config.ranks_limit)
        self.options = options or LoopOptions.export()
        self._kafka = kafka
        self._database = Database(database, command_timeout=30.0) if database else None
        self._owned: frozenset[int] | None = None

    async def run(self, stop: asyncio.Event) -> None:
        """Rebuild from PostgreSQL, then consume until `stop` is set."""
        await self.rebuild()
        sink = ExportSink(self.live)
        codec = default_codec()
        loop = ConsumeLoop(self._kafka, self.options, sink, self.health, codec, owner=self)
        evictor = asyncio.create_task(self._evict_every(1.0, stop))
        try:
            await loop.run(stop)
        finally:
            evictor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await evictor

    async def partitions_changed(self, owned: Set[int], partition_count: int) -> None:
        """Drop the runs of partitions this exporter lost; load those of partitions it gained."""
        first = self._owned is None
        gained = frozenset(owned) - (self._owned or frozenset())
        self._owned = frozenset(owned)
        gone = self.live.keep_only(lambda run_id: partition_of(run_id, partition_count) in owned)
        if gone:
            log.info("%d runs left with their partitions", len(gone))
        if gained and not first:  # the first assignment follows the start's own rebuild
            await self.rebuild(lambda run_id: partition_of(run_id, partition_count) in gained)

    async def rebuild(self, wanted: Callable[[str], bool] | None = None) -> bool:
        """Load live and recently ended runs (those `wanted`, if given) from PostgreSQL.

        False when it cannot be read.
        """
        if self._database is None:
            return False
        try:
            async with self._database.connection() as conn:
                states = await recent_runs(conn, self.live.finished_ttl.total_seconds())
                if wanted is not None:
                    states = {run_id: s for run_id, s in states.items() if wanted(run_id)}
                latest = await conn.fetch(_LATEST, list(states)) if states else []
        except DatabaseUnavailable as exc:
            log.warning("cannot rebuild from PostgreSQL (%s); starting from the topic", exc)
            return False
        finally:
            await self._database.close()
        self.live.load(states, [tuple(row) for row in latest])
        log.info("rebuilt %d runs from PostgreSQL", len(states))
        return True

    async def _evict_every(self, seconds: float, stop: asyncio.Event) -> None:
        while not stop.is_set():
            await asyncio.sleep(seconds)
            self.live.evict()
