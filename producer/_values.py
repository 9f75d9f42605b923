"""Turning what users pass (params, tags, table cells, errors) into checked event fields."""

from __future__ import annotations

import os
import socket
import sys
import traceback
from collections.abc import Mapping
from typing import Any

from runstream._errors import ValidationError
from runstream.producer._context import RunContext
from runstream.schemas import check_name, check_string_map, check_text, check_value

Cell = None | bool | int | float | str


def string_map(field: str, mapping: Mapping[str, object] | None) -> dict[str, str]:
    result = {
        str(k) if not isinstance(k, str) else k: v if isinstance(v, str) else str(v)
        for k, v in (mapping or {}).items()
    }
    check_string_map(field, result)
    return result


def table_row(columns: Mapping[str, object]) -> dict[str, Cell]:
    row: dict[str, Cell] = {}
    for column, value in columns.items():
        check_name("column", column)
        if value is None or isinstance(value, (bool, int, float)):
            if (
                isinstance(value, int)
                and not isinstance(value, bool)
                and not -(2**63) <= value < 2**63
            ):
                raise ValidationError(column, value, "a 64-bit integer", rule="bad_value")
            row[column] = value
        elif isinstance(value, str):
            row[column] = check_text(column, value)
        else:
            row[column] = check_value(column, value)
    return row


def run_started_body(
    context: RunContext, params: dict[str, str], tags: dict[str, str]
) -> dict[str, Any]:
    return {
        "name": context.name,
        "params": params,
        "tags": tags,
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "command": _printable_command(sys.argv)[:4096],
        "git_commit": None,
    }


def _printable_command(argv: list[str]) -> str:
    """The command line as text: what was not UTF-8 (a file name's bytes) shown as U+FFFD."""
    raw = " ".join(argv).encode("utf-8", "surrogatepass")
    return raw.decode("utf-8", "replace")


def describe_error(error: BaseException | str | None) -> str | None:
    """The reason text of a failure: the message, or the tail of the exception's traceback."""
    if error is None or isinstance(error, str):
        return error
    text = "".join(traceback.format_exception(error))
    return text[-4000:]
