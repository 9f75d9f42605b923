"""Keeping metric storage small and bounded: compaction of chunks, retention by whole months.

**Compaction.** Persist writes one chunk per series per batch, so a slowly logging run leaves
chunks of a few values, each paying a row header, array headers and index entries. Compacting a
run merges, per series and producer session, its chunks of fewer than `SMALL_CHUNK` values into
chunks of up to `CHUNK_VALUES` (log order kept, extremes recomputed by PostgreSQL; never across
months, so a merged chunk stays in the month its values expire with), in one
statement under the run's row lock, the lock persist takes before it writes: persist's identity
lookups never see a half-merged run. Values are moved, never changed: the `metrics` view reads the
same before and after. Series with a single small chunk are left alone (nothing to merge).

**Retention.** Chunks live in monthly partitions of `time_lo`. With a retention of `keep`, every
month that ended before `now - keep` is dropped whole (`DROP TABLE` of its partition: no row-by-row
delete, no vacuum debt); what each held is counted first. Only metric values are partitioned, so
only they expire: runs, params, tags, texts, tables, files, log records and `metric_latest` stay
until the run is deleted. A value older than the retention that arrives later (a spool synced
months afterwards) creates its month again; the next retention pass drops it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, Counter

from runstream._config import StorageConfig
from runstream._errors import RunstreamError
from runstream.consumers._chunks import CHUNK_VALUES
from runstream.consumers._database import Connection, Database

log = logging.getLogger("runstream.consumers")

SMALL_CHUNK = 500
"""Chunks with fewer values than this are merged by compaction."""

_PARTITION = re.compile(r"metric_chunks_(\d{4})(\d{2})\Z")
_LOCK_RUN = "SELECT 1 FROM runs WHERE run_id = $1 FOR UPDATE"
_COMPACT = """
WITH series AS (
    SELECT name, rank, producer_id, date_trunc('month', time_lo, 'UTC') AS month
    FROM metric_chunks WHERE run_id = $1 AND n < $2 GROUP BY 1, 2, 3, 4 HAVING count(*) > 1
), gone AS (
    DELETE FROM metric_chunks c USING series s
    WHERE c.run_id = $1 AND c.n < $2 AND c.name = s.name AND c.rank = s.rank
      AND c.producer_id = s.producer_id AND date_trunc('month', c.time_lo, 'UTC') = s.month
    RETURNING c.run_id, c.name, c.rank, c.producer_id, s.month,
              c.steps, c.times, c.vals, c.seqs, c.idxs
), numbered AS (
    SELECT g.run_id, g.name, g.rank, g.producer_id, g.month,
           v.step, v.time, v.value, v.seq, v.idx,
           (row_number() OVER (PARTITION BY g.name, g.rank, g.producer_id, g.month
                               ORDER BY v.seq, v.idx) - 1) / $3 AS part
    FROM gone g, unnest(g.steps, g.times, g.vals, g.seqs, g.idxs) AS v(step, time, value, seq, idx)
), merged AS (
    INSERT INTO metric_chunks
    SELECT run_id, name, rank, producer_id, min(time), min(step), max(step), min(seq), max(seq),
           count(*), (min(ARRAY[value, step::float8]))[1], (min(ARRAY[value, step::float8]))[2],
           (max(ARRAY[value, step::float8]))[1], (max(ARRAY[value, step::float8]))[2],
           array_agg(step ORDER BY seq, idx), array_agg(time ORDER BY seq, idx),
           array_agg(value ORDER BY seq, idx), array_agg(seq ORDER BY seq, idx),
           array_agg(idx ORDER BY seq, idx)
    FROM numbered GROUP BY run_id, name, rank, producer_id, month, part
    RETURNING n
)
SELECT (SELECT count(*) FROM gone) AS merged, count(*) AS written,
       coalesce(sum(n), 0)::bigint AS values
FROM merged
"""
_RUNS_WITH_SMALL_CHUNKS = "SELECT DISTINCT run_id FROM metric_chunks WHERE n < $1 ORDER BY 1"
_PARTITIONS = """
SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
WHERE i.inhparent = 'metric_chunks'::regclass ORDER BY 1
"""


@dataclass(frozen=True, slots=True)
class Compacted:
    """What compacting one run did: `merged` chunks became `written` ones holding `values`."""

    run_id: str
    merged: int
    written: int
    values: int


@dataclass(frozen=True, slots=True)
class ExpiredMonth:
    """One monthly partition past retention: its name, first day, and what it holds."""

    partition: str
    month: datetime
    chunks: int
    values: int


async def compact_run(conn: Connection, run_id: str) -> Compacted:
    """Merge the run's small chunks, per series and session, in one transaction."""
    async with conn.transaction():
        await conn.execute(_LOCK_RUN, run_id)
        row = await conn.fetchrow(_COMPACT, run_id, SMALL_CHUNK, CHUNK_VALUES)
    assert row is not None
    return Compacted(run_id, row["merged"], row["written"], row["values"])


async def compact_all(conn: Connection) -> list[Compacted]:
    """Compact every run that has small chunks (one transaction per run)."""
    runs = [r["run_id"] for r in await conn.fetch(_RUNS_WITH_SMALL_CHUNKS, SMALL_CHUNK)]
    return [await compact_run(conn, run_id) for run_id in runs]


def months_before(cutoff: datetime, partitions: Sequence[str]) -> list[tuple[str, datetime]]:
    """The partitions (by name) whose whole month ended at or before `cutoff`, oldest first."""
    expired = []
    for name in partitions:
        match = _PARTITION.match(name)
        if match is None:
            continue
        month = datetime(int(match[1]), int(match[2]), 1, tzinfo=UTC)
        if _next_month(month) <= cutoff:
            expired.append((name, month))
    return sorted(expired, key=lambda found: found[1])


async def expired_months(conn: Connection, keep: timedelta, now: datetime) -> list[ExpiredMonth]:
    """The months of values older than `keep` at `now`, with their chunk and value counts."""
    names = [r["relname"] for r in await conn.fetch(_PARTITIONS)]
    found = []
    for name, month in months_before(now - keep, names):
        row = await conn.fetchrow(
            f'SELECT count(*) AS chunks, coalesce(sum(n), 0)::bigint AS values FROM "{name}"'
        )
        assert row is not None
        found.append(ExpiredMonth(name, month, row["chunks"], row["values"]))
    return found


async def drop_months(conn: Connection, months: Sequence[ExpiredMonth]) -> list[ExpiredMonth]:
    """Drop the partitions of `months` in one transaction; return them counted again inside it."""
    dropped = []
    async with conn.transaction():
        for month in months:
            row = await conn.fetchrow(
                f"SELECT count(*) AS chunks, coalesce(sum(n), 0)::bigint AS values "
                f'FROM "{month.partition}"'
            )
            assert row is not None
            await conn.execute(f'DROP TABLE "{month.partition}"')
            dropped.append(ExpiredMonth(month.partition, month.month, row[0], row[1]))
    return dropped


def _next_month(month: datetime) -> datetime:
    return (month + timedelta(days=32)).replace(day=1)


class Maintenance:
    """Persist's background upkeep: every `config.compact_interval` seconds it compacts the runs
    the service wrote since the last round, and, with a retention, drops the expired months.

    Failures (PostgreSQL away) are logged and retried the next round; writing never waits on it
    (a round holds one pooled connection, and each run's lock only while that run is merged).
    """

    def __init__(
        self, database: Database, config: StorageConfig, registry: CollectorRegistry
    ) -> None:
        self._database = database
        self._config = config
        self._pending: set[str] = set()
        self.compacted = Counter(
            "runstream_persist_compacted_chunks",
            "Small metric chunks merged by compaction",
            registry=registry,
        )
        self.expired = Counter(
            "runstream_persist_expired_values",
            "Metric values dropped by retention (whole monthly partitions)",
            registry=registry,
        )

    def written(self, run_ids: Iterable[str]) -> None:
        """Note runs that got metric values (compacted at the next round)."""
        self._pending.update(run_ids)

    async def run(self, stop: asyncio.Event) -> None:
        """Run rounds until `stop` is set."""
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self._config.compact_interval)
                return
            try:
                await self.round(datetime.now(UTC))
            except RunstreamError as exc:  # PostgreSQL away or refusing: next round
                log.warning("storage upkeep postponed: %s", exc)

    async def round(self, now: datetime) -> None:
        """Compact the runs written since the last round; drop months past retention."""
        runs, self._pending = sorted(self._pending), set()
        async with self._database.connection() as conn:
            for index, run_id in enumerate(runs):
                try:
                    done = await compact_run(conn, run_id)
                except BaseException:
                    self._pending.update(runs[index:])
                    raise
                self.compacted.inc(done.merged)
            if self._config.retention is not None:
                expired = await expired_months(conn, self._config.retention, now)
                for month in await drop_months(conn, expired):
                    self.expired.inc(month.values)
                    log.info(
                        "retention: dropped %s (%d values in %d chunks)",
                        month.partition,
                        month.values,
                        month.chunks,
                    )
