"""Azure ML v1's `run.get_metrics()` shape, built from stored rows.

- a name logged once (number or string): that value;
- a name logged several times, or with `log_list`: the values in step order;
- a table (`log_row`, `log_table`): column -> value for a single row, column -> list of values
  (in logged order; None where a row lacks the column) for several;
- a file or image: a reference string `runstream://RUN_ID/files/NAME` (`Client.file` reads it).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runstream.consumers.read._runs import Row

AzureMetrics = dict[str, Any]


def scalar_metrics(records: Sequence[Any]) -> AzureMetrics:
    """Records of (name, value) in step order -> name -> value, or list of values."""
    grouped: dict[str, list[Any]] = {}
    for name, value in records:
        grouped.setdefault(name, []).append(value)
    return {name: values[0] if len(values) == 1 else values for name, values in grouped.items()}


def table_metric(rows: Sequence[Row]) -> dict[str, Any]:
    """A table's rows (each with `row_data`) -> column -> value (one row) or list of values."""
    datas = [row["row_data"] for row in rows]
    columns: dict[str, None] = {}
    for data in datas:
        columns.update(dict.fromkeys(data))
    if len(datas) == 1:
        return dict(datas[0])
    return {column: [data.get(column) for data in datas] for column in columns}


def file_reference(run_id: str, name: str) -> str:
    """What `get_metrics` shows for a file or image (Azure shows an artifact path)."""
    return f"runstream://{run_id}/files/{name}"
