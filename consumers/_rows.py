"""Decoded events as rows of the history tables, ready for COPY into the staging tables.

Metric values are not rows: they are gathered into chunks (`_chunks.MetricBatch`).

Every row carries the event identity (producer_id, seq[, idx]). Text that PostgreSQL cannot store
(NUL characters; NaN and infinities inside jsonb) is made storable here rather than failing the
batch: a NUL character becomes U+FFFD and non-finite numbers in table rows become the strings "NaN",
"Infinity" and "-Infinity".
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from runstream.schemas import (
    EventRecord,
    File,
    LogRecord,
    RankFinished,
    Status,
    TableRow,
    Text,
)

Row = tuple[Any, ...]

COLUMNS: dict[str, tuple[str, ...]] = {
    "text_metrics": ("run_id", "name", "step", "rank", "time", "value", "producer_id", "seq"),
    "table_rows": ("run_id", "table_name", "rank", "time", "row_data", "producer_id", "seq"),
    "files": (
        "run_id", "name", "rank", "step", "time", "media_type", "size", "data",
        "producer_id", "seq",
    ),
    "log_records": (
        "run_id", "rank", "time", "level", "logger", "message", "producer_id", "seq",
    ),
    "status_events": (
        "run_id", "rank", "time", "state", "reason", "exit_code", "source", "producer_id", "seq",
    ),
}  # fmt: skip


@dataclass(slots=True)
class HistoryRows:
    """The rows one batch adds to each history table, in topic order."""

    tables: dict[str, list[Row]] = field(default_factory=lambda: {t: [] for t in COLUMNS})

    def add(self, event: EventRecord) -> None:
        """Add the rows of one event (events without history rows add nothing)."""
        builder = _BUILDERS.get(type(event.body))
        if builder is not None:
            table, rows = builder(event, event.body)
            self.tables[table].extend(rows)

    def non_empty(self) -> dict[str, list[Row]]:
        """The tables that received rows."""
        return {table: rows for table, rows in self.tables.items() if rows}

    def count(self) -> int:
        """Rows over all tables."""
        return sum(len(rows) for rows in self.tables.values())


def unnest(types: Sequence[str], first: int) -> str:
    """`unnest($first::type[], …)`: rows sent as one array per column, parameters from `first`."""
    arrays = ", ".join(f"${n}::{kind}[]" for n, kind in enumerate(types, start=first))
    return f"unnest({arrays})"


def as_arrays(rows: Sequence[Sequence[Any]], width: int) -> list[list[Any]]:
    """`rows` as `width` lists, one per column: the arguments of an `unnest` of that width."""
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


def storable(text: str | None) -> str | None:
    """`text` without the NUL characters PostgreSQL refuses."""
    if text is None or "\x00" not in text:
        return text
    return text.replace("\x00", "\ufffd")


def json_storable(mapping: Mapping[str, Any]) -> str:
    """A JSON object PostgreSQL's jsonb accepts (no NaN, no infinities, no NULs)."""
    return json.dumps({storable(k): _json_value(v) for k, v in mapping.items()})


def _json_value(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, str):
        return storable(value)
    return value


def _text(event: EventRecord, body: Text) -> tuple[str, list[Row]]:
    row = (
        event.run_id, body.name, body.step, event.rank, event.time,
        storable(body.value), event.producer_id, event.seq,
    )  # fmt: skip
    return "text_metrics", [row]


def _table_row(event: EventRecord, body: TableRow) -> tuple[str, list[Row]]:
    row = (
        event.run_id, body.table, event.rank, event.time,
        json_storable(body.columns), event.producer_id, event.seq,
    )  # fmt: skip
    return "table_rows", [row]


def _file(event: EventRecord, body: File) -> tuple[str, list[Row]]:
    data = body.data
    row = (
        event.run_id, body.name, event.rank, body.step, event.time,
        storable(body.media_type), len(data), data, event.producer_id, event.seq,
    )  # fmt: skip
    return "files", [row]


def _log_record(event: EventRecord, body: LogRecord) -> tuple[str, list[Row]]:
    row = (
        event.run_id, event.rank, event.time, storable(body.level),
        storable(body.logger), storable(body.message), event.producer_id, event.seq,
    )  # fmt: skip
    return "log_records", [row]


def _status(event: EventRecord, body: Status | RankFinished) -> tuple[str, list[Row]]:
    source = body.source if isinstance(body, Status) else "rank"
    row = (
        event.run_id, event.rank, event.time, body.state, storable(body.reason),
        body.exit_code, storable(source), event.producer_id, event.seq,
    )  # fmt: skip
    return "status_events", [row]


_BUILDERS: dict[type[Any], Callable[[EventRecord, Any], tuple[str, list[Row]]]] = {
    Text: _text,
    TableRow: _table_row,
    File: _file,
    LogRecord: _log_record,
    Status: _status,
    RankFinished: _status,
}
