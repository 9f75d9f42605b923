"""W&B's run on runstream: its step counter, `config`, `summary` and `define_metric`.

Step semantics are W&B's: a run counts steps from 0; `log(data)` adds `data` to the current
step's row and, unless `commit=False`, commits the row and moves to the next step; `log(data,
step=s)` with `s` above the current step commits the pending row and moves to `s` (the row at
`s` is committed by a later step or by `finish`); a step below the current one is refused with a
warning and its data dropped, as W&B does. A committed row's numbers are logged at its step
(a key set twice in one row keeps its last value, as in W&B's history); strings become text
metrics, `Image`s images at that step, `Table`s table rows. A metric given a `step_metric` by
`define_metric` is logged at that metric's current value instead (`define_metric("val/*",
step_metric="epoch")` plots validation against epochs).
"""

from __future__ import annotations

import fnmatch
import logging
import math
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any

from runstream.compat._media import log_png, say_once
from runstream.compat._wandb_media import Image, Table
from runstream.producer import Run

logger = logging.getLogger("runstream.compat")
SUMMARY_TABLE = "wandb-summary"


class Config(MutableMapping[str, Any]):
    """`run.config`: every key set is recorded as a param (nested keys as `a.b`)."""

    def __init__(self, run: Run | None) -> None:
        object.__setattr__(self, "_run", run)
        object.__setattr__(self, "_items", {})

    def __getitem__(self, key: str) -> Any:
        return self._items[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def __delitem__(self, key: str) -> None:
        del self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __getattr__(self, key: str) -> Any:
        try:
            return self._items[key]
        except KeyError:
            raise AttributeError(key) from None

    def __setattr__(self, key: str, value: Any) -> None:
        self.update({key: value})

    def update(self, other: Any = (), /, allow_val_change: bool | None = None, **kw: Any) -> None:
        """Set several keys (a dict, an argparse Namespace, or keywords)."""
        values = dict(vars(other) if hasattr(other, "__dict__") else other or {}, **kw)
        self._items.update(values)
        if self._run is not None and values:
            self._run.log_params(dict(_flat(values)))

    def as_dict(self) -> dict[str, Any]:
        """The config as a plain dict."""
        return dict(self._items)


def _flat(values: Mapping[str, Any], prefix: str = "") -> Iterator[tuple[str, Any]]:
    for key, value in values.items():
        if isinstance(value, Mapping) and value:
            yield from _flat(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


class WandbRun:
    """What `wandb.init()` returns; `None` for `run` means `mode="disabled"` (logs nothing)."""

    def __init__(self, run: Run | None, name: str | None) -> None:
        self._run = run
        self.name = name
        self.config = Config(run)
        self.summary: dict[str, Any] = {}
        self._step = 0
        self._row: dict[str, Any] = {}
        self._step_metrics: dict[str, str] = {}
        self._summaries: dict[str, str] = {}
        self._seen: dict[str, list[float]] = {}
        self._finished = False

    @property
    def handle(self) -> Run | None:
        """The runstream `Run` underneath (None when disabled), for anything W&B lacks."""
        return self._run

    @property
    def id(self) -> str:
        """The run id."""
        return self._run.run_id if self._run else "disabled"

    @property
    def project(self) -> str:
        """The experiment (W&B's project)."""
        return self._run.experiment if self._run else "disabled"

    @property
    def step(self) -> int:
        """The current step."""
        return self._step

    def __enter__(self) -> WandbRun:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, tb: Any
    ) -> None:
        self.finish(exit_code=0 if error is None else 1, error=error)

    def log(
        self, data: Mapping[str, Any], step: int | None = None, commit: bool | None = None
    ) -> None:
        """W&B's `log` (see the module's docstring for the step rules)."""
        if step is not None:
            if step < self._step:
                logger.warning(
                    "wandb.log: step %d is below the current step %d: data dropped, as W&B does",
                    step,
                    self._step,
                )
                return
            if step > self._step:
                self._commit()
                self._step = step
        self._row.update(_flat(data))
        if step is None and commit is not False:
            self._commit()
            self._step += 1
        elif commit:
            self._commit()

    def define_metric(
        self, name: str, step_metric: str | None = None, summary: str | None = None, **ignored: Any
    ) -> None:
        """Plot `name` (a glob such as `val/*`) against `step_metric`; keep a `summary` of it
        (min, max, mean, first, last) instead of its last value.
        """
        if step_metric is not None:
            self._step_metrics[name] = step_metric
        if summary is not None:
            self._summaries[name] = summary
        for key in ignored:
            say_once("wandb", f"define_metric({key}=...)", "only shapes W&B's UI: ignored")

    def _commit(self) -> None:
        row, self._row = self._row, {}
        if not row or self._run is None:
            return
        numbers: dict[str, dict[str, float]] = {}
        for key, value in row.items():
            self._log_one(key, value, row, numbers)
        for step_text, values in numbers.items():
            self._run.log_metrics(values, step=int(step_text))

    def _log_one(
        self, key: str, value: Any, row: dict[str, Any], numbers: dict[str, dict[str, float]]
    ) -> None:
        assert self._run is not None
        step = self._step_of(key, row)
        if isinstance(value, bool | int | float) or _is_scalar(value):
            number = float(value)
            numbers.setdefault(str(step), {})[key] = number
            self._seen.setdefault(key, []).append(number)
        elif isinstance(value, str):
            self._run.log_text(key, value, step=step)
        elif isinstance(value, Image):
            log_png(self._run, key, value.data, step)
        elif isinstance(value, Table):
            self._run.log_table(key, value.as_columns())
        elif value is not None:
            say_once("wandb", f"log of {type(value).__name__}", "has no runstream meaning: skipped")

    def _step_of(self, key: str, row: Mapping[str, Any]) -> int:
        for pattern, metric in self._step_metrics.items():
            if key != metric and fnmatch.fnmatchcase(key, pattern):
                seen = self._seen.get(metric)
                value = row.get(metric, seen[-1] if seen else None)
                if isinstance(value, int | float) and value >= 0 and float(value).is_integer():
                    return int(value)
        return self._step

    def finish(self, exit_code: int | None = None, quiet: bool | None = None, **kw: Any) -> None:
        """Commit the last row, write the summary, end the run (failed for a non-zero code)."""
        if self._finished:
            return
        self._finished = True
        self._commit()
        if self._run is None:
            return
        summary = self._summary()
        if summary:
            self._run.log_row(SUMMARY_TABLE, **summary)
        error = kw.get("error")
        if exit_code:
            self._run.fail(error or f"exit code {exit_code}", exit_code=exit_code)
        else:
            self._run.complete()

    def _summary(self) -> dict[str, Any]:
        result: dict[str, Any] = {}
        for key, values in self._seen.items():
            kind = next(
                (k for p, k in self._summaries.items() if fnmatch.fnmatchcase(key, p)), "last"
            )
            result[key] = _summarise(values, kind)
        result.update(self.summary)
        return {
            k: v for k, v in result.items() if v is None or isinstance(v, bool | int | float | str)
        }


def _summarise(values: list[float], kind: str) -> float | None:
    if kind == "min":
        return min(values)
    if kind == "max":
        return max(values)
    if kind == "mean":
        return math.fsum(values) / len(values)
    if kind == "first":
        return values[0]
    return values[-1]


def _is_scalar(value: Any) -> bool:
    return getattr(value, "ndim", None) == 0 and callable(getattr(value, "item", None))
