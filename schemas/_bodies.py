"""The bodies of events, one typed record per body kind of `avro/event-v*.avsc`.

Each is a slots dataclass whose fields are the Avro record's, with the schema's defaults, and
whose `KIND` is the record's full name (`kinds.METRICS`…): a consumer reads `body.step`, and the
type checker knows which bodies have one. Not frozen: a frozen dataclass costs about four times as
much to build (every field set through `object.__setattr__`), and the consumers build one per
event; nothing changes a record once decoded (the watchdog stamps its receive time on a copy).
A metric value is a `(name, value)` pair, not a record of its own: a metrics event carries many,
and a pair is what the fast reader builds cheapest.

`body_from_fields` makes a body from the fields of its Avro record (what fastavro reads and what
the writers pass to `event_record`); `body_fields` is the inverse, for the Avro writer.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from typing import Any, ClassVar

from runstream.schemas import _kinds as kinds

MetricValue = tuple[str, float]
ColumnValue = None | bool | int | float | str


@dataclass(slots=True, kw_only=True)
class RunStarted:
    """A run (or a resumed run) announced by its rank 0 or its launcher."""

    KIND: ClassVar[str] = kinds.RUN_STARTED
    name: str | None = None
    params: dict[str, str]
    tags: dict[str, str]
    host: str
    pid: int
    command: str
    git_commit: str | None = None


@dataclass(slots=True, kw_only=True)
class Metrics:
    """Metric values at one step: `values` as `(name, value)` pairs."""

    KIND: ClassVar[str] = kinds.METRICS
    step: int
    values: list[MetricValue]


@dataclass(slots=True, kw_only=True)
class Params:
    """Params merged into the run's."""

    KIND: ClassVar[str] = kinds.PARAMS
    params: dict[str, str]


@dataclass(slots=True, kw_only=True)
class Tags:
    """Tags merged into the run's."""

    KIND: ClassVar[str] = kinds.TAGS
    tags: dict[str, str]


@dataclass(slots=True, kw_only=True)
class Text:
    """A string metric at one step."""

    KIND: ClassVar[str] = kinds.TEXT
    step: int
    name: str
    value: str


@dataclass(slots=True, kw_only=True)
class TableRow:
    """One row of a named table."""

    KIND: ClassVar[str] = kinds.TABLE_ROW
    table: str
    columns: dict[str, ColumnValue]


@dataclass(slots=True, kw_only=True)
class File:
    """An image or file, size-limited."""

    KIND: ClassVar[str] = kinds.FILE
    name: str
    media_type: str
    step: int | None = None
    data: bytes


@dataclass(slots=True, kw_only=True)
class LogRecord:
    """A log line of the training process."""

    KIND: ClassVar[str] = kinds.LOG_RECORD
    level: str
    logger: str
    message: str


@dataclass(slots=True, kw_only=True)
class Heartbeat:
    """The rank is alive; with `progress` or a step, it also moved on."""

    KIND: ClassVar[str] = kinds.HEARTBEAT
    step: int | None = None
    progress: bool = False
    expect_next_in: float | None = None


@dataclass(slots=True, kw_only=True)
class Status:
    """A whole-run status from the run, its launcher or the watchdog (`source`)."""

    KIND: ClassVar[str] = kinds.STATUS
    state: str
    reason: str | None = None
    exit_code: int | None = None
    source: str = "run"
    judged_through: int | None = None  # a verdict's: the run's last events-topic offset read


@dataclass(slots=True, kw_only=True)
class RankFinished:
    """One rank ended."""

    KIND: ClassVar[str] = kinds.RANK_FINISHED
    state: str
    reason: str | None = None
    exit_code: int | None = None


@dataclass(slots=True, kw_only=True)
class RankStraggling:
    """The watchdog's word on a rank that trails (or caught up)."""

    KIND: ClassVar[str] = kinds.RANK_STRAGGLING
    straggling: bool
    step: int
    leader_step: int
    judged_through: int | None = None  # the run's last events-topic offset the watchdog read


Body = (
    RunStarted
    | Metrics
    | Params
    | Tags
    | Text
    | TableRow
    | File
    | LogRecord
    | Heartbeat
    | Status
    | RankFinished
    | RankStraggling
)
BODY_TYPES: tuple[type[Body], ...] = (
    RunStarted,
    Metrics,
    Params,
    Tags,
    Text,
    TableRow,
    File,
    LogRecord,
    Heartbeat,
    Status,
    RankFinished,
    RankStraggling,
)
_BY_KIND: Mapping[str, type[Body]] = {cls.KIND: cls for cls in BODY_TYPES}
_FIELDS: Mapping[type[Body], tuple[str, ...]] = {
    cls: tuple(f.name for f in fields(cls)) for cls in BODY_TYPES
}


def _metrics(values: Mapping[str, Any]) -> Metrics:
    pairs = [(item["name"], item["value"]) for item in values["values"]]
    return Metrics(step=values["step"], values=pairs)


_READERS: Mapping[str, Callable[[Mapping[str, Any]], Body]] = {kinds.METRICS: _metrics}


def body_from_fields(kind: str, values: Mapping[str, Any]) -> Body:
    """The body of `kind` with the fields of its Avro record (a field it lacks raises TypeError)."""
    reader = _READERS.get(kind)
    if reader is not None:
        return reader(values)
    return _BY_KIND[kind](**values)


def body_fields(body: Body) -> dict[str, Any]:
    """The fields of `body` as the Avro writer takes them."""
    if isinstance(body, Metrics):
        return {"step": body.step, "values": [{"name": n, "value": v} for n, v in body.values]}
    return {name: getattr(body, name) for name in _FIELDS[type(body)]}
