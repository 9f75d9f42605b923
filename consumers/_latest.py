"""`metric_latest`: newest value, count, min and max of each series (run, metric, rank).

A batch's values are summarized in Python (`_chunks.MetricBatch.latest`), so PostgreSQL only
upserts one row per series. The rules are PostgreSQL's: the newest value is the one with the
highest (time, seq, idx), and NaN orders above every number (`max` is NaN once a NaN was logged,
`min` skips it unless every value is NaN).
"""

from __future__ import annotations

from runstream.consumers._rows import unnest

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
