"""Metric values written as chunks (`metric_chunks`, migration 0005), exactly once.

A batch's metric rows are grouped by series and producer session (run, metric, rank, producer);
each group, in log order (seq, idx), becomes one chunk row of at most `CHUNK_VALUES` values,
carrying its extremes (`lo`, `hi` with their steps, in PostgreSQL's order of doubles, where NaN
is highest) for downsampled reads.

Exactly-once: the caller holds the row locks of the batch's runs, so no other writer adds chunks
to them meanwhile. `metric_marks` holds, per (run, producer session), the highest seq stored; an
event above its mark cannot be stored yet, and nearly every batch is only that (one query). Events
at or below it (a redelivery, a replayed spool) are looked up among the stored chunks whose seq
range meets theirs, and only the values not found are written. An event repeated inside one
batch counts once.

Chunks are partitioned by month of `time_lo`; the partitions a batch needs are created first
(`metric_chunks_partition`). This process remembers the months it has seen; if one was dropped
since (retention), the insert fails as retriable and the next attempt creates it again.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

import asyncpg

from runstream.consumers._database import Connection, DatabaseUnavailable
from runstream.consumers._rows import Row, as_arrays

CHUNK_VALUES = 1000
"""Most values in one chunk row (persist's chunks hold one batch's values of a series)."""

CHUNK_COLUMNS = (
    "run_id", "name", "rank", "producer_id", "time_lo", "step_lo", "step_hi", "seq_lo",
    "seq_hi", "n", "lo", "lo_step", "hi", "hi_step", "steps", "times", "vals", "seqs", "idxs",
)  # fmt: skip

_MARKS = """
SELECT m.run_id, m.producer_id::text, m.seq_hi
FROM metric_marks m JOIN unnest($1::text[], $2::uuid[]) AS b(run_id, producer_id)
     ON m.run_id = b.run_id AND m.producer_id = b.producer_id
"""
_STORED = """
SELECT c.run_id, c.producer_id::text, v.seq, v.idx
FROM unnest($1::text[], $2::uuid[], $3::int8[], $4::int8[]) AS b(run_id, producer_id, lo, hi)
JOIN metric_chunks c ON c.run_id = b.run_id AND c.producer_id = b.producer_id
     AND c.seq_hi >= b.lo AND c.seq_lo <= b.hi,
     unnest(c.seqs, c.idxs) AS v(seq, idx)
WHERE v.seq BETWEEN b.lo AND b.hi
"""
_ENSURE_PARTITIONS = "SELECT metric_chunks_partition(m) FROM unnest($1::timestamptz[]) AS m"
MARK_COLUMNS = ("run_id", "producer_id", "seq_hi")
UPSERT_MARKS = """
INSERT INTO metric_marks AS k (run_id, producer_id, seq_hi)
SELECT * FROM unnest(${0}::text[], ${1}::uuid[], ${2}::int8[])
ON CONFLICT (run_id, producer_id) DO UPDATE SET seq_hi = greatest(k.seq_hi, excluded.seq_hi)
"""
_NO_PARTITION = "no partition of relation"

Identity = tuple[str, str, int, int]
Session = tuple[str, str]


def _order(value: float, step: int) -> tuple[int, float, int]:
    """`ARRAY[value, step]` in PostgreSQL's order: NaN above every number."""
    return (1, 0.0, step) if value != value else (0, value, step)  # noqa: PLR0124 (NaN)


def chunk_row(key: tuple[str, str, int, str], rows: Sequence[Row]) -> Row:
    """One chunk row of `rows` (metric rows of one series and session, in log order)."""
    run_id, name, rank, producer_id = key
    steps = [row[2] for row in rows]
    values = [row[5] for row in rows]
    seqs = [row[7] for row in rows]
    ordered = sorted(zip(values, steps, strict=True), key=lambda p: _order(*p))
    (lo, lo_step), (hi, hi_step) = ordered[0], ordered[-1]
    return (
        run_id, name, rank, producer_id, min(row[4] for row in rows), min(steps), max(steps),
        seqs[0], seqs[-1], len(rows), lo, lo_step, hi, hi_step,
        steps, [row[4] for row in rows], values, seqs, [row[8] for row in rows],
    )  # fmt: skip


def chunk_rows(rows: Iterable[Row]) -> list[Row]:
    """`rows` (metric rows, columns of the `metrics` view) as chunk rows (`CHUNK_COLUMNS`)."""
    groups: dict[tuple[str, str, int, str], list[Row]] = {}
    for row in rows:
        key = (row[0], row[1], row[3], row[6])
        found = groups.get(key)
        if found is None:
            groups[key] = [row]
        else:
            found.append(row)
    chunks: list[Row] = []
    for key, members in groups.items():
        members.sort(key=lambda row: (row[7], row[8]))
        chunks.extend(
            chunk_row(key, members[start : start + CHUNK_VALUES])
            for start in range(0, len(members), CHUNK_VALUES)
        )
    return chunks


def seq_ranges(rows: Iterable[Row]) -> dict[Session, list[int]]:
    """The lowest and highest seq of each (run, producer session) in `rows`."""
    ranges: dict[Session, list[int]] = {}
    for row in rows:
        session, seq = (row[0], row[6]), row[7]
        found = ranges.get(session)
        if found is None:
            ranges[session] = [seq, seq]
        elif seq < found[0]:
            found[0] = seq
        elif seq > found[1]:
            found[1] = seq
    return ranges


def mark_arrays(ranges: dict[Session, list[int]]) -> list[list[Any]]:
    """`metric_marks` upsert arguments: each session's highest seq in the batch."""
    return as_arrays([(run, producer, hi) for (run, producer), (_, hi) in ranges.items()], 3)


def unique_rows(rows: Iterable[Row]) -> list[Row]:
    """`rows` without a value repeated in them (the same event delivered twice in one batch)."""
    seen: set[Identity] = set()
    unique = []
    for row in rows:
        identity = (row[0], row[6], row[7], row[8])
        if identity not in seen:
            seen.add(identity)
            unique.append(row)
    return unique


class ChunkWriter:
    """Writes metric rows as chunks; remembers which monthly partitions exist."""

    def __init__(self) -> None:
        self._months: set[datetime] = set()

    async def new_rows(
        self, conn: Connection, rows: list[Row], ranges: dict[Session, list[int]]
    ) -> list[Row]:
        """The rows of `rows` not stored yet (their runs locked by the caller)."""
        sessions = list(ranges)
        marks = await conn.fetch(_MARKS, *as_arrays(sessions, 2))
        suspect = {
            (run, producer): (ranges[(run, producer)][0], hi)
            for run, producer, hi in marks
            if ranges[(run, producer)][0] <= hi
        }
        if not suspect:
            return unique_rows(rows)
        lookup = [(run, producer, lo, hi) for (run, producer), (lo, hi) in suspect.items()]
        stored = await conn.fetch(_STORED, *as_arrays(lookup, 4))
        seen: set[Identity] = {(r[0], r[1], r[2], r[3]) for r in stored}
        return unique_rows(row for row in rows if (row[0], row[6], row[7], row[8]) not in seen)

    async def write(self, conn: Connection, rows: list[Row]) -> None:
        """COPY `rows` (new ones) into `metric_chunks`, creating the months they need."""
        chunks = chunk_rows(rows)
        months = {_month(chunk[4]) for chunk in chunks} - self._months
        if months:
            await conn.execute(_ENSURE_PARTITIONS, sorted(months))
        try:
            await conn.copy_records_to_table("metric_chunks", records=chunks, columns=CHUNK_COLUMNS)
        except asyncpg.CheckViolationError as exc:
            if _NO_PARTITION not in str(exc):
                raise
            self._months.clear()
            raise DatabaseUnavailable(f"a month's partition went away: {exc}") from exc
        self._months |= months


def _month(at: datetime) -> datetime:
    return at.replace(day=1, hour=0, minute=0, second=0, microsecond=0)
