"""What runs logged over time: metric curves (per rank or across ranks), tables, files, texts.

Long curves can be read at a point budget instead (`_downsample`).

Every function takes a connection and only reads. A curve is read in step order, each metric one
index range scan (the `metrics` key leads with run, name, step); the export streams through a
server-side cursor in batches, so no more than one batch is in memory however long the run.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from typing import Any

import asyncpg

from runstream.consumers._database import Connection
from runstream.consumers.read._downsample import downsampled_history
from runstream.consumers.read._runs import Row, as_row

METRIC_COLUMNS = ("run_id", "name", "step", "rank", "time", "value")
AGGREGATE_COLUMNS = ("run_id", "name", "step", "min", "mean", "max", "ranks")
EXPORT_BATCH = 50_000
_ORDER = "ORDER BY run_id, name, step, rank, time, producer_id, seq, idx"
_SCOPE = (
    "run_id = ANY($1::text[]) AND ($2::text[] IS NULL OR name = ANY($2)) "
    "AND ($3::int IS NULL OR rank = $3)"
)
_HISTORY = f"SELECT {', '.join(METRIC_COLUMNS)} FROM metrics WHERE {_SCOPE} {_ORDER}"
_AGGREGATE = f"""
SELECT run_id, name, step, min(value) AS min, avg(value) AS mean, max(value) AS max,
       count(DISTINCT rank)::int AS ranks
FROM metrics WHERE {_SCOPE} GROUP BY run_id, name, step ORDER BY run_id, name, step
"""
_TOTAL = f"SELECT coalesce(sum(count), 0)::bigint FROM metric_latest WHERE {_SCOPE}"
_EXPORT_ORDER = "ORDER BY name, step, producer_id, seq, idx"
_LARGEST = (
    "SELECT max(count) FROM metric_latest WHERE run_id = $1 AND name = $2 "
    "AND ($3::int IS NULL OR rank = $3)"
)
_RAW_CURVE = (
    "SELECT rank, step, value FROM metrics WHERE run_id = $1 AND name = $2 "
    "AND ($3::int IS NULL OR rank = $3) ORDER BY step, time"
)


def _scope(
    run_ids: Sequence[str], names: Sequence[str] | None, rank: int | None
) -> tuple[Any, ...]:
    return list(run_ids), list(names) if names else None, rank


async def metric_history(
    conn: Connection, run_ids: Sequence[str], names: Sequence[str] | None, rank: int | None
) -> list[asyncpg.Record]:
    """Every stored value (`METRIC_COLUMNS`) of the runs' metrics, in run, name, step order.

    Two values logged at one step are both there (by rank, then time, then event identity).
    """
    return await conn.fetch(_HISTORY, *_scope(run_ids, names, rank))


async def metric_aggregate(
    conn: Connection, run_ids: Sequence[str], names: Sequence[str] | None, rank: int | None
) -> list[asyncpg.Record]:
    """Per run, metric and step across ranks (`AGGREGATE_COLUMNS`).

    min, mean and max over every value at the step (repeated ones too), and how many ranks
    logged it.
    """
    return await conn.fetch(_AGGREGATE, *_scope(run_ids, names, rank))


async def metric_total(
    conn: Connection, run_id: str, names: Sequence[str] | None, rank: int | None
) -> int:
    """How many values `export_batches` will yield (from the running counts persist keeps)."""
    total: int = await conn.fetchval(_TOTAL, *_scope([run_id], names, rank))
    return total


async def export_batches(
    conn: Connection, run_id: str, names: Sequence[str], rank: int | None, batch: int = EXPORT_BATCH
) -> AsyncIterator[list[asyncpg.Record]]:
    """One run's values (name, step, rank, time, value) in batches, name by name in step order.

    Needs a transaction open on `conn` (a server-side cursor lives in one).
    """
    rank_filter = " AND rank = $3" if rank is not None else ""
    columns = "name, step, rank, time, value"
    if names:
        query = f"SELECT {columns} FROM metrics WHERE run_id = $1 AND name = $2{rank_filter}"
        scans = [(query, [run_id, name]) for name in sorted(set(names))]
    else:
        rank_filter = rank_filter.replace("$3", "$2")
        query = f"SELECT {columns} FROM metrics WHERE run_id = $1{rank_filter}"
        scans = [(query, [run_id])]
    for query, args in scans:
        bound = [*args, rank] if rank is not None else args
        cursor = await conn.cursor(f"{query} {_EXPORT_ORDER}", *bound)
        while rows := await cursor.fetch(batch):
            yield rows


async def curve_points(
    conn: Connection, run_id: str, name: str, rank: int | None, max_points: int
) -> list[asyncpg.Record]:
    """(rank, step, value) of one metric for plotting, in step order per rank.

    A curve with more than `max_points` values on a rank is downsampled by PostgreSQL (each of
    `max_points // 2` step buckets keeps its lowest and highest point: `downsampled_history`), so
    it never travels whole to the client and no spike is lost.
    """
    largest = await conn.fetchval(_LARGEST, run_id, name, rank)
    if not largest:
        return []
    if largest <= max_points:
        return await conn.fetch(_RAW_CURVE, run_id, name, rank)
    return await downsampled_history(conn, [run_id], [name], rank, max_points)


async def table_rows(conn: Connection, run_id: str, table: str, rank: int | None) -> list[Row]:
    """A table's rows in the order they were logged: `rank`, `time` and the row's columns."""
    records = await conn.fetch(
        "SELECT rank, time, row_data FROM table_rows WHERE run_id = $1 AND table_name = $2 "
        "AND ($3::int IS NULL OR rank = $3) ORDER BY time, producer_id, seq",
        run_id,
        table,
        rank,
    )
    return [as_row(r) for r in records]


async def table_names(conn: Connection, run_id: str) -> list[str]:
    """The names of the tables a run logged."""
    records = await conn.fetch(
        "SELECT DISTINCT table_name FROM table_rows WHERE run_id = $1 ORDER BY table_name", run_id
    )
    return [r["table_name"] for r in records]


async def file_data(conn: Connection, run_id: str, name: str, step: int | None) -> Row | None:
    """The newest file or image called `name` (at `step`, when given): its bytes and facts."""
    record = await conn.fetchrow(
        "SELECT name, rank, step, time, media_type, size, data FROM files "
        "WHERE run_id = $1 AND name = $2 AND ($3::bigint IS NULL OR step = $3) "
        "ORDER BY time DESC, seq DESC LIMIT 1",
        run_id,
        name,
        step,
    )
    return None if record is None else dict(record)


async def file_list(conn: Connection, run_id: str) -> list[Row]:
    """A run's files and images (name, rank, step, time, media type, size), without the bytes."""
    records = await conn.fetch(
        "SELECT name, rank, step, time, media_type, size FROM files WHERE run_id = $1 "
        "ORDER BY name, time, seq",
        run_id,
    )
    return [dict(r) for r in records]


async def text_history(conn: Connection, run_id: str, rank: int | None) -> list[asyncpg.Record]:
    """Every text metric value (name, step, rank, time, value) in name, step order."""
    return await conn.fetch(
        "SELECT name, step, rank, time, value FROM text_metrics WHERE run_id = $1 "
        "AND ($2::int IS NULL OR rank = $2) ORDER BY name, step, time, seq",
        run_id,
        rank,
    )
