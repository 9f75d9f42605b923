"""Long curves read at a point budget: each step bucket keeps its lowest and highest point.

A curve of (run, metric, rank) is cut into `points // 2` step buckets between its first and last
step; PostgreSQL returns, per bucket, the point of the lowest value and the point of the highest
(one point when they are the same), so every spike survives however many values the bucket held,
and at most `points` points travel per curve. The points are real ones: a value and the step it
was logged at (of equal values, the lowest step for the minimum and the highest for the maximum).
NaN is the highest value (PostgreSQL's order), so a NaN in a bucket shows as its maximum.

Buckets are made of chunks (`metric_chunks`), so that a long curve is read without opening most of
them: a chunk whose step span is no wider than a bucket belongs whole to the bucket of its first
step and gives its stored extremes (`lo`, `hi` and their steps) unopened; only a chunk wider than a
bucket is unnested, each value to the bucket of its own step. A bucket's edges are thus those of
equal step buckets moved to the chunk boundaries near them (by less than one chunk's span): its
minimum and maximum are exact over the values it holds, and every value is in exactly one bucket.
`min`/`max` of `ARRAY[value, step]` compare the value first, so the bucket's extreme and its step
come out of one hash aggregate, with no sort. (Steps travel as float8 inside that array: exact up
to 2^53.)
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from runstream._errors import ConfigError
from runstream.consumers._database import Connection

DOWNSAMPLED_COLUMNS = ("run_id", "name", "step", "rank", "value")

# The same form serves Grafana's panels (deploy/grafana), with its own scope and point budget.
_BUCKETS = """
    WITH chunks AS NOT MATERIALIZED (
        SELECT m.run_id, m.name, {series} AS rank, c.lo AS first, c.hi - c.lo + 1 AS span, m.lo,
               m.lo_step, m.hi, m.hi_step, m.steps, m.vals,
               (m.step_lo - c.lo) * {buckets} / (c.hi - c.lo + 1) AS bucket,
               CASE WHEN (m.step_hi - m.step_lo + 1) * {buckets} <= c.hi - c.lo + 1
                    THEN (m.step_lo - c.lo) * {buckets} / (c.hi - c.lo + 1)
                    ELSE (m.step_hi - c.lo) * {buckets} / (c.hi - c.lo + 1) END AS last_bucket
        FROM metric_chunks m JOIN curves c ON m.run_id = c.run_id AND m.name = c.name
        WHERE {rank}
    )
    SELECT run_id, name, rank, min(low) AS low, max(high) AS high
    FROM (
        SELECT run_id, name, rank, bucket,
               ARRAY[lo, lo_step::float8] AS low, ARRAY[hi, hi_step::float8] AS high
        FROM chunks WHERE bucket = last_bucket
        UNION ALL
        SELECT run_id, name, rank, (v.step - first) * {buckets} / span,
               ARRAY[v.value, v.step::float8], ARRAY[v.value, v.step::float8]
        FROM chunks, unnest(steps, vals) AS v(step, value) WHERE bucket <> last_bucket
    ) points
    GROUP BY run_id, name, rank, bucket
"""
_ENDS = """
    SELECT DISTINCT b.run_id, b.name, e.point[2]::bigint AS step, b.rank, e.point[1] AS value
    FROM buckets b, LATERAL (VALUES (b.low), (b.high)) AS e(point)
"""


def curves_sql(where: str) -> str:
    """The curves (run_id, name, lo, hi) that `metric_latest` rows matching `where` name, with
    their first and last step (from their chunks' step ranges).
    """
    return f"""
    SELECT l.run_id, l.name, s.lo, s.hi
    FROM (SELECT DISTINCT run_id, name FROM metric_latest WHERE {where}) l,
    LATERAL (SELECT min(step_lo) AS lo, max(step_hi) AS hi FROM metric_chunks
             WHERE run_id = l.run_id AND name = l.name) s
"""


_SCOPE = "run_id = ANY($1::text[]) AND ($2::text[] IS NULL OR name = ANY($2))"
_DOWNSAMPLED = f"""
WITH curves AS MATERIALIZED ({curves_sql(_SCOPE)}),
buckets AS ({
    _BUCKETS.format(series="m.rank", rank="($3::int IS NULL OR m.rank = $3)", buckets="$4::bigint")
})
{_ENDS}
ORDER BY run_id, name, step, rank, value
"""


def downsampled_sql(curves: str, rank: str, buckets: str, *, series: str = "m.rank") -> str:
    """The downsampling query, for dashboards whose scope is their own SQL: rows of
    `DOWNSAMPLED_COLUMNS`, unordered.

    `curves`: a query of (run_id, name, lo, hi), the curves and their first and last step
    (`curves_sql`; read once, materialized);
    `rank`: a condition on `m.rank`; `buckets`: an integer expression; `series`: what splits a
    curve (`m.rank`: one per rank; `NULL::int`: the ranks together, each bucket's lowest and
    highest across them).
    """
    buckets_sql = _BUCKETS.format(series=series, rank=rank, buckets=buckets)
    return f"WITH curves AS MATERIALIZED ({curves}),\nbuckets AS ({buckets_sql})\n{_ENDS}"


def buckets_for(points: int) -> int:
    """How many step buckets a budget of `points` per curve allows (each keeps up to two)."""
    if points < 2:
        raise ConfigError(f"points={points!r}: expected 2 or more (each bucket keeps two)")
    return points // 2


async def downsampled_history(
    conn: Connection,
    run_ids: Sequence[str],
    names: Sequence[str] | None,
    rank: int | None,
    points: int,
) -> list[asyncpg.Record]:
    """At most `points` points of each (run, metric, rank) curve: each step bucket's lowest and
    highest (`DOWNSAMPLED_COLUMNS`), in run, name, step, rank order.
    """
    scope = (list(run_ids), list(names) if names else None, rank)
    return await conn.fetch(_DOWNSAMPLED, *scope, buckets_for(points))
