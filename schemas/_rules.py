"""The rules an event must follow. The producer applies them in the caller's thread (bad input fails
where it was written); the consumers apply them again on decode (a breach becomes a dead letter).

Non-finite metric values (NaN, +Inf, -Inf) are accepted and stored: a diverging loss is exactly what
a user needs to see. Non-finite numbers are refused where they would be meaningless (time budgets).
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from runstream._errors import DecodeError, ValidationError
from runstream.schemas import _kinds as kinds
from runstream.schemas._bodies import (
    File,
    Heartbeat,
    Metrics,
    Params,
    RankStraggling,
    RunStarted,
    TableRow,
    Tags,
    Text,
)
from runstream.schemas._record import EventRecord

NAME_MAX = 250
RUN_ID_MAX = 128
VALUE_TEXT_MAX = 6000
MESSAGE_MAX = 64 * 1024
FILE_MAX = 512 * 1024
STEP_MAX = 2**63 - 1

# The largest message the topic takes (`max.message.bytes`, which deploy/local and compose set
# explicitly). An event's encoded size stays below it with room for the record batch around it.
TOPIC_MESSAGE_MAX = 1024 * 1024
EVENT_MAX = 1_000_000
# Encoded size limits by body kind; a kind not named here has `EVENT_MAX`.
EVENT_LIMITS: Mapping[str, int] = {
    kinds.METRICS: 512 * 1024,
    kinds.LOG_RECORD: MESSAGE_MAX + 16 * 1024,
    kinds.FILE: FILE_MAX + 64 * 1024,
}
# The field a user made too large, by kind: what `ValidationError` names.
_SIZE_FIELDS: Mapping[str, str] = {
    kinds.RUN_STARTED: "params and tags",
    kinds.METRICS: "metrics",
    kinds.PARAMS: "params",
    kinds.TAGS: "tags",
    kinds.TEXT: "value",
    kinds.TABLE_ROW: "columns",
    kinds.FILE: "data",
    kinds.LOG_RECORD: "logger and message",
}

_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]*\Z")


def event_limit(kind: str) -> int:
    """The largest encoded size, in bytes, of an event with a body of `kind`."""
    return EVENT_LIMITS.get(kind, EVENT_MAX)


def check_size(kind: str, encoded: bytes) -> bytes:
    """An encoded event within its kind's limit; else `ValidationError` naming field and limit."""
    limit = EVENT_LIMITS.get(kind, EVENT_MAX)
    if len(encoded) > limit:
        field = _SIZE_FIELDS.get(kind, "event")
        raise ValidationError(
            field,
            f"{len(encoded)} bytes encoded",
            f"at most {limit} bytes for a {kind.rpartition('.')[2]} event",
            rule="oversize",
        )
    return encoded


def check_name(field: str, name: object) -> str:
    """A metric, table, column, param, tag or file name: 1..250 printable characters."""
    if not isinstance(name, str):
        raise ValidationError(field, name, "a string", rule="bad_name")
    if not name or len(name) > NAME_MAX:
        raise ValidationError(field, name, f"1 to {NAME_MAX} characters", rule="bad_name")
    if not name.isprintable():
        raise ValidationError(field, name, "no control characters", rule="bad_name")
    return name


@functools.lru_cache(maxsize=4096)  # only ids of at most RUN_ID_MAX characters reach it
def _good_run_id(run_id: str) -> bool:
    return _RUN_ID.match(run_id) is not None


def check_run_id(run_id: object) -> str:
    """Run ids are Kafka keys, label values and path parts: letters, digits and `._:-`."""
    if not isinstance(run_id, str) or len(run_id) > RUN_ID_MAX or not _good_run_id(run_id):
        expected = f"1 to {RUN_ID_MAX} of letters, digits and ._:- (starting alphanumeric)"
        raise ValidationError("run_id", run_id, expected, rule="bad_identity")
    return run_id


def check_step(step: object) -> int:
    """Steps are whole numbers from 0; they may repeat and go backwards."""
    if isinstance(step, bool) or not isinstance(step, int):
        raise ValidationError("step", step, "a whole number", rule="bad_step")
    if step < 0 or step > STEP_MAX:
        raise ValidationError("step", step, "0 or more", rule="bad_step")
    return step


def check_value(name: str, value: object) -> float:
    """A metric value: a real number (bool is refused; NaN and infinities are kept)."""
    if isinstance(value, bool):
        raise ValidationError(name, value, "a number (not a bool)", rule="bad_value")
    if not isinstance(value, (int, float)):
        try:
            return float(value.__float__())  # type: ignore[attr-defined]
        except (AttributeError, TypeError, ValueError):
            raise ValidationError(name, value, "a number", rule="bad_value") from None
    return float(value)


def check_text(field: str, value: object, limit: int = VALUE_TEXT_MAX) -> str:
    """A string value of bounded size."""
    if not isinstance(value, str):
        raise ValidationError(field, value, "a string", rule="bad_value")
    if len(value) > limit:
        raise ValidationError(field, value, f"at most {limit} characters", rule="oversize")
    return value


def check_string_map(field: str, mapping: Mapping[str, str]) -> None:
    """Params and tags: checked names, bounded string values."""
    for key, value in mapping.items():
        check_name(f"{field} key", key)
        check_text(f"{field}[{key}]", value)


def check_seconds(field: str, value: object) -> float:
    """A time budget in seconds: finite and positive."""
    seconds = check_value(field, value)
    if not math.isfinite(seconds) or seconds <= 0:
        raise ValidationError(field, value, "a finite number of seconds above 0", rule="non_finite")
    return seconds


def _check_identity(event: EventRecord) -> None:
    check_run_id(event.run_id)
    check_name("experiment", event.experiment)
    if event.world_size < 1 or not 0 <= event.rank < event.world_size:
        expected = "0 <= rank < world_size"
        raise ValidationError("rank", (event.rank, event.world_size), expected, rule="bad_identity")
    if event.seq < 0:
        raise ValidationError("seq", event.seq, "0 or more", rule="bad_identity")


def _check_metrics(body: Metrics) -> None:
    check_step(body.step)
    for name, _ in body.values:
        check_name("metric name", name)


def _check_text(body: Text) -> None:
    check_step(body.step)
    check_name("name", body.name)


def _check_table_row(body: TableRow) -> None:
    check_name("table", body.table)
    for column in body.columns:
        check_name("column", column)


def _check_maps(body: Params | Tags | RunStarted) -> None:
    if not isinstance(body, Tags):
        check_string_map("params", body.params)
    if not isinstance(body, Params):
        check_string_map("tags", body.tags)


def _check_straggling(body: RankStraggling) -> None:
    check_step(body.step)


def _check_heartbeat(body: Heartbeat) -> None:
    if body.step is not None:
        check_step(body.step)
    if body.expect_next_in is not None:
        check_seconds("expect_next_in", body.expect_next_in)


def _check_file(body: File) -> None:
    if body.step is not None:
        check_step(body.step)
    check_name("name", body.name)
    if len(body.data) > FILE_MAX:
        expected = f"at most {FILE_MAX} bytes"
        raise ValidationError("data", len(body.data), expected, rule="oversize")


_BODY_RULES: Mapping[type[Any], Callable[[Any], None]] = {
    Metrics: _check_metrics,
    Text: _check_text,
    TableRow: _check_table_row,
    Params: _check_maps,
    Tags: _check_maps,
    RunStarted: _check_maps,
    Heartbeat: _check_heartbeat,
    File: _check_file,
    RankStraggling: _check_straggling,
}


def check_event(event: EventRecord) -> None:
    """Apply every rule to a decoded event; a breach raises `DecodeError` naming the rule."""
    try:
        _check_identity(event)
        rule = _BODY_RULES.get(type(event.body))
        if rule is not None:
            rule(event.body)
    except ValidationError as exc:
        raise DecodeError(exc.rule, str(exc)) from exc
