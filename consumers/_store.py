"""`EventStore`: writes one batch of decoded events to PostgreSQL in one transaction.

Every round trip counts (on a busy machine each one waits for the scheduler twice), so a batch of
metrics is five: BEGIN; lock and read its runs with their ranks; COPY the values; one statement
that upserts `metric_latest`, the runs, their ranks and experiments; COMMIT.

Metric values, nearly all of the rows, take a fast path: the COPY goes straight into `metrics` and
`metric_latest` is summarized in Python (`_latest`). The primary key holds the event
identity, so a batch that was partly stored before (a redelivery after a crash or a rebalance)
makes that COPY fail on a duplicate; the transaction is then rolled back and the batch written
again on the exact path, which also serves every other history table: a COPY into the session-local
staging table (`stage_*`, emptied at every commit) and one `INSERT … SELECT … ON CONFLICT DO
NOTHING`. There `metric_latest` is updated from the rows the insert actually returned, so a replay
never counts a value twice. Runs touched by the batch are locked, folded (`RunState.apply`) and
written back in the same transaction.

The window over the inserted rows is ordered like the `DISTINCT ON` that picks the newest value of
each (run, metric, rank), so PostgreSQL sorts the batch once.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from runstream.consumers._database import Connection
from runstream.consumers._latest import LATEST_COLUMNS, MERGE_LATEST, summarize, upsert_latest
from runstream.consumers._rows import COLUMNS, HistoryRows, Row, as_arrays
from runstream.consumers._runstate import RunState, with_offsets
from runstream.consumers._runtable import (
    RUN_COLUMNS,
    claim_runs,
    insert_experiments,
    lock_runs,
    run_arrays,
    upsert_ranks,
    upsert_runs,
)
from runstream.schemas import EventRecord

STAGING_TABLES = tuple(COLUMNS)
_RUNS_FROM = 1 + len(LATEST_COLUMNS)
_RANKS_FROM = _RUNS_FROM + len(RUN_COLUMNS)
WRITE_BACK = (
    f"WITH latest AS ({upsert_latest(1)}), "
    f"written_runs AS ({upsert_runs(_RUNS_FROM)}), "
    f"written_ranks AS ({upsert_ranks(_RANKS_FROM)}) "
    + insert_experiments(_RUNS_FROM + RUN_COLUMNS.index("experiment"))
)

_NEWEST_INSERTED = """
WITH inserted AS (
    INSERT INTO metrics (run_id, name, step, rank, time, value, producer_id, seq, idx)
    SELECT run_id, name, step, rank, time, value, producer_id, seq, idx FROM stage_metrics
    ON CONFLICT DO NOTHING
    RETURNING run_id, name, rank, step, time, value, seq, idx
), newest AS (
    SELECT DISTINCT ON (run_id, name, rank) run_id, name, rank, step, time, value,
           count(*) OVER w AS n, min(value) OVER w AS lo, max(value) OVER w AS hi
    FROM inserted
    WINDOW w AS (PARTITION BY run_id, name, rank ORDER BY time DESC, seq DESC, idx DESC
                 ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING)
    ORDER BY run_id, name, rank, time DESC, seq DESC, idx DESC
)
INSERT INTO metric_latest AS m (run_id, name, rank, step, time, value, count, min, max)
SELECT run_id, name, rank, step, time, value, n, lo, hi FROM newest
"""
_INSERT_METRICS = _NEWEST_INSERTED + MERGE_LATEST


def _insert(table: str) -> str:
    columns = ", ".join(COLUMNS[table])
    return (
        f"INSERT INTO {table} ({columns}) SELECT {columns} FROM stage_{table} "
        "ON CONFLICT DO NOTHING"
    )


_INSERTS = {table: _insert(table) for table in COLUMNS} | {"metrics": _INSERT_METRICS}


async def create_staging_tables(conn: asyncpg.Connection[asyncpg.Record]) -> None:
    """Create this session's staging tables (asyncpg pool `init`): empty after every commit."""
    for table in STAGING_TABLES:
        await conn.execute(
            f"CREATE TEMP TABLE IF NOT EXISTS stage_{table} (LIKE {table} INCLUDING DEFAULTS) "
            "ON COMMIT DELETE ROWS"
        )


def fold_runs(
    known: dict[str, RunState], events: Sequence[EventRecord], offsets: Sequence[int] | None = None
) -> dict[str, RunState]:
    """Apply `events` (topic order, at `offsets` when known) to the runs they belong to; unknown
    runs are created.
    """
    touched: dict[str, RunState] = {}
    for event, offset in with_offsets(events, offsets):
        run_id = event.run_id
        run = touched.get(run_id) or known.get(run_id) or RunState.first_seen(event)
        touched[run_id] = run
        run.apply(event, offset)
    return touched


class _AlreadyStored(Exception):
    """Some metric rows of the batch are in PostgreSQL already: write it on the exact path."""


async def copy_new_metrics(conn: Connection, rows: list[Row]) -> None:
    """COPY `rows` into `metrics` (every one must be new)."""
    try:
        await conn.copy_records_to_table("metrics", records=rows, columns=COLUMNS["metrics"])
    except asyncpg.UniqueViolationError as exc:
        raise _AlreadyStored from exc


async def insert_staged(conn: Connection, table: str, rows: list[Row]) -> None:
    """COPY `rows` into `table`'s staging table, then insert those not stored yet."""
    await conn.copy_records_to_table(f"stage_{table}", records=rows, columns=COLUMNS[table])
    await conn.execute(_INSERTS[table])


class EventStore:
    """Writes batches of events into PostgreSQL through an asyncpg connection."""

    async def write(
        self, conn: Connection, events: Sequence[EventRecord], offsets: Sequence[int] | None = None
    ) -> int:
        """Write `events` (at `offsets` of their topic, when known) in one transaction; return how
        many history rows were staged.
        """
        history = HistoryRows()
        for event in events:
            history.add(event)
        try:
            await self._write(conn, events, offsets, history, fast=True)
        except _AlreadyStored:
            await self._write(conn, events, offsets, history, fast=False)
        count: int = history.count()
        return count

    async def _write(
        self,
        conn: Connection,
        events: Sequence[EventRecord],
        offsets: Sequence[int] | None,
        history: HistoryRows,
        *,
        fast: bool,
    ) -> None:
        latest: list[list[Any]] = []
        async with conn.transaction():
            await claim_runs(conn, events)
            known = await lock_runs(conn, sorted({e.run_id for e in events}))
            for table, rows in history.non_empty().items():
                if fast and table == "metrics":
                    await copy_new_metrics(conn, rows)
                    latest = summarize(rows)
                else:
                    await insert_staged(conn, table, rows)
            runs = fold_runs(known, events, offsets).values()
            arrays = [*as_arrays(latest, len(LATEST_COLUMNS)), *run_arrays(runs)]
            await conn.execute(WRITE_BACK, *arrays)
