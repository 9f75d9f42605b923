"""`runstream plot`: training curves against step, several runs and ranks overlaid, as a PNG.

A curve longer than `MAX_POINTS` is downsampled by PostgreSQL (the read layer,
`runstream.consumers.read`): each of `MAX_POINTS // 2` step buckets keeps its lowest and highest
point, so every spike shows and a 100M-point run never travels whole to the client.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console

from runstream._settings import Settings
from runstream.cli import _reads
from runstream.cli._connect import Connection, reader
from runstream.cli._exits import CommandError, reports_errors
from runstream.consumers.read import queries

MAX_POINTS = 5000


@dataclass(slots=True)
class Curve:
    """One line of the plot: a run's (or one of its ranks') values against step."""

    label: str
    steps: list[int] = field(default_factory=list)
    values: list[float] = field(default_factory=list)


@reports_errors
def plot(
    run_ids: Annotated[list[str], typer.Argument(metavar="RUN_ID...", help="Runs to overlay.")],
    metric: Annotated[str, typer.Option("--metric", "-m", help="The metric to plot.")],
    output: Annotated[
        Path | None, typer.Option("--output", "-o", help="PNG file (default: METRIC.png).")
    ] = None,
    rank: Annotated[int | None, typer.Option("--rank", "-r", min=0, help="Only this rank.")] = None,
    log_y: Annotated[bool, typer.Option("--log-y", help="Logarithmic value axis.")] = False,
) -> None:
    """Plot METRIC against step for each run (and each rank) into a PNG."""
    path = output or Path(re.sub(r"[^A-Za-z0-9._-]+", "_", metric) + ".png")
    curves = asyncio.run(_curves(run_ids, metric, rank))
    render(curves, metric, path, log_y=log_y)
    points = sum(len(c.steps) for c in curves)
    Console(stderr=True, highlight=False).print(
        f"wrote {path}: {len(curves)} curves, {points} points"
    )


async def _curves(run_ids: list[str], metric: str, rank: int | None) -> list[Curve]:
    async with reader(Settings().database(read_only=True)) as conn:
        runs = [await _reads.get_run(conn, run_id) for run_id in run_ids]
        curves: list[Curve] = []
        for run in runs:
            names = await _reads.metric_names(conn, [run["run_id"]])
            if metric not in names:
                raise _reads.unknown_metric(names, metric, f"run {run['run_id']}")
            curves += await _run_curves(conn, run, metric, rank, label_runs=len(runs) > 1)
        if not curves:
            raise CommandError(f"no values of {metric!r} for rank {rank}", "Try without --rank.")
        return curves


async def _run_curves(
    conn: Connection, run: dict[str, Any], metric: str, rank: int | None, *, label_runs: bool
) -> list[Curve]:
    run_id = run["run_id"]
    records = await queries.curve_points(conn, run_id, metric, rank, MAX_POINTS)
    by_rank: dict[int, Curve] = {}
    name = run["name"] or run_id[:12]
    for record in records:
        curve = by_rank.get(record["rank"])
        if curve is None:
            curve = by_rank[record["rank"]] = Curve(_label(name, record["rank"], label_runs))
        curve.steps.append(record["step"])
        curve.values.append(float(record["value"]))
    if len(by_rank) == 1 and label_runs:
        next(iter(by_rank.values())).label = name
    return [by_rank[r] for r in sorted(by_rank)]


def _label(run: str, rank: int, label_runs: bool) -> str:
    return f"{run} rank {rank}" if label_runs else f"rank {rank}"


def render(curves: list[Curve], metric: str, path: Path, *, log_y: bool = False) -> None:
    """Draw the curves and save them as a PNG at `path`."""
    try:
        from matplotlib.figure import Figure  # noqa: PLC0415 - optional dependency
        from matplotlib.ticker import MaxNLocator  # noqa: PLC0415
    except ImportError:
        raise CommandError(
            "plot needs matplotlib", "Install it: pip install 'runstream[analysis]'"
        ) from None
    figure = Figure(figsize=(9, 5), dpi=100, layout="constrained")
    axes = figure.subplots()
    for curve in curves:
        marker = "o" if len(curve.steps) < 30 else None
        axes.plot(curve.steps, curve.values, label=curve.label, linewidth=1.4, marker=marker)
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel("step")
    axes.set_ylabel(metric)
    axes.set_title(metric)
    axes.grid(alpha=0.3)
    if log_y:
        axes.set_yscale("log")
    if len(curves) > 1:
        axes.legend()
    figure.savefig(path, format="png")
