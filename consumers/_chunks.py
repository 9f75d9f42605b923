"""Metric values written as chunks (`metric_chunks`, migration 0005), exactly once.

A batch's metric values are gathered by series and producer session (run, metric, rank,
producer) straight from the events, as the columns of a chunk (`MetricBatch`): no row per value is
ever built. Each group becomes one chunk row of at most `CHUNK_VALUES` values, carrying its
extremes (`lo`, `hi` with their steps, in PostgreSQL's order of doubles, where NaN is highest) for
downsampled reads, and gives its series' `metric_latest` summary.

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

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg

from runstream.consumers import _pgcopy as pg
from runstream.consumers._database import Connection, DatabaseUnavailable
from runstream.consumers._rows import Row, as_arrays
from runstream.schemas import EventRecord, Metrics, moment

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
"""A stored value: run, producer session, seq, index in its event."""
Session = tuple[str, str]
SeriesKey = tuple[str, str, int, str]
"""(run, metric, rank, producer session): what one chunk holds values of."""


@dataclass(slots=True)
class Series:
    """Values of one series and session, in arrival order, as a chunk's columns (`times` in
    microseconds since the Unix epoch, as events carry them).
    """

    steps: list[int] = field(default_factory=list)
    times: list[int] = field(default_factory=list)
    vals: list[float] = field(default_factory=list)
    seqs: list[int] = field(default_factory=list)
    idxs: list[int] = field(default_factory=list)

    def append(self, step: int, time: int, value: float, seq: int, idx: int) -> None:
        """Add one value."""
        self.steps.append(step)
        self.times.append(time)
        self.vals.append(value)
        self.seqs.append(seq)
        self.idxs.append(idx)

    def cut(self, start: int, stop: int) -> Series:
        """Values `start` to `stop` (arrival order)."""
        return Series(
            self.steps[start:stop], self.times[start:stop], self.vals[start:stop],
            self.seqs[start:stop], self.idxs[start:stop],
        )  # fmt: skip

    def pick(self, at: list[int]) -> Series:
        """The values at positions `at`."""
        return Series(
            [self.steps[i] for i in at], [self.times[i] for i in at], [self.vals[i] for i in at],
            [self.seqs[i] for i in at], [self.idxs[i] for i in at],
        )  # fmt: skip

    def newest(self) -> int:
        """Where the newest value is: the highest (time, seq, idx), PostgreSQL's tie-break."""
        latest = max(self.times)
        at = [i for i, t in enumerate(self.times) if t == latest]
        if len(at) == 1:
            return at[0]
        return max(at, key=lambda i: (self.seqs[i], self.idxs[i]))

    def extremes(self) -> tuple[float, int, float, int]:
        """`min`/`max` of `ARRAY[value, step]`: lowest value (lowest step of equals), highest
        (highest step of equals); NaN is above every number.
        """
        vals, steps = self.vals, self.steps
        total = sum(vals)
        if total != total:  # noqa: PLR0124 (a NaN, or +inf and -inf: order them one by one)
            pairs = sorted(zip(vals, steps, strict=True), key=_order)
            return pairs[0][0], pairs[0][1], pairs[-1][0], pairs[-1][1]
        lo, hi = min(vals), max(vals)
        return lo, _step_of(vals, steps, lo, min), hi, _step_of(vals, steps, hi, max)


def _step_of(vals: list[float], steps: list[int], value: float, pick: Any) -> int:
    if vals.count(value) == 1:
        return steps[vals.index(value)]
    step: int = pick(s for v, s in zip(vals, steps, strict=True) if v == value)
    return step


def _rank(value: float) -> tuple[int, float]:
    """`value` in PostgreSQL's order of doubles: NaN above every number."""
    return (1, 0.0) if value != value else (0, value)  # noqa: PLR0124 (NaN)


def _order(pair: tuple[float, int]) -> tuple[tuple[int, float], int]:
    return _rank(pair[0]), pair[1]


@dataclass(slots=True)
class MetricBatch:
    """One batch's metric values, by series and session; each event counted once."""

    series: dict[SeriesKey, Series] = field(default_factory=dict)
    ranges: dict[Session, list[int]] = field(default_factory=dict)
    _seen: set[tuple[str, str, int]] = field(default_factory=set)

    def add(self, event: EventRecord, body: Metrics) -> None:
        """Add the values of one Metrics event (again: nothing)."""
        run_id, producer_id, seq = event.run_id, event.producer_id, event.seq
        identity = (run_id, producer_id, seq)
        if identity in self._seen:
            return
        self._seen.add(identity)
        self._widen((run_id, producer_id), seq)
        step, rank, time, series = body.step, event.rank, event.time_us, self.series
        for idx, (name, value) in enumerate(body.values):
            key = (run_id, name, rank, producer_id)
            found = series.get(key)
            if found is None:
                found = series[key] = Series()
            found.append(step, time, value, seq, idx)

    def _widen(self, session: Session, seq: int) -> None:
        found = self.ranges.get(session)
        if found is None:
            self.ranges[session] = [seq, seq]
        elif seq < found[0]:
            found[0] = seq
        elif seq > found[1]:
            found[1] = seq

    def count(self) -> int:
        """Values in the batch."""
        return sum(len(s.vals) for s in self.series.values())

    def without(self, stored: set[Identity]) -> MetricBatch:
        """This batch without the values in `stored`."""
        kept = MetricBatch(ranges=self.ranges)
        for key, series in self.series.items():
            run_id, _, _, producer_id = key
            rest = Series()
            for i, seq in enumerate(series.seqs):
                if (run_id, producer_id, seq, series.idxs[i]) not in stored:
                    rest.append(
                        series.steps[i], series.times[i], series.vals[i], seq, series.idxs[i]
                    )
            if rest.vals:
                kept.series[key] = rest
        return kept

    def chunk_rows(self) -> list[Row]:
        """The chunk rows (`CHUNK_COLUMNS`) of the batch."""
        rows = []
        for key, series in self.series.items():
            size = len(series.vals)
            if size <= CHUNK_VALUES:
                rows.append(chunk_row(key, series))
                continue
            rows.extend(
                chunk_row(key, series.cut(start, start + CHUNK_VALUES))
                for start in range(0, size, CHUNK_VALUES)
            )
        return rows

    def latest(self) -> list[list[Any]]:
        """One `metric_latest` row per (run, metric, rank): newest value, count, min and max."""
        merged: dict[tuple[str, str, int], list[Any]] = {}
        for (run_id, name, rank, _), series in self.series.items():
            newest = series.newest()
            lo, _, hi, _ = series.extremes()
            order = (series.times[newest], series.seqs[newest], series.idxs[newest])
            step, value = series.steps[newest], series.vals[newest]
            time = moment(series.times[newest])
            summary = [step, time, value, len(series.vals), lo, hi, order]
            found = merged.setdefault((run_id, name, rank), summary)
            if found is not summary:
                _merge(found, summary)
        return [[*key, *found[:6]] for key, found in sorted(merged.items())]


def _merge(into: list[Any], other: list[Any]) -> None:
    """Fold one session's summary of a series into another's."""
    if other[6] > into[6]:
        into[0], into[1], into[2], into[6] = other[0], other[1], other[2], other[6]
    into[3] += other[3]
    if _rank(other[4]) < _rank(into[4]):
        into[4] = other[4]
    if _rank(other[5]) > _rank(into[5]):
        into[5] = other[5]


def chunk_row(key: SeriesKey, series: Series) -> Row:
    """One chunk row of `series` (one series and session); `time_lo` and `times` in microseconds
    since the Unix epoch (`copy_chunks` writes them).
    """
    run_id, name, rank, producer_id = key
    lo, lo_step, hi, hi_step = series.extremes()
    steps, seqs = series.steps, series.seqs
    return (
        run_id, name, rank, producer_id, min(series.times), min(steps), max(steps), min(seqs),
        max(seqs), len(steps), lo, lo_step, hi, hi_step,
        steps, series.times, series.vals, seqs, series.idxs,
    )  # fmt: skip


def _chunk_fields(row: Row) -> list[bytes]:
    (
        run_id, name, rank, producer_id, time_lo, step_lo, step_hi, seq_lo, seq_hi, n,
        lo, lo_step, hi, hi_step, steps, times, vals, seqs, idxs,
    ) = row  # fmt: skip
    int8, float8 = pg.int8, pg.float8
    return [
        pg.text(run_id), pg.text(name), pg.int4(rank), pg.uuid_field(producer_id),
        pg.timestamptz(time_lo), int8(step_lo), int8(step_hi), int8(seq_lo), int8(seq_hi),
        pg.int4(n),
        float8(lo), int8(lo_step), float8(hi), int8(hi_step),
        pg.array(pg.INT8, steps), pg.timestamps(times), pg.array(pg.FLOAT8, vals),
        pg.array(pg.INT8, seqs), pg.array(pg.INT4, idxs),
    ]  # fmt: skip


def _copy_stream(rows: list[Row]) -> bytes:
    """Chunk rows (`chunk_row`) as one binary COPY stream of `CHUNK_COLUMNS`."""
    return pg.copy_data(len(CHUNK_COLUMNS), map(_chunk_fields, rows))


async def copy_chunks(conn: Connection, rows: list[Row]) -> None:
    """COPY chunk rows (`chunk_row`) into `metric_chunks` (their months' partitions must exist)."""
    await conn.copy_to_table(
        "metric_chunks", source=_once(_copy_stream(rows)), columns=CHUNK_COLUMNS, format="binary"
    )


async def _once(data: bytes) -> AsyncIterator[bytes]:
    """`data` as asyncpg takes a COPY source (bytes alone it would take for a file's path)."""
    yield data


def mark_arrays(ranges: dict[Session, list[int]]) -> list[list[Any]]:
    """`metric_marks` upsert arguments: each session's highest seq in the batch."""
    return as_arrays([(run, producer, hi) for (run, producer), (_, hi) in ranges.items()], 3)


class ChunkWriter:
    """Writes metric batches as chunks; remembers which monthly partitions exist."""

    def __init__(self) -> None:
        self._months: set[datetime] = set()

    async def new_values(self, conn: Connection, batch: MetricBatch) -> MetricBatch:
        """The values of `batch` not stored yet (their runs locked by the caller)."""
        ranges = batch.ranges
        marks = await conn.fetch(_MARKS, *as_arrays(list(ranges), 2))
        suspect = [
            (run, producer, ranges[(run, producer)][0], hi)
            for run, producer, hi in marks
            if ranges[(run, producer)][0] <= hi
        ]
        if not suspect:
            return batch
        stored = await conn.fetch(_STORED, *as_arrays(suspect, 4))
        return batch.without({(r[0], r[1], r[2], r[3]) for r in stored})

    async def write(self, conn: Connection, batch: MetricBatch) -> None:
        """COPY `batch` (new values only) into `metric_chunks`, creating the months it needs."""
        chunks = batch.chunk_rows()
        months = {month(chunk[4]) for chunk in chunks} - self._months
        if months:
            await conn.execute(_ENSURE_PARTITIONS, sorted(months))
        try:
            await copy_chunks(conn, chunks)
        except asyncpg.CheckViolationError as exc:
            if _NO_PARTITION not in str(exc):
                raise
            self._months.clear()
            raise DatabaseUnavailable(f"a month's partition went away: {exc}") from exc
        self._months |= months


def month(micros: int) -> datetime:
    """The first instant of the month (UTC) of `micros` since the Unix epoch."""
    return moment(micros).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
