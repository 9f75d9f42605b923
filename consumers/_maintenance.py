"""Keeping metric storage small and bounded: compaction of chunks, retention by whole months.

**Compaction.** Persist writes one chunk per series per batch, so a slowly logging run leaves
chunks of a few values, each paying a row header, array headers and index entries. Compacting a
run merges, per series and producer session, its chunks of fewer than `SMALL_CHUNK` values into
chunks of up to `CHUNK_VALUES` (their arrays joined whole in seq order, by the aggregate
`chunk_concat` of migration 0006, extremes taken from the chunks' own; never across
months, so a merged chunk stays in the month its values expire with), in one
statement. It does not stop persist: a merge deletes and inserts chunks in one transaction, so
persist's identity lookup (one statement) sees the run's values either all before or all after
it, never half-merged, and persist only adds chunks, which a merge never counts on. Compaction
holds the run's row `FOR KEY SHARE` (persist's `FOR NO KEY UPDATE` does not wait for it; deleting
the run does) and a transaction-scoped advisory lock on the run, so two compactions of one run
never overlap (the second skips it). Values are moved, never changed: the `metrics` view reads
the same before and after. Series with a single small chunk are left alone (nothing to merge).

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
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, Counter

from runstream._config import StorageConfig
from runstream._errors import RunstreamError
from runstream.consumers._chunks import CHUNK_VALUES
from runstream.consumers._database import Connection, Database

log = logging.getLogger("runstream.consumers")

SMALL_CHUNK = 100
"""Chunks with fewer values than this are merged by compaction. A chunk of 100 values costs about
as much per value as one of 1,000 (28.5 against 27.7 bytes, measured), while rewriting it costs
the same work again and the vacuum of the rows it replaced: a busy run's persist batches already
make chunks of hundreds, which compaction leaves alone."""
MERGED_SPAN = CHUNK_VALUES - SMALL_CHUNK
"""A merged chunk takes the small chunks (in seq order) whose values before them in the series
fall in one span of this many: each under `SMALL_CHUNK`, so a merged chunk holds under
`MERGED_SPAN + SMALL_CHUNK` = `CHUNK_VALUES` values."""
SERIES_PER_STEP = 200
"""Series merged per transaction: a step of a thousand-rank run stays short."""
UPKEEP_REST = 3.0
"""Persist's upkeep rests three times as long as each compaction step took: at most a quarter of
one PostgreSQL core goes to compaction, so a round never stalls ingest."""

_PARTITION = re.compile(r"metric_chunks_(\d{4})(\d{2})\Z")
_COMPACTION_LOCKS = 0x72756E73  # "runs": the advisory lock space of compactions, one key per run
_LOCK_RUN = (
    "SELECT pg_try_advisory_xact_lock($2, hashtext(run_id)) AS mine "
    "FROM runs WHERE run_id = $1 FOR KEY SHARE"
)
_COMPACT = """
WITH series AS (
    SELECT name, rank, producer_id, date_trunc('month', time_lo, 'UTC') AS month
    FROM metric_chunks WHERE run_id = $1 AND n < $2 GROUP BY 1, 2, 3, 4 HAVING count(*) > 1
    ORDER BY 1, 2, 3, 4 LIMIT $4
), gone AS (
    DELETE FROM metric_chunks c USING series s
    WHERE c.run_id = $1 AND c.n < $2 AND c.name = s.name AND c.rank = s.rank
      AND c.producer_id = s.producer_id AND date_trunc('month', c.time_lo, 'UTC') = s.month
    RETURNING c.*, s.month
), placed AS (
    SELECT g.*, (sum(g.n) OVER (PARTITION BY g.name, g.rank, g.producer_id, g.month
                                ORDER BY g.seq_lo, g.seq_hi ROWS UNBOUNDED PRECEDING) - g.n)
                / $3 AS part
    FROM gone g
), merged AS (
    INSERT INTO metric_chunks
    SELECT run_id, name, rank, producer_id, min(time_lo), min(step_lo), max(step_hi), min(seq_lo),
           max(seq_hi), sum(n), (array_agg(lo ORDER BY lo, lo_step))[1],
           (array_agg(lo_step ORDER BY lo, lo_step))[1],
           (array_agg(hi ORDER BY hi DESC, hi_step DESC))[1],
           (array_agg(hi_step ORDER BY hi DESC, hi_step DESC))[1],
           chunk_concat(steps ORDER BY seq_lo, seq_hi), chunk_concat(times ORDER BY seq_lo, seq_hi),
           chunk_concat(vals ORDER BY seq_lo, seq_hi), chunk_concat(seqs ORDER BY seq_lo, seq_hi),
           chunk_concat(idxs ORDER BY seq_lo, seq_hi)
    FROM placed GROUP BY run_id, name, rank, producer_id, month, part
    RETURNING n
)
SELECT (SELECT count(*) FROM series) AS series, (SELECT count(*) FROM gone) AS merged,
       count(*) AS written, coalesce(sum(n), 0)::bigint AS values
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


async def compact_run(conn: Connection, run_id: str, *, rest: float = 0.0) -> Compacted:
    """Merge the run's small chunks, per series and session, `SERIES_PER_STEP` series per
    transaction, resting `rest` times as long as each step that merged took (nothing when the run
    is gone or another compaction of it is under way).
    """
    merged = written = values = 0
    while True:
        started = time.perf_counter()
        async with conn.transaction():
            if not await conn.fetchval(_LOCK_RUN, run_id, _COMPACTION_LOCKS):
                break
            row = await conn.fetchrow(_COMPACT, run_id, SMALL_CHUNK, MERGED_SPAN, SERIES_PER_STEP)
        assert row is not None
        merged += row["merged"]
        written += row["written"]
        values += row["values"]
        if rest and row["merged"]:
            await asyncio.sleep(rest * (time.perf_counter() - started))
        if row["series"] < SERIES_PER_STEP:
            break
    return Compacted(run_id, merged, written, values)


async def compact_all(conn: Connection) -> list[Compacted]:
    """Compact every run that has small chunks, one after another, without rests."""
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
    (a round holds one pooled connection; persist does not wait for a merge).
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
                started = time.perf_counter()
                try:
                    done = await compact_run(conn, run_id, rest=UPKEEP_REST)
                except BaseException:
                    self._pending.update(runs[index:])
                    raise
                self.compacted.inc(done.merged)
                took = time.perf_counter() - started
                if done.merged:
                    log.info(
                        "compacted %s: %d chunks into %d (%d values) in %.2fs, rests included",
                        run_id, done.merged, done.written, done.values, took,
                    )  # fmt: skip
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
