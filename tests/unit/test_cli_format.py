"""How the CLI shows numbers, durations, ages, sparklines and JSON."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest

from runstream.cli._format import (
    SPARK_BARS,
    age,
    dumps,
    duration,
    first_line,
    number,
    sparkline,
    unwrap,
)


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (None, "-"),
        (0.123456789, "0.123457"),
        (1234567.0, "1.23457e+06"),
        (3.0, "3"),
        (float("nan"), "nan"),
        (float("inf"), "inf"),
        (float("-inf"), "-inf"),
    ],
)
def test_numbers(value: float | None, shown: str) -> None:
    assert number(value) == shown


@pytest.mark.parametrize(
    ("seconds", "shown"),
    [
        (None, "-"),
        (0.25, "0.2s"),
        (9.96, "10.0s"),
        (42, "42s"),
        (125, "2m05s"),
        (3 * 3600 + 120, "3h02m"),
        (2 * 86400 + 4 * 3600, "2d04h"),
        (-3, "0.0s"),
    ],
)
def test_durations(seconds: float | None, shown: str) -> None:
    assert duration(seconds) == shown


def test_ages() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    assert age(now - timedelta(seconds=75), now) == "1m15s ago"
    assert age(None, now) == "never"


def test_sparkline_spans_the_bars_from_lowest_to_highest() -> None:
    line = sparkline([0.0, 0.5, 1.0])
    assert line == SPARK_BARS[0] + SPARK_BARS[4] + SPARK_BARS[-1]


def test_sparkline_of_flat_empty_and_non_finite_values() -> None:
    assert sparkline([2.0, 2.0]) == SPARK_BARS[3] * 2
    assert sparkline([]) == ""
    assert sparkline([1.0, math.nan, 3.0, math.inf]) == SPARK_BARS[0] + "·" + SPARK_BARS[-1] + "·"
    assert sparkline([math.nan]) == "·"


def test_json_is_strict_and_carries_times_ids_and_non_finite_numbers() -> None:
    run = uuid.UUID(int=1)
    value = {
        "at": datetime(2026, 1, 1, tzinfo=UTC),
        "values": [math.nan, math.inf, -math.inf, 1.5],
        "id": run,
        "count": Decimal(3),
    }
    decoded = json.loads(dumps(value))
    assert decoded == {
        "at": "2026-01-01T00:00:00+00:00",
        "values": ["NaN", "Infinity", "-Infinity", 1.5],
        "id": str(run),
        "count": 3,
    }


def test_first_line_and_help_text() -> None:
    assert first_line("Traceback\n  more") == "Traceback"
    assert first_line("x" * 20, width=10) == "x" * 9 + "…"
    assert first_line(None) == ""
    assert unwrap("First line.\n\n    Second\n    paragraph.") == "First line.\n\nSecond paragraph."
