"""Writers of metric rows (name, step, rank, time, value), one batch at a time, to a byte stream.

- CSV: a header line, then one line per value; floats as Python writes them (shortest text that
  reads back to the same double), non-finite ones as `nan`, `inf`, `-inf`.
- JSON: one array of objects, written as it goes; JSON lines: one object per line. Non-finite
  values are the strings "NaN", "Infinity", "-Infinity" (strict JSON has no such numbers).
- Parquet (pyarrow): name string, step int64, rank int32, time timestamp[us, UTC], value float64;
  one row group per batch; reads back exactly.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Sequence
from typing import Any, BinaryIO, Protocol

from runstream.cli._exits import CommandError
from runstream.cli._format import json_value

Batch = Sequence[Any]  # rows with name, step, rank, time, value (asyncpg records or tuples)
COLUMNS = ("name", "step", "rank", "time", "value")


class MetricWriter(Protocol):
    """Takes batches of rows, then finishes the output."""

    def write(self, rows: Batch) -> None:
        """Write one batch."""

    def close(self) -> None:
        """Finish the output (footer, closing bracket); the stream stays open."""


class CsvWriter:
    """CSV with a header."""

    def __init__(self, sink: BinaryIO) -> None:
        self._text = io.TextIOWrapper(sink, encoding="utf-8", newline="", write_through=True)
        self._csv = csv.writer(self._text)
        self._csv.writerow(COLUMNS)

    def write(self, rows: Batch) -> None:
        """Write one batch."""
        self._csv.writerows(
            (name, step, rank, time.isoformat(), value) for name, step, rank, time, value in rows
        )

    def close(self) -> None:
        """Flush, and leave `sink` open."""
        self._text.flush()
        self._text.detach()


class JsonWriter:
    """A JSON array (`lines=False`) or JSON lines (`lines=True`)."""

    def __init__(self, sink: BinaryIO, *, lines: bool) -> None:
        self._sink = sink
        self._lines = lines
        self._opening = "" if lines else "[\n"

    def write(self, rows: Batch) -> None:
        """Write one batch."""
        if not rows:
            return
        objects = (json.dumps(json_value(dict(zip(COLUMNS, r, strict=True)))) for r in rows)
        if self._lines:
            text = "".join(f"{o}\n" for o in objects)
        else:
            text = self._opening + ",\n".join(objects)
            self._opening = ",\n"
        self._sink.write(text.encode())

    def close(self) -> None:
        """Close the array."""
        if not self._lines:
            self._sink.write(b"[]\n" if self._opening.startswith("[") else b"\n]\n")
        self._sink.flush()


class ParquetWriter:
    """Parquet through pyarrow, one row group per batch."""

    def __init__(self, sink: BinaryIO) -> None:
        try:
            import pyarrow as pa  # noqa: PLC0415 - optional dependency
            import pyarrow.parquet as pq  # noqa: PLC0415
        except ImportError:
            raise CommandError(
                "--format parquet needs pyarrow", "Install it: pip install 'runstream[analysis]'"
            ) from None
        self._pa = pa
        fields: list[pa.Field[Any]] = [
            pa.field("name", pa.string()),
            pa.field("step", pa.int64()),
            pa.field("rank", pa.int32()),
            pa.field("time", pa.timestamp("us", tz="UTC")),
            pa.field("value", pa.float64()),
        ]
        self.schema = pa.schema(fields)
        self._writer = pq.ParquetWriter(sink, self.schema, compression="zstd")

    def write(self, rows: Batch) -> None:
        """Write one batch as one row group."""
        columns = [[r[i] for r in rows] for i in range(len(COLUMNS))]
        table = self._pa.Table.from_arrays(
            [self._pa.array(c, type=f.type) for c, f in zip(columns, self.schema, strict=True)],
            schema=self.schema,
        )
        self._writer.write_table(table)

    def close(self) -> None:
        """Write the footer."""
        self._writer.close()


def open_writer(fmt: str, sink: BinaryIO) -> MetricWriter:
    """The writer of `fmt` (csv, json, jsonl, parquet) on `sink`."""
    if fmt == "csv":
        return CsvWriter(sink)
    if fmt in ("json", "jsonl"):
        return JsonWriter(sink, lines=fmt == "jsonl")
    if fmt == "parquet":
        return ParquetWriter(sink)
    raise CommandError(f"unknown format {fmt!r}", "Use csv, json, jsonl or parquet.")
