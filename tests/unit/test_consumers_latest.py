"""metric_latest summarized in Python follows PostgreSQL: newest by (time, seq, idx), NaN on top."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from runstream.consumers._latest import LATEST_COLUMNS, below, summarize
from runstream.consumers._rows import as_arrays

PID = uuid.uuid4()
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def row(name: str, step: int, value: float, *, seq: int, idx: int = 0, later: int = 0) -> Any:
    return ("r1", name, step, 0, T0 + timedelta(seconds=later), value, PID, seq, idx)


def test_each_series_gets_its_newest_value_count_min_and_max() -> None:
    rows = [
        row("loss", 1, 3.0, seq=1),
        row("acc", 1, 0.5, seq=1, idx=1),
        row("loss", 2, 1.0, seq=2, later=1),
        row("loss", 3, 2.0, seq=3, later=2),
    ]
    assert summarize(rows) == [
        ["r1", "acc", 0, 1, T0, 0.5, 1, 0.5, 0.5],
        ["r1", "loss", 0, 3, T0 + timedelta(seconds=2), 2.0, 3, 1.0, 3.0],
    ]


def test_the_newest_value_is_the_latest_time_not_the_latest_in_topic_order() -> None:
    rows = [row("loss", 9, 1.0, seq=5, later=5), row("loss", 2, 7.0, seq=6, later=1)]
    assert summarize(rows)[0][3:6] == [9, T0 + timedelta(seconds=5), 1.0]


def test_a_repeated_name_in_one_event_keeps_the_higher_index() -> None:
    rows = [row("loss", 1, 1.0, seq=1, idx=0), row("loss", 1, 2.0, seq=1, idx=1)]
    assert summarize(rows)[0][5] == 2.0


def test_nan_orders_above_every_number_as_in_postgresql() -> None:
    rows = [row("x", 1, 1.0, seq=1), row("x", 2, math.nan, seq=2), row("x", 3, -math.inf, seq=3)]
    (_run, _name, _rank, _step, _time, value, count, low, high) = summarize(rows)[0]
    assert (value, count, low) == (-math.inf, 3, -math.inf)
    assert math.isnan(high)
    only_nan = summarize([row("y", 1, math.nan, seq=1), row("y", 2, math.nan, seq=2)])[0]
    assert math.isnan(only_nan[7])
    assert math.isnan(only_nan[8])
    assert below(1.0, math.nan)
    assert not below(math.nan, 1.0)
    assert not below(math.nan, math.nan)


def test_summaries_become_one_array_per_column() -> None:
    latest = summarize([row("a", 1, 1.0, seq=1), row("b", 1, 2.0, seq=1, idx=1)])
    assert as_arrays(latest, len(LATEST_COLUMNS))[:3] == [["r1", "r1"], ["a", "b"], [0, 0]]
    assert as_arrays([], len(LATEST_COLUMNS)) == [[]] * len(LATEST_COLUMNS)
