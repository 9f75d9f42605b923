"""`metric_latest` of a batch's metric rows: newest value, count, min and max of each series.

Persist folds a batch here when every one of its metric rows was inserted (the fast path), so
PostgreSQL only upserts one row per series instead of sorting the batch. The rules are
PostgreSQL's, so both paths store the same thing: the newest row is the one with the highest
(time, seq, idx), and NaN orders above every number (`max` is NaN once a NaN was logged, `min`
skips it unless every value is NaN).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from runstream.consumers._rows import Row, unnest

LATEST_COLUMNS = ("run_id", "name", "rank", "step", "time", "value", "count", "min", "max")
LATEST_TYPES = (
    "text", "text", "int4", "int8", "timestamptz", "float8", "int8", "float8", "float8",
)  # fmt: skip

# A series' newest value moves only forward in time; counts add up; min and max widen.
MERGE_LATEST = """
ON CONFLICT (run_id, name, rank) DO UPDATE SET
    step = CASE WHEN excluded.time >= m.time THEN excluded.step ELSE m.step END,
    value = CASE WHEN excluded.time >= m.time THEN excluded.value ELSE m.value END,
    time = greatest(m.time, excluded.time),
    count = m.count + excluded.count,
    min = least(m.min, excluded.min),
    max = greatest(m.max, excluded.max)
"""


def upsert_latest(first: int) -> str:
    """Upsert `metric_latest` rows sent as arrays (parameters from `first`) into the table."""
    columns = ", ".join(LATEST_COLUMNS)
    return (
        f"INSERT INTO metric_latest AS m ({columns}) SELECT * FROM {unnest(LATEST_TYPES, first)}"
        + MERGE_LATEST
    )


def below(a: float, b: float) -> bool:
    """`a < b` in PostgreSQL's order of doubles, where NaN is above every number."""
    return a < b or (b != b and a == a)  # noqa: PLR0124 (x != x: NaN)


def summarize(rows: Iterable[Row]) -> list[list[Any]]:
    """One `metric_latest` row per series (run, metric, rank) of `rows`, sorted by series."""
    series: dict[tuple[str, str, int], list[Any]] = {}
    for run_id, name, step, rank, time, value, _producer, seq, idx in rows:
        key = (run_id, name, rank)
        found = series.get(key)
        if found is None:
            series[key] = [step, time, value, 1, value, value, (time, seq, idx)]
            continue
        order = (time, seq, idx)
        if order > found[6]:
            found[0], found[1], found[2], found[6] = step, time, value, order
        found[3] += 1
        if below(value, found[4]):
            found[4] = value
        if below(found[5], value):
            found[5] = value
    return [[*key, *found[:6]] for key, found in sorted(series.items())]
