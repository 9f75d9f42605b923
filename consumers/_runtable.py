"""`runs` and `run_ranks` as `RunState`s.

Read for a batch (locked, each run with its ranks in one query), an exporter rebuild or a watchdog
tick; written back by persist as one array per column (`upsert_runs`, `upsert_ranks`), so the
whole write-back can travel in the same statement as the batch's `metric_latest`.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

import asyncpg

from runstream.consumers._database import Connection
from runstream.consumers._rows import as_arrays, json_storable, storable, unnest
from runstream.consumers._runstate import RankState, RunState
from runstream.schemas import EventRecord

RUN_COLUMNS = (
    "run_id", "experiment", "name", "status", "status_reason", "status_source", "started_at",
    "ended_at",
    "world_size", "params", "tags", "host", "pid", "command", "git_commit", "last_heartbeat_at",
    "last_progress_at", "last_step", "expect_next_in", "error", "exit_code", "verdict_offset",
)  # fmt: skip
RUN_TYPES = (
    "text", "text", "text", "text", "text", "text", "timestamptz", "timestamptz",
    "int4", "jsonb", "jsonb", "text", "int4", "text", "text", "timestamptz",
    "timestamptz", "int8", "float8", "text", "int4", "int8",
)  # fmt: skip
RANK_COLUMNS = (
    "run_id", "rank", "status", "host", "pid", "last_heartbeat_at", "last_progress_at",
    "last_step", "expect_next_in", "straggling", "finished_at", "exit_code", "reason",
    "heard_offset", "progress_offset",
)  # fmt: skip
RANK_TYPES = (
    "text", "int4", "text", "text", "int4", "timestamptz", "timestamptz",
    "int8", "float8", "bool", "timestamptz", "int4", "text",
    "int8", "int8",
)  # fmt: skip
_RUN_FIELDS = [c for c in RUN_COLUMNS if c not in ("params", "tags")]
_DERIVED = ("last_heartbeat_at", "last_progress_at", "last_step")

_SELECT_RUNS = f"SELECT {', '.join(RUN_COLUMNS)} FROM runs"
_SELECT_RANKS = f"SELECT {', '.join(RANK_COLUMNS)} FROM run_ranks WHERE run_id = ANY($1::text[])"
_LOCK_RUNS = (
    f"SELECT {', '.join(RUN_COLUMNS)}, "
    "ARRAY(SELECT k FROM run_ranks k WHERE k.run_id = runs.run_id) AS ranks "
    "FROM runs WHERE run_id = ANY($1::text[]) ORDER BY run_id FOR NO KEY UPDATE OF runs"
)
_LIVE_RUNS = _SELECT_RUNS + " WHERE status IN ('running', 'stalled', 'lost') ORDER BY run_id"
_RECENT_RUNS = _SELECT_RUNS + (
    " WHERE status IN ('running', 'stalled', 'lost')"
    " OR ended_at > now() - make_interval(secs => $1)"
)


_CLAIM_RUNS = (
    "INSERT INTO runs (run_id, experiment, world_size, started_at) "
    "SELECT * FROM unnest($1::text[], $2::text[], $3::int4[], $4::timestamptz[]) "
    "ON CONFLICT (run_id) DO NOTHING"
)


def _updates(columns: Iterable[str], key: Iterable[str]) -> str:
    keys = set(key)
    return ", ".join(f"{c} = excluded.{c}" for c in columns if c not in keys)


def upsert_runs(first: int) -> str:
    """Upsert `runs` rows sent as arrays (parameters from `first`, in `RUN_COLUMNS` order)."""
    updates = _updates(RUN_COLUMNS, ["run_id"])
    return (
        f"INSERT INTO runs ({', '.join(RUN_COLUMNS)}) SELECT * FROM {unnest(RUN_TYPES, first)} "
        f"ON CONFLICT (run_id) DO UPDATE SET {updates}, updated_at = now()"
    )


def upsert_ranks(first: int) -> str:
    """Upsert `run_ranks` rows sent as arrays (parameters from `first`, `RANK_COLUMNS` order)."""
    return (
        f"INSERT INTO run_ranks ({', '.join(RANK_COLUMNS)}) "
        f"SELECT * FROM {unnest(RANK_TYPES, first)} "
        f"ON CONFLICT (run_id, rank) DO UPDATE SET {_updates(RANK_COLUMNS, ['run_id', 'rank'])}"
    )


def insert_experiments(experiments: int) -> str:
    """Add the experiments in parameter `experiments` (a text array) that are new."""
    return (
        f"INSERT INTO experiments (name) SELECT DISTINCT e FROM unnest(${experiments}::text[]) e "
        "ON CONFLICT DO NOTHING"
    )


def run_row(run: RunState) -> tuple[Any, ...]:
    """The `runs` row of a run, in `RUN_COLUMNS` order."""
    values: dict[str, Any] = {c: getattr(run, c) for c in _RUN_FIELDS}
    values["params"] = json_storable(run.params)
    values["tags"] = json_storable(run.tags)
    for text in ("name", "status_reason", "host", "command", "git_commit", "error"):
        values[text] = storable(values[text])
    return tuple(values[c] for c in RUN_COLUMNS)


def rank_row(rank: RankState) -> tuple[Any, ...]:
    """The `run_ranks` row of a rank, in `RANK_COLUMNS` order."""
    values = {c: getattr(rank, c) for c in RANK_COLUMNS}
    values["reason"] = storable(values["reason"])
    values["host"] = storable(values["host"])
    return tuple(values[c] for c in RANK_COLUMNS)


def states_from_rows(
    runs: Sequence[asyncpg.Record], ranks: Sequence[asyncpg.Record]
) -> dict[str, RunState]:
    """Rebuild `RunState`s from `runs` and `run_ranks` rows."""
    states: dict[str, RunState] = {}
    for row in runs:
        fields = {c: row[c] for c in _RUN_FIELDS if c not in _DERIVED}
        state = RunState(**fields)
        state.params, state.tags = _json(row["params"]), _json(row["tags"])
        states[row["run_id"]] = state
    for row in ranks:
        run = states.get(row["run_id"])
        if run is not None:
            run.ranks[row["rank"]] = RankState(**{c: row[c] for c in RANK_COLUMNS})
    return states


def _json(value: Any) -> dict[str, str]:
    decoded = json.loads(value) if isinstance(value, str) else value
    return dict(decoded or {})


async def claim_runs(conn: Connection, events: Iterable[EventRecord]) -> None:
    """Make a row for every run of `events` that has none yet, as its first event would.

    Called before `lock_runs`, so that two writers folding the same new run (persist consumers
    overlapping in a rebalance) queue on that row's lock: the second one reads what the first
    wrote and folds on top of it, instead of both starting from nothing and the later upsert
    overwriting the earlier's fields. Rows are claimed in run id order (no deadlock).
    """
    first: dict[str, EventRecord] = {}
    for event in events:
        first.setdefault(event.run_id, event)
    rows = [(r, e.experiment, e.world_size, e.time) for r, e in sorted(first.items())]
    if rows:
        await conn.execute(_CLAIM_RUNS, *as_arrays(rows, 4))


async def lock_runs(conn: Connection, run_ids: Sequence[str]) -> dict[str, RunState]:
    """Lock (in a stable order, so two writers never deadlock) and read the given runs."""
    runs = await conn.fetch(_LOCK_RUNS, list(run_ids))
    return states_from_rows(runs, [rank for run in runs for rank in run["ranks"]])


async def live_runs(conn: Connection) -> dict[str, RunState]:
    """Runs that are running, stalled or lost (bounded by the partial index `runs_live`)."""
    runs = await conn.fetch(_LIVE_RUNS)
    ranks = await conn.fetch(_SELECT_RANKS, [r["run_id"] for r in runs]) if runs else []
    return states_from_rows(runs, ranks)


async def recent_runs(conn: Connection, ended_within: float) -> dict[str, RunState]:
    """Live runs and those that ended less than `ended_within` seconds ago."""
    runs = await conn.fetch(_RECENT_RUNS, ended_within)
    ranks = await conn.fetch(_SELECT_RANKS, [r["run_id"] for r in runs]) if runs else []
    return states_from_rows(runs, ranks)


def run_arrays(runs: Iterable[RunState]) -> list[list[Any]]:
    """The arguments of `upsert_runs` then `upsert_ranks`: one array per column of each."""
    runs = list(runs)
    ranks = [rank_row(rank) for run in runs for rank in run.ranks.values()]
    return [
        *as_arrays([run_row(run) for run in runs], len(RUN_COLUMNS)),
        *as_arrays(ranks, len(RANK_COLUMNS)),
    ]
