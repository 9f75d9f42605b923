"""What `runstream watch` draws: one snapshot of a run read from PostgreSQL, as rich renderables.

The snapshot holds the run, its ranks, each metric's summary with its recent values (for the
sparkline; the lowest rank that logs the metric), the tail of the log and the database's clock.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from rich.console import Group, RenderableType
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from runstream.cli import _reads
from runstream.cli._connect import Connection
from runstream.cli._format import (
    age,
    between,
    duration,
    first_line,
    number,
    shown,
    sparkline,
    status_markup,
    terminal_safe,
)
from runstream.schemas import kinds

LAUNCHER_GRACE = 30.0
SETTLE = 2.0
SPARK_POINTS = 40
LOG_LINES = 10
MAX_METRICS = 20
_LEVEL_STYLES = {"ERROR": "red", "CRITICAL": "bold red", "WARNING": "yellow", "DEBUG": "dim"}


@dataclass(slots=True)
class Snapshot:
    """One reading of a run."""

    run: dict[str, Any]
    now: datetime
    ranks: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    recent: dict[str, list[float]] = field(default_factory=dict)
    log: list[dict[str, Any]] = field(default_factory=list)
    launcher: str | None = None

    @property
    def finished(self) -> bool:
        """Whether the run has ended (completed, failed or canceled) for good.

        A run under `runstream run` has ended once the launcher said so: its ranks may end it
        a moment earlier (a command's `get_run()` completes at exit before the exit code is
        known). Should the launcher never speak, `LAUNCHER_GRACE` seconds after the end do.
        Any other run has ended `SETTLE` seconds after its end, in case a launcher's events
        were overtaken by its command's.
        """
        if self.run["status"] not in kinds.TERMINAL_STATES:
            return False
        if self.launcher in kinds.TERMINAL_STATES:
            return True
        since = between(self.run["ended_at"], self.now)
        grace = SETTLE if self.launcher is None else LAUNCHER_GRACE
        return since is None or since > grace

    @property
    def elapsed(self) -> float | None:
        """Seconds from start to end, or to now while it runs."""
        return between(self.run["started_at"], self.run["ended_at"] or self.now)


async def take_snapshot(conn: Connection, run_id: str) -> Snapshot:
    """Read everything the view shows, for the run with exactly this id, as of one moment.

    One repeatable-read transaction: persist commits the run's status and the event that set it
    together, and reads spread over its commits could pair a launcher's final word with the
    status the run had just before it (and end the watch on the wrong verdict).
    """
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        return await _read_snapshot(conn, run_id)


async def _read_snapshot(conn: Connection, run_id: str) -> Snapshot:
    snapshot = Snapshot(run=await _reads.get_run(conn, run_id), now=await _reads.database_now(conn))
    snapshot.ranks = await _reads.ranks(conn, run_id)
    snapshot.metrics = await _reads.metric_summaries(conn, run_id)
    for row in snapshot.metrics[:MAX_METRICS]:
        snapshot.recent[row["name"]] = await _reads.recent_values(
            conn, run_id, row["name"], row["first_rank"], SPARK_POINTS
        )
    snapshot.log = await _reads.log_tail(conn, run_id, LOG_LINES)
    snapshot.launcher = await _reads.launcher_state(conn, run_id)
    return snapshot


def view(snapshot: Snapshot) -> RenderableType:
    """The whole live view."""
    parts: list[RenderableType] = [_header(snapshot)]
    if len(snapshot.ranks) > 1 or any(r["status"] != "running" for r in snapshot.ranks):
        parts.append(_ranks(snapshot))
    parts.append(_metrics(snapshot) if snapshot.metrics else Text("no metrics yet", style="dim"))
    if snapshot.log:
        parts.append(_log(snapshot))
    return Group(*parts)


def _header(snapshot: Snapshot) -> Panel:
    run = snapshot.run
    ranks = snapshot.ranks
    heartbeat = max((r["last_heartbeat_at"] for r in ranks if r["last_heartbeat_at"]), default=None)
    if run["ended_at"]:
        last = f"ended {age(run['ended_at'], snapshot.now)}"
    else:
        last = f"heard {age(heartbeat, snapshot.now)}"
    step = "-" if run["last_step"] is None else str(run["last_step"])
    line = Text.from_markup(
        f"{status_markup(run['status'])}   elapsed {duration(snapshot.elapsed)}   "
        f"step {step}   ranks {run['world_size']}   {last}"
    )
    title = f"run {shown(run['run_id'])} · {shown(run['experiment'])}"
    if run["name"]:
        title += f" · {shown(run['name'])}"
    params = run.get("params") or {}
    if params:
        pairs = "  ".join(f"{key}={value}" for key, value in sorted(params.items()))
        line.append("\nparams " + terminal_safe(first_line(pairs, 200)), style="dim")
    return Panel(line, title=title, title_align="left")


def _ranks(snapshot: Snapshot) -> Table:
    table = Table("rank", "status", "step", "heartbeat", "progress", box=None, padding=(0, 2))
    for rank in snapshot.ranks:
        status = status_markup(rank["status"]) + (
            " [yellow]straggling[/]" if rank["straggling"] else ""
        )
        table.add_row(
            str(rank["rank"]),
            status,
            number(rank["last_step"]),
            age(rank["last_heartbeat_at"], snapshot.now),
            age(rank["last_progress_at"], snapshot.now),
        )
    return table


def _metrics(snapshot: Snapshot) -> Table:
    table = Table("metric", "last", "step", "trend", "min", "max", box=None, padding=(0, 2))
    for row in snapshot.metrics[:MAX_METRICS]:
        table.add_row(
            shown(row["name"]),
            number(row["last"]),
            str(row["step"]),
            Text(sparkline(snapshot.recent.get(row["name"], [])), style="cyan"),
            number(row["min"]),
            number(row["max"]),
        )
    if len(snapshot.metrics) > MAX_METRICS:
        table.caption = f"{len(snapshot.metrics) - MAX_METRICS} more: `runstream show`"
    return table


def _log(snapshot: Snapshot) -> Panel:
    lines = Text()
    for record in snapshot.log:
        style = _LEVEL_STYLES.get(record["level"], "")
        stamp = record["time"].astimezone().strftime("%H:%M:%S")
        logger = terminal_safe(record["logger"])
        lines.append(f"{stamp} [{record['rank']}] {logger}: ", style="dim")
        lines.append(terminal_safe(first_line(record["message"], 200)) + "\n", style=style)
    lines.rstrip()
    return Panel(lines, title="log", title_align="left", border_style="dim")


def summary(snapshot: Snapshot) -> str:
    """The closing line (rich markup): how the run ended, after how long."""
    run = snapshot.run
    took = duration(snapshot.elapsed)
    text = f"run {shown(run['run_id'])} {status_markup(run['status'])} after {took}"
    if run["exit_code"] is not None:
        text += f" (exit code {run['exit_code']})"
    reason = run["error"] or run["status_reason"]
    if reason and run["status"] != "completed":
        text += f": {shown(first_line(reason, 200))}"
    return text
