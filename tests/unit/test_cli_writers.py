"""Metric export formats: each reads back to the rows that were written."""

from __future__ import annotations

import csv
import io
import json
import math
import struct
from datetime import UTC, datetime

import pyarrow.parquet as pq
import pytest

from runstream.cli._writers import open_writer

Row = tuple[str, int, int, datetime, float]
T0 = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
ROWS: list[Row] = [
    ("loss", 0, 0, T0, 0.1),
    ("loss", 1, 1, T0, 1e-300),
    ("loss", 2, 0, T0, -0.0),
    ("loss", 3, 0, T0, math.inf),
    ("loss", 4, 0, T0, math.nan),
    ("métrique ✓", 2**62, 7, T0, 1 / 3),
]


def written(fmt: str, batches: list[list[Row]]) -> bytes:
    sink = io.BytesIO()
    writer = open_writer(fmt, sink)
    for batch in batches:
        writer.write(batch)
    writer.close()
    return sink.getvalue()


def same_float(a: float, b: float) -> bool:
    return (math.isnan(a) and math.isnan(b)) or struct.pack("<d", a) == struct.pack("<d", b)


def test_csv_has_a_header_and_floats_that_read_back_exactly() -> None:
    text = written("csv", [ROWS[:3], ROWS[3:]]).decode()
    lines = list(csv.reader(io.StringIO(text)))
    assert lines[0] == ["name", "step", "rank", "time", "value"]
    assert [line[0] for line in lines[1:]] == [r[0] for r in ROWS]
    assert lines[1][3] == T0.isoformat()
    assert all(same_float(float(line[4]), r[4]) for line, r in zip(lines[1:], ROWS, strict=True))


@pytest.mark.parametrize("batches", [[], [[]], [ROWS[:1]], [ROWS[:2], [], ROWS[2:]]])
def test_json_is_one_valid_array_whatever_the_batches(
    batches: list[list[Row]],
) -> None:
    decoded = json.loads(written("json", batches))
    expected = [r for batch in batches for r in batch]
    assert [(d["name"], d["step"], d["rank"]) for d in decoded] == [r[:3] for r in expected]


def test_json_lines_spell_non_finite_values_as_strings() -> None:
    lines = written("jsonl", [ROWS]).decode().splitlines()
    values = [json.loads(line)["value"] for line in lines]
    assert values[3:5] == ["Infinity", "NaN"]
    assert values[0] == 0.1


def test_parquet_round_trips_every_field_exactly() -> None:
    table = pq.read_table(io.BytesIO(written("parquet", [ROWS[:2], ROWS[2:]])))
    assert table.column_names == ["name", "step", "rank", "time", "value"]
    back = list(zip(*(table.column(c).to_pylist() for c in table.column_names), strict=True))
    assert [r[:4] for r in back] == [r[:4] for r in ROWS]
    assert all(same_float(a[4], b[4]) for a, b in zip(back, ROWS, strict=True))
