"""A batch's metric values as chunks and `metric_latest` summaries, following PostgreSQL's rules:
newest by (time, seq, idx), NaN above every number, ties of extremes by step."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from runstream.consumers._chunks import CHUNK_COLUMNS, CHUNK_VALUES, MetricBatch, Series
from runstream.consumers._latest import LATEST_COLUMNS
from runstream.consumers._rows import as_arrays
from runstream.schemas import event_record, kinds

PID = str(uuid.uuid4())
T0 = datetime(2026, 1, 1, tzinfo=UTC)
T0_US = int(T0.timestamp() * 1_000_000)


def batch_of(*events: tuple[int, int, dict[str, float], int]) -> MetricBatch:
    """A batch of Metrics events `(seq, step, values, seconds after T0)` of run r1, rank 0."""
    batch = MetricBatch()
    for seq, step, values, later in events:
        items = [{"name": n, "value": v} for n, v in values.items()]
        record = event_record(
            run_id="r1", experiment="e", rank=0, world_size=1, producer_id=PID, seq=seq,
            kind=kinds.METRICS, body={"step": step, "values": items},
            time_us=int((T0 + timedelta(seconds=later)).timestamp() * 1_000_000),
        )  # fmt: skip
        batch.add(record, record.body)  # type: ignore[arg-type]
    return batch


def columns(row: tuple[Any, ...]) -> dict[str, Any]:
    return dict(zip(CHUNK_COLUMNS, row, strict=True))


def test_values_of_one_series_and_session_become_one_chunk_with_their_identity() -> None:
    batch = batch_of((7, 3, {"a": 1.0, "b": 2.0}, 0), (8, 4, {"a": 0.5}, 1))
    chunks = {columns(r)["name"]: columns(r) for r in batch.chunk_rows()}
    a = chunks["a"]
    assert (a["run_id"], a["rank"], a["producer_id"], a["n"]) == ("r1", 0, PID, 2)
    assert (a["steps"], a["vals"], a["seqs"], a["idxs"]) == ([3, 4], [1.0, 0.5], [7, 8], [0, 0])
    assert (a["time_lo"], a["step_lo"], a["step_hi"], a["seq_lo"], a["seq_hi"]) == (
        T0_US,
        3,
        4,
        7,
        8,
    )
    assert a["times"] == [T0_US, T0_US + 1_000_000]
    assert (chunks["b"]["idxs"], chunks["b"]["seqs"]) == ([1], [7])
    assert batch.count() == 3
    assert batch.ranges == {("r1", PID): [7, 8]}


def test_an_event_delivered_twice_in_one_batch_counts_once() -> None:
    batch = batch_of((7, 3, {"a": 1.0}, 0), (7, 3, {"a": 1.0}, 0))
    assert batch.count() == 1


def test_a_long_series_is_cut_into_chunks_of_at_most_chunk_values() -> None:
    batch = batch_of(*((seq, seq, {"a": float(seq)}, 0) for seq in range(CHUNK_VALUES + 5)))
    assert [columns(r)["n"] for r in batch.chunk_rows()] == [CHUNK_VALUES, 5]


def test_values_already_stored_are_left_out() -> None:
    batch = batch_of((7, 3, {"a": 1.0, "b": 2.0}, 0), (8, 4, {"a": 0.5}, 1))
    rest = batch.without({("r1", PID, 7, 1), ("r1", PID, 8, 0)})
    assert {k[1]: s.vals for k, s in rest.series.items()} == {"a": [1.0]}


def extremes(values: list[float], steps: list[int]) -> tuple[float, int, float, int]:
    n = len(values)
    return Series(steps, [T0_US] * n, values, list(range(n)), [0] * n).extremes()


def test_extremes_follow_postgresql_order_of_value_then_step() -> None:
    assert extremes([2.0, 1.0, 3.0, 1.0, 3.0], [1, 5, 2, 4, 9]) == (1.0, 4, 3.0, 9)
    lo, lo_step, hi, hi_step = extremes([1.0, math.nan, -math.inf, math.nan], [1, 2, 3, 4])
    assert (lo, lo_step, hi_step) == (-math.inf, 3, 4)
    assert math.isnan(hi)
    assert extremes([math.inf, -math.inf, 0.0], [1, 2, 3]) == (-math.inf, 2, math.inf, 1)
    only_nan = extremes([math.nan, math.nan], [3, 2])
    assert math.isnan(only_nan[0])
    assert (only_nan[1], only_nan[3]) == (2, 3)


def test_each_series_gets_its_newest_value_count_min_and_max() -> None:
    batch = batch_of((1, 1, {"loss": 3.0, "acc": 0.5}, 0), (2, 2, {"loss": 1.0}, 1))
    batch_more = batch_of((3, 3, {"loss": 2.0}, 2))
    for key, series in batch_more.series.items():
        for i in range(len(series.vals)):
            batch.series[key].append(
                series.steps[i], series.times[i], series.vals[i], series.seqs[i], series.idxs[i]
            )
    assert batch.latest() == [
        ["r1", "acc", 0, 1, T0, 0.5, 1, 0.5, 0.5],
        ["r1", "loss", 0, 3, T0 + timedelta(seconds=2), 2.0, 3, 1.0, 3.0],
    ]


def test_the_newest_value_is_the_latest_time_not_the_latest_in_topic_order() -> None:
    batch = batch_of((5, 9, {"loss": 1.0}, 5), (6, 2, {"loss": 7.0}, 1))
    assert batch.latest()[0][3:6] == [9, T0 + timedelta(seconds=5), 1.0]


def test_a_repeated_name_in_one_event_keeps_the_higher_index() -> None:
    batch = MetricBatch()
    record = event_record(
        run_id="r1", experiment="e", rank=0, world_size=1, producer_id=PID, seq=1,
        kind=kinds.METRICS,
        body={"step": 1, "values": [{"name": "loss", "value": v} for v in (1.0, 2.0)]},
        time_us=int(T0.timestamp() * 1_000_000),
    )  # fmt: skip
    batch.add(record, record.body)  # type: ignore[arg-type]
    assert batch.latest()[0][5] == 2.0


def test_two_sessions_of_one_series_fold_into_one_summary() -> None:
    first = batch_of((1, 1, {"x": 5.0}, 3))
    other = str(uuid.uuid4())
    second = Series([2], [T0_US + 1_000_000], [math.nan], [1], [0])
    first.series[("r1", "x", 0, other)] = second
    (_run, _name, _rank, step, _time, value, count, low, high) = first.latest()[0]
    assert (step, value, count, low) == (1, 5.0, 2, 5.0)
    assert math.isnan(high)


def test_summaries_become_one_array_per_column() -> None:
    latest = batch_of((1, 1, {"a": 1.0, "b": 2.0}, 0)).latest()
    assert as_arrays(latest, len(LATEST_COLUMNS))[:3] == [["r1", "r1"], ["a", "b"], [0, 0]]
    assert as_arrays([], len(LATEST_COLUMNS)) == [[]] * len(LATEST_COLUMNS)
