"""W&B's logging API on runstream, switched to with one import line.

Change `import wandb` to

    import runstream.compat.wandb as wandb

and the script logs to runstream with W&B's meaning of each call:

- `init(project=, name=, config=, tags=, id=, group=, job_type=, notes=, mode=)` starts the run
  (project → experiment, id → run id, config → params, each tag → a tag, group, job type and
  notes → tags `wandb.group`, `wandb.job_type`, `wandb.notes`); `mode="disabled"` gives a run
  that logs nothing, as W&B's does. `wandb.run`, `wandb.config`, `wandb.summary` follow it.
- `log(data, step=None, commit=None)` with W&B's step counter (see `_wandb_run`), nested dicts
  as `a.b`; `Image` and `Table` values; `define_metric(name, step_metric=, summary=)`.
- `summary` (last value of each metric, or `define_metric`'s summary, overridden by what is set
  in it) is written at `finish` as one row of the table `wandb-summary`.
- `finish(exit_code=None)`: completed, or failed for a non-zero exit code; leaving `with
  wandb.init() as run:` by an exception fails the run with its traceback.
- `save(path)` attaches the file; `alert(title, text, level)` is a log record of the run.
  Calls that have no runstream meaning (`login`, `watch`, artifacts) do nothing and say so once
  at WARNING (logger `runstream.compat`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from runstream._errors import RunstreamError
from runstream.compat._media import say_once
from runstream.compat._wandb_media import Image, Table
from runstream.compat._wandb_run import Config, WandbRun
from runstream.producer import start_run

__all__ = [
    "Config",
    "Error",
    "Image",
    "Table",
    "WandbRun",
    "alert",
    "define_metric",
    "finish",
    "init",
    "log",
    "login",
    "save",
    "watch",
]


class Error(RunstreamError):
    """A call W&B refuses too (logging before `init`)."""


_current: list[WandbRun] = []
_LEVELS = {"WARN": "WARNING"}


def init(
    project: str | None = None,
    entity: str | None = None,
    name: str | None = None,
    config: Mapping[str, Any] | Any = None,
    tags: Sequence[str] | None = None,
    id: str | None = None,
    group: str | None = None,
    job_type: str | None = None,
    notes: str | None = None,
    mode: str | None = None,
    **ignored: Any,
) -> WandbRun:
    """Start a run (finishing the one this process had, as W&B does); it becomes `wandb.run`."""
    if _current:
        _current[-1].finish()
        _current.clear()
    for key in ignored:
        say_once("wandb", f"init({key}=...)", "has no runstream meaning: ignored")
    run_tags: dict[str, object] = dict.fromkeys(tags or (), "")
    extra = {"wandb.entity": entity, "wandb.group": group, "wandb.job_type": job_type}
    run_tags |= {k: v for k, v in (extra | {"wandb.notes": notes}).items() if v}
    disabled = (mode or os.environ.get("WANDB_MODE")) == "disabled"
    project = project or os.environ.get("WANDB_PROJECT")
    run = None if disabled else start_run(project, name, tags=run_tags, run_id=id)
    opened = WandbRun(run, name)
    if config:
        opened.config.update(config)
    _current.append(opened)
    return opened


def _run(call: str) -> WandbRun:
    if not _current:
        raise Error(f"You must call wandb.init() before wandb.{call}()")
    return _current[-1]


def log(data: Mapping[str, Any], step: int | None = None, commit: bool | None = None) -> None:
    """Log to `wandb.run` (see `WandbRun.log`)."""
    _run("log").log(data, step=step, commit=commit)


def define_metric(name: str, step_metric: str | None = None, **kwargs: Any) -> None:
    """`WandbRun.define_metric` on `wandb.run`."""
    _run("define_metric").define_metric(name, step_metric, **kwargs)


def finish(exit_code: int | None = None, quiet: bool | None = None) -> None:
    """Finish `wandb.run` (nothing when there is none)."""
    if _current:
        _current.pop().finish(exit_code=exit_code)


def save(glob_str: str | os.PathLike[str], base_path: str | None = None, **ignored: Any) -> None:
    """Attach the files that match (each at most runstream's file size limit)."""
    run = _run("save")
    path = Path(glob_str)
    matches = sorted(path.parent.glob(path.name)) if "*" in path.name else [path]
    for match in matches:
        if run.handle is not None:
            run.handle.upload_file(match.name, match)


def alert(title: str, text: str, level: str | None = None, **ignored: Any) -> None:
    """Record the alert as a log record of the run (level INFO, WARN or ERROR)."""
    run = _run("alert")
    if run.handle is not None:
        level_name = str(level or "INFO").upper()
        run.handle.log_record(
            _LEVELS.get(level_name, level_name), "wandb.alert", f"{title}: {text}"
        )


def login(*args: Any, **kwargs: Any) -> bool:
    """Nothing to log in to (said once)."""
    say_once("wandb", "login()", "has no runstream meaning: nothing to do")
    return True


def watch(*args: Any, **kwargs: Any) -> None:
    """Gradient and parameter histograms have no runstream meaning (said once)."""
    say_once("wandb", "watch()", "has no runstream meaning: nothing is watched")


def __getattr__(name: str) -> Any:
    """`wandb.run`, `wandb.config` and `wandb.summary` follow the current run."""
    if name == "run":
        return _current[-1] if _current else None
    if name in ("config", "summary"):
        return getattr(_run(name), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
