"""Cross-rank aggregates on /metrics against PostgreSQL, through the real persist and export.

A run of 12 ranks logs random values; persist stores them, the exporter (rank limit 4) shows them.
The aggregates on /metrics must equal SQL's min, avg, max and count over `metric_latest` (the
latest value of each rank, kept by persist); per-rank series are rank 0's and the straggler's only.
"""

from __future__ import annotations

import math
import random
import time

from runstream.schemas import kinds
from tests.harness import EventFactory, Harness, Samples, produce, scrape_until
from tests.integration.test_export import series

RANKS, STEPS, LIMIT, STRAGGLER = 12, 30, 4, 7
NAMES = ("loss", "grad_norm", "lr")
_LATEST = (
    "SELECT name, min(value), avg(value), max(value), count(*) FROM metric_latest "
    "WHERE run_id = $1 GROUP BY name"
)


def messages(ranks: list[EventFactory], rng: random.Random) -> list[tuple[bytes, bytes]]:
    """Every rank's steps (a millisecond apart: the latest by time is the last step)."""
    t0_us = time.time_ns() // 1000
    return [
        (r.key, r.event(kinds.METRICS, _values(step, rng), time_us=t0_us + step * 1000 + r.rank))
        for step in range(STEPS)
        for r in ranks
    ]


def straggling_flag(ranks: list[EventFactory]) -> list[tuple[bytes, bytes]]:
    """The watchdog's flag on one rank (it goes on the verdict topic)."""
    flag = {"straggling": True, "step": 3, "leader_step": STEPS - 1}
    straggler = ranks[STRAGGLER]
    return [(straggler.key, straggler.event(kinds.RANK_STRAGGLING, flag))]


def _values(step: int, rng: random.Random) -> dict[str, object]:
    items = [{"name": name, "value": rng.uniform(-1e3, 1e3)} for name in NAMES]
    return {"step": step, "values": items}


async def test_aggregates_on_metrics_equal_sql_over_the_latest_values(harness: Harness) -> None:
    harness.service("persist").start()
    export = harness.service("export", RUNSTREAM_EXPORT_RANKS_LIMIT=str(LIMIT)).start()
    run_id = f"agg-{harness.suffix}"
    ranks = [EventFactory(run_id, "scale", rank=r, world_size=RANKS) for r in range(RANKS)]
    await produce(harness.kafka, messages(ranks, random.Random(16)))
    await produce(harness.kafka, straggling_flag(ranks), topic=harness.kafka.verdict_topic)
    await harness.wait_for_rows(
        "SELECT count(*) FROM metrics", RANKS * STEPS * len(NAMES), within=120
    )

    def folded(page: Samples) -> bool:
        kinds_seen = {labels["kind"]: v for labels, v in page["runstream_consumer_events_total"]}
        return kinds_seen.get("metrics") == RANKS * STEPS and "rank_straggling" in kinds_seen

    page = await scrape_until(export.metrics_url(), folded, within=60)
    for name, low, mean, high, count in await harness.fetch(_LATEST, run_id):
        found = {f: series(page, f"runstream_metric_ranks_{f}", metric=name) for f in _PARTS}
        assert found["min"] == {("scale", run_id): low}
        assert found["max"] == {("scale", run_id): high}
        assert math.isclose(found["mean"][("scale", run_id)], mean, rel_tol=1e-12)
        assert series(page, "runstream_metric_ranks", metric=name) == {("scale", run_id): count}
    assert count == RANKS
    shown = {labels["rank"] for labels, _ in page["runstream_metric_value"]}
    assert shown == {"0", str(STRAGGLER)}
    assert series(page, "runstream_run_hidden_ranks") == {("scale", run_id): RANKS - 2}


_PARTS = ("min", "mean", "max")
