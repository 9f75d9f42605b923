"""Rows as frames: Arrow tables (pyarrow), pandas or polars DataFrames.

Every frame is built as an Arrow table with a fixed schema first, so the three kinds hold the
same values with the same types: identifiers as strings, steps int64, ranks int32, times
timestamp[us, UTC], values float64 (NaN and ±Inf as stored).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from runstream._errors import ConfigError

if TYPE_CHECKING:
    import pyarrow

FrameKind = Literal["pandas", "polars", "arrow"]
FRAME_KINDS: tuple[FrameKind, ...] = ("pandas", "polars", "arrow")
_INSTALL = "pip install 'runstream[frames]'"


def check_kind(kind: str) -> FrameKind:
    """`kind` if it names a frame kind; a `ConfigError` naming the choices otherwise."""
    for known in FRAME_KINDS:
        if kind == known:
            return known
    raise ConfigError(f"frame={kind!r}: expected one of {', '.join(FRAME_KINDS)}")


def _pyarrow() -> Any:
    try:
        import pyarrow as arrow  # noqa: PLC0415 - optional dependency
    except ImportError as exc:
        raise ImportError(f"frames need pyarrow: {_INSTALL}") from exc
    return arrow


def _schema(columns: Sequence[str]) -> pyarrow.Schema:
    pa = _pyarrow()
    types = {
        "run_id": pa.string(),
        "name": pa.string(),
        "step": pa.int64(),
        "rank": pa.int32(),
        "ranks": pa.int32(),
        "time": pa.timestamp("us", tz="UTC"),
        "value": pa.float64(),
        "min": pa.float64(),
        "mean": pa.float64(),
        "max": pa.float64(),
    }
    schema: pyarrow.Schema = pa.schema([(c, types[c]) for c in columns])
    return schema


def records_table(records: Sequence[Any], columns: Sequence[str]) -> pyarrow.Table:
    """Records (tuples or asyncpg records in `columns` order) as an Arrow table."""
    pa = _pyarrow()
    schema = _schema(columns)
    values = list(zip(*records, strict=True)) if records else [() for _ in columns]
    arrays = [pa.array(v, type=f.type) for v, f in zip(values, schema, strict=True)]
    table: pyarrow.Table = pa.Table.from_arrays(arrays, schema=schema)
    return table


def dicts_table(rows: Sequence[dict[str, Any]]) -> pyarrow.Table:
    """Rows of varying keys as an Arrow table (columns in first-seen order; gaps are null)."""
    pa = _pyarrow()
    columns: dict[str, None] = {}
    for row in rows:
        columns.update(dict.fromkeys(row))
    table: pyarrow.Table = pa.Table.from_pylist([dict(row) for row in rows], schema=None)
    return table.select(list(columns)) if rows else pa.table({})


def convert(table: pyarrow.Table, kind: FrameKind) -> Any:
    """`table` as the frame kind asked for."""
    if kind == "arrow":
        return table
    if kind == "pandas":
        if importlib.util.find_spec("pandas") is None:
            raise ImportError(f"pandas frames need pandas: {_INSTALL}")
        return table.to_pandas()
    try:
        import polars  # noqa: PLC0415 - optional dependency
    except ImportError as exc:
        raise ImportError(f"polars frames need polars: {_INSTALL}") from exc
    return polars.from_arrow(table)
