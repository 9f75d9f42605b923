"""W&B's `Table` and `Image`, as runstream logs them: table rows and PNG images."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from runstream._errors import ValidationError
from runstream.compat._media import png_bytes, say_once

Cell = None | bool | int | float | str


class Image:
    """`wandb.Image(data_or_path, caption=None)`: an array, PIL image, figure or PNG path."""

    def __init__(self, data_or_path: Any, mode: str | None = None, caption: str | None = None):
        self.data = png_bytes("image", data_or_path)
        self.caption = caption
        if mode is not None:
            say_once("wandb", "Image(mode=...)", "is ignored: images are stored as given (PNG)")


class Table:
    """`wandb.Table(columns=, data=)` (or `dataframe=`), grown with `add_data(*row)`."""

    def __init__(
        self,
        columns: Sequence[str] | None = None,
        data: Sequence[Sequence[Any]] | None = None,
        dataframe: Any = None,
        **ignored: Any,
    ) -> None:
        if dataframe is not None:
            columns = [str(c) for c in dataframe.columns]
            data = dataframe.itertuples(index=False, name=None)
        self.columns = list(columns or [])
        self.data: list[list[Any]] = []
        for row in data or []:
            self.add_data(*row)

    def add_data(self, *row: Any) -> None:
        """Append one row (one value per column)."""
        if len(row) != len(self.columns):
            raise ValidationError("row", row, f"{len(self.columns)} values ({self.columns})")
        self.data.append(list(row))

    def add_column(self, name: str, data: Sequence[Any]) -> None:
        """Add a column with one value per existing row."""
        if len(data) != len(self.data):
            raise ValidationError(name, len(data), f"{len(self.data)} values, one per row")
        self.columns.append(name)
        for row, value in zip(self.data, data, strict=True):
            row.append(value)

    def as_columns(self) -> dict[str, list[Cell]]:
        """Column -> values, as `Run.log_table` takes them (other objects as their text)."""
        return {
            column: [_cell(row[index]) for row in self.data]
            for index, column in enumerate(self.columns)
        }


def _cell(value: Any) -> Cell:
    if value is None or isinstance(value, bool | int | float | str):
        return value
    item = getattr(value, "item", None)  # NumPy scalars
    if callable(item) and getattr(value, "ndim", None) == 0:
        converted = item()
        if isinstance(converted, bool | int | float | str):
            return converted
    say_once("wandb", f"Table cell of type {type(value).__name__}", "is stored as its text")
    return str(value)
