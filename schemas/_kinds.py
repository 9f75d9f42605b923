"""Names of the body records and of run states, as they appear in decoded events."""

from __future__ import annotations

RUN_STARTED = "runstream.RunStarted"
METRICS = "runstream.Metrics"
PARAMS = "runstream.Params"
TAGS = "runstream.Tags"
TEXT = "runstream.Text"
TABLE_ROW = "runstream.TableRow"
FILE = "runstream.File"
LOG_RECORD = "runstream.LogRecord"
HEARTBEAT = "runstream.Heartbeat"
STATUS = "runstream.Status"
RANK_FINISHED = "runstream.RankFinished"
RANK_STRAGGLING = "runstream.RankStraggling"

BODY_KINDS = (
    RUN_STARTED,
    METRICS,
    PARAMS,
    TAGS,
    TEXT,
    TABLE_ROW,
    FILE,
    LOG_RECORD,
    HEARTBEAT,
    STATUS,
    RANK_FINISHED,
    RANK_STRAGGLING,
)

RUN_STATES = ("running", "completed", "failed", "canceled", "stalled", "lost")
TERMINAL_STATES = frozenset({"completed", "failed", "canceled"})
WATCHDOG_STATES = frozenset({"stalled", "lost"})


def _snake(kind: str) -> str:
    name = kind.rpartition(".")[2]
    return "".join("_" + c.lower() if c.isupper() else c for c in name).lstrip("_")


_SHORT = {kind: _snake(kind) for kind in BODY_KINDS}


def short_kind(kind: str) -> str:
    """`runstream.Metrics` -> `metrics`, the label value used in health metrics."""
    short = _SHORT.get(kind)
    return short if short is not None else _snake(kind)
