"""`EventStore`: writes one batch of decoded events to PostgreSQL in one transaction.

Every round trip counts (on a busy machine each one waits for the scheduler twice), so a batch of
metrics is six: BEGIN; lock and read its runs with their ranks; read the batch's marks; COPY the
values as chunks; one statement that upserts `metric_latest`, the marks, the runs, their ranks and
experiments; COMMIT.

Metric values, nearly all of the rows, are written as chunks (`_chunks`): exactly-once by the
marks of each producer session, with stored values looked up only for events at or below their
mark (a redelivery, a replayed spool); `metric_latest` is summarized in Python (`_latest`) from the
values actually written, so a replay never counts a value twice. Every other history table takes a
COPY into the session-local staging table (`stage_*`, emptied at every commit) and one `INSERT …
SELECT … ON CONFLICT DO NOTHING` on its unique key, which holds the event identity. Runs touched by
the batch are locked first, folded (`RunState.apply`) and written back in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from runstream.consumers._chunks import (
    MARK_COLUMNS,
    UPSERT_MARKS,
    ChunkWriter,
    MetricBatch,
    mark_arrays,
)
from runstream.consumers._database import Connection
from runstream.consumers._latest import LATEST_COLUMNS, upsert_latest
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
from runstream.schemas import EventRecord, Metrics

STAGING_TABLES = tuple(COLUMNS)
_MARKS_FROM = 1 + len(LATEST_COLUMNS)
_RUNS_FROM = _MARKS_FROM + len(MARK_COLUMNS)
_RANKS_FROM = _RUNS_FROM + len(RUN_COLUMNS)
WRITE_BACK = (
    f"WITH latest AS ({upsert_latest(1)}), "
    f"marks AS ({UPSERT_MARKS.format(_MARKS_FROM, _MARKS_FROM + 1, _MARKS_FROM + 2)}), "
    f"written_runs AS ({upsert_runs(_RUNS_FROM)}), "
    f"written_ranks AS ({upsert_ranks(_RANKS_FROM)}) "
    + insert_experiments(_RUNS_FROM + RUN_COLUMNS.index("experiment"))
)


def _insert(table: str) -> str:
    columns = ", ".join(COLUMNS[table])
    return (
        f"INSERT INTO {table} ({columns}) SELECT {columns} FROM stage_{table} "
        "ON CONFLICT DO NOTHING"
    )


_INSERTS = {table: _insert(table) for table in COLUMNS}


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


async def insert_staged(conn: Connection, table: str, rows: list[Row]) -> None:
    """COPY `rows` into `table`'s staging table, then insert those not stored yet."""
    await conn.copy_records_to_table(f"stage_{table}", records=rows, columns=COLUMNS[table])
    await conn.execute(_INSERTS[table])


class EventStore:
    """Writes batches of events into PostgreSQL through an asyncpg connection."""

    def __init__(self) -> None:
        self._chunks = ChunkWriter()

    async def write(
        self, conn: Connection, events: Sequence[EventRecord], offsets: Sequence[int] | None = None
    ) -> int:
        """Write `events` (at `offsets` of their topic, when known) in one transaction; return how
        many history rows (metric values counted one by one) were written or found stored.
        """
        history, metrics = HistoryRows(), MetricBatch()
        for event in events:
            body = event.body
            if type(body) is Metrics:
                metrics.add(event, body)
            else:
                history.add(event)
        latest: list[list[Any]] = []
        async with conn.transaction():
            await claim_runs(conn, events)
            known = await lock_runs(conn, sorted({e.run_id for e in events}))
            if metrics.series:
                fresh = await self._chunks.new_values(conn, metrics)
                if fresh.series:
                    await self._chunks.write(conn, fresh)
                latest = fresh.latest()
            for table, rows in history.non_empty().items():
                await insert_staged(conn, table, rows)
            runs = fold_runs(known, events, offsets).values()
            arrays = [
                *as_arrays(latest, len(LATEST_COLUMNS)),
                *mark_arrays(metrics.ranges),
                *run_arrays(runs),
            ]
            await conn.execute(WRITE_BACK, *arrays)
        count: int = history.count() + metrics.count()
        return count
