"""Runs as PostgreSQL holds them: find, list and filter runs; one run's ranks, summaries and log.

Every function takes a connection (of the read-only role, normally) and only reads. Rows are
dicts of the tables' columns with jsonb (`params`, `tags`, `row_data`) decoded; the CLI prints
them and the `Client` hands them out.
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from runstream._errors import AmbiguousRunError, NotFoundError
from runstream.consumers._database import Connection

Row = dict[str, Any]
LIVE_STATES = ("running", "stalled", "lost")
RUN_COLUMNS = (
    "run_id, experiment, name, status, status_reason, started_at, ended_at, world_size, "
    "params, tags, host, pid, command, git_commit, last_heartbeat_at, last_progress_at, "
    "last_step, error, exit_code"
)
_LIST = f"""
SELECT {RUN_COLUMNS} FROM runs
WHERE ($1::text IS NULL OR experiment = $1) AND ($2::text[] IS NULL OR status = ANY($2))
  AND tags @> $3::jsonb AND params @> $4::jsonb
  AND ($5::timestamptz IS NULL OR started_at >= $5) AND ($6::timestamptz IS NULL OR started_at < $6)
ORDER BY started_at DESC NULLS LAST LIMIT $7
"""
_SUMMARY = """
SELECT name, count(*) AS ranks, min(rank) AS first_rank, sum(count)::bigint AS count,
       min(min) AS min, max(max) AS max,
       (array_agg(value ORDER BY time DESC))[1] AS last,
       (array_agg(step ORDER BY time DESC))[1] AS step
FROM metric_latest WHERE run_id = $1 GROUP BY name ORDER BY name
"""
# The last N values by step lie in the N chunks that reach furthest (each holds at least one):
# only those are opened, however long the curve.
_RECENT = """
SELECT v.value
FROM (SELECT steps, vals FROM metric_chunks WHERE run_id = $1 AND name = $2 AND rank = $3
      ORDER BY step_hi DESC LIMIT $4) c,
     unnest(c.steps, c.vals) AS v(step, value)
ORDER BY v.step DESC LIMIT $4
"""


@dataclass(frozen=True, slots=True)
class RunFilter:
    """Which runs `list_runs` returns: every field that is set must hold (AND).

    `tags` and `params` match when the run has each given key with that value (values compare
    as the strings they are stored as); `started_after`/`started_before` bound the start time.
    """

    experiment: str | None = None
    status: str | Sequence[str] | None = None
    tags: Mapping[str, object] | None = None
    params: Mapping[str, object] | None = None
    started_after: datetime | None = None
    started_before: datetime | None = None
    limit: int = 50

    def arguments(self) -> tuple[object, ...]:
        """The query's arguments, in `$n` order."""
        states = [self.status] if isinstance(self.status, str) else self.status
        return (
            self.experiment,
            list(states) if states is not None else None,
            _as_json(self.tags),
            _as_json(self.params),
            self.started_after,
            self.started_before,
            self.limit,
        )


def _as_json(mapping: Mapping[str, object] | None) -> str:
    return json.dumps({str(k): str(v) for k, v in (mapping or {}).items()})


def as_row(record: asyncpg.Record) -> Row:
    """A record as a dict, with jsonb columns decoded."""
    row = dict(record)
    for column in ("params", "tags", "row_data"):
        if isinstance(row.get(column), str):
            row[column] = json.loads(row[column])
    return row


async def database_now(conn: Connection) -> datetime:
    """The database's clock (ages are measured against it, not against this machine's)."""
    now: datetime = await conn.fetchval("SELECT now()")
    return now


async def list_runs(conn: Connection, where: RunFilter) -> list[Row]:
    """Newest runs first, those `where` selects."""
    return [as_row(r) for r in await conn.fetch(_LIST, *where.arguments())]


async def get_run(conn: Connection, run_id: str) -> Row:
    """The run `run_id`, or the only run whose id starts with it.

    `NotFoundError` (with close ids as suggestions) or `AmbiguousRunError` otherwise.
    """
    record = await conn.fetchrow(f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = $1", run_id)
    if record is None:
        record = await _by_prefix(conn, run_id)
    return as_row(record)


async def _by_prefix(conn: Connection, prefix: str) -> asyncpg.Record:
    pattern = prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
    records = await conn.fetch(
        f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id LIKE $1 ORDER BY run_id LIMIT 6", pattern
    )
    if len(records) == 1:
        return records[0]
    if records:
        ids = [r["run_id"] for r in records[:5]]
        raise AmbiguousRunError(f"run id {prefix!r} is ambiguous: it starts {', '.join(ids)}", ids)
    raise NotFoundError(f"no run {prefix!r}", await _close_ids(conn, prefix))


async def _close_ids(conn: Connection, run_id: str) -> list[str]:
    recent = await conn.fetch(
        "SELECT run_id FROM runs ORDER BY started_at DESC NULLS LAST LIMIT 5000"
    )
    return difflib.get_close_matches(run_id, [r["run_id"] for r in recent], n=3, cutoff=0.6)


async def pick_run(conn: Connection, experiment: str, *, latest: bool) -> Row:
    """The newest run of `experiment` (`latest`), or its only live run.

    `NotFoundError` when there is none, `AmbiguousRunError` when several runs are live.
    """
    states = None if latest else list(LIVE_STATES)
    where = RunFilter(experiment=experiment, status=states, limit=6)
    rows = await list_runs(conn, where)
    if not rows:
        raise NotFoundError(f"{'no run' if latest else 'no live run'} in experiment {experiment!r}")
    if len(rows) > 1 and not latest:
        ids = [r["run_id"] for r in rows[:5]]
        raise AmbiguousRunError(
            f"experiment {experiment!r} has several live runs: {', '.join(ids)}", ids
        )
    return rows[0]


async def metric_summaries(conn: Connection, run_id: str) -> list[Row]:
    """Per metric over all ranks: last value and step, min, max, count, ranks."""
    return [as_row(r) for r in await conn.fetch(_SUMMARY, run_id)]


async def recent_values(
    conn: Connection, run_id: str, name: str, rank: int, count: int
) -> list[float]:
    """The last `count` values of one rank's metric, oldest first (for sparklines)."""
    records = await conn.fetch(_RECENT, run_id, name, rank, count)
    return [float(r["value"]) for r in reversed(records)]


async def ranks(conn: Connection, run_id: str) -> list[Row]:
    """Each rank's liveness, progress and end."""
    records = await conn.fetch("SELECT * FROM run_ranks WHERE run_id = $1 ORDER BY rank", run_id)
    return [as_row(r) for r in records]


async def log_tail(conn: Connection, run_id: str, count: int) -> list[Row]:
    """The run's last `count` log records, oldest first."""
    records = await conn.fetch(
        "SELECT time, rank, level, logger, message FROM log_records WHERE run_id = $1 "
        "ORDER BY time DESC, seq DESC LIMIT $2",
        run_id,
        count,
    )
    return [as_row(r) for r in reversed(records)]


async def launcher_state(conn: Connection, run_id: str) -> str | None:
    """The last state `runstream run` sent for the run; None when no launcher supervises it."""
    state: str | None = await conn.fetchval(
        "SELECT state FROM status_events WHERE run_id = $1 AND source = 'launcher' "
        "ORDER BY time DESC LIMIT 1",
        run_id,
    )
    return state


async def extras(conn: Connection, run_id: str) -> Row:
    """Text metrics (last value each), tables (row counts) and files (sizes) of a run."""
    texts = await conn.fetch(
        "SELECT DISTINCT ON (name) name, step, value FROM text_metrics WHERE run_id = $1 "
        "ORDER BY name, step DESC, time DESC",
        run_id,
    )
    tables = await conn.fetch(
        "SELECT table_name AS name, count(*) AS rows FROM table_rows WHERE run_id = $1 "
        "GROUP BY table_name ORDER BY table_name",
        run_id,
    )
    files = await conn.fetch(
        "SELECT name, media_type, size, step FROM files WHERE run_id = $1 ORDER BY name, time",
        run_id,
    )
    return {
        "text": [as_row(r) for r in texts],
        "tables": [as_row(r) for r in tables],
        "files": [as_row(r) for r in files],
    }


async def metric_names(conn: Connection, run_ids: Sequence[str]) -> list[str]:
    """Names of the scalar metrics the given runs logged."""
    records = await conn.fetch(
        "SELECT DISTINCT name FROM metric_latest WHERE run_id = ANY($1::text[]) ORDER BY name",
        list(run_ids),
    )
    return [r["name"] for r in records]
