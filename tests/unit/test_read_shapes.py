"""Azure's `get_metrics()` shape and the read API's frames, from rows (no database)."""

from __future__ import annotations

import math
from datetime import UTC, datetime

import pyarrow as pa
import pytest

from runstream import ConfigError
from runstream.consumers.read._frames import check_kind, convert, records_table
from runstream.consumers.read._history import METRIC_COLUMNS
from runstream.consumers.read._shapes import scalar_metrics, table_metric


def test_a_name_logged_once_is_its_value_and_several_times_a_list() -> None:
    pairs = [("acc", 0.9), ("loss", 0.5), ("loss", 0.25), ("note", "ok")]
    assert scalar_metrics(pairs) == {"acc": 0.9, "loss": [0.5, 0.25], "note": "ok"}


def test_a_table_is_columns_of_values_and_one_row_is_a_dict_of_cells() -> None:
    assert table_metric([{"row_data": {"x": 1, "y": 2}}]) == {"x": 1, "y": 2}
    rows = [{"row_data": {"x": 1}}, {"row_data": {"x": 2, "y": 5}}]
    assert table_metric(rows) == {"x": [1, 2], "y": [None, 5]}


def test_frames_keep_types_and_non_finite_values() -> None:
    now = datetime(2026, 12, 2, tzinfo=UTC)
    records = [("r", "loss", 0, 0, now, math.nan), ("r", "loss", 1, 1, now, -math.inf)]
    table = records_table(records, METRIC_COLUMNS)
    assert table.schema.field("rank").type == pa.int32()
    frame = convert(table, "pandas")
    assert math.isnan(frame["value"][0])
    assert frame["value"][1] == -math.inf
    assert convert(records_table([], METRIC_COLUMNS), "polars").shape == (0, 6)


def test_an_unknown_frame_kind_names_the_choices() -> None:
    with pytest.raises(ConfigError, match="pandas, polars, arrow"):
        check_kind("excel")
