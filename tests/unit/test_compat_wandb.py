"""W&B's step rules in `runstream.compat.wandb`, checked against a recorder of the run's calls."""

from __future__ import annotations

from typing import Any, cast

import pytest

from runstream import ValidationError
from runstream.compat._wandb_run import SUMMARY_TABLE, WandbRun
from runstream.compat.wandb import Table
from runstream.producer import Run


class Recorder:
    """Records what a `WandbRun` asks of its `Run`."""

    def __init__(self) -> None:
        self.metrics: list[tuple[int, dict[str, float]]] = []
        self.calls: list[tuple[str, Any]] = []

    def log_metrics(self, values: dict[str, float], step: int) -> None:
        self.metrics.append((step, values))

    def __getattr__(self, name: str) -> Any:
        def record(*args: Any, **kwargs: Any) -> None:
            self.calls.append((name, (args, kwargs)))

        return record


def opened() -> tuple[WandbRun, Recorder]:
    recorder = Recorder()
    return WandbRun(cast(Run, recorder), "test"), recorder


def test_each_log_is_a_step_and_commit_false_joins_the_next() -> None:
    run, recorder = opened()
    run.log({"a": 1})
    run.log({"a": 2})
    run.log({"b": 3}, commit=False)
    run.log({"a": 4})
    assert recorder.metrics == [(0, {"a": 1.0}), (1, {"a": 2.0}), (2, {"b": 3.0, "a": 4.0})]
    assert run.step == 3


def test_an_explicit_step_keeps_one_row_and_a_lower_step_is_dropped(
    caplog: pytest.LogCaptureFixture,
) -> None:
    run, recorder = opened()
    run.log({"a": 1}, step=5)
    run.log({"a": 2, "b": 1}, step=5)  # the same row: a keeps its last value
    run.log({"c": 1}, step=3)
    assert recorder.metrics == []  # the row at 5 is still open
    run.log({"d": 1}, step=6)
    assert recorder.metrics == [(5, {"a": 2.0, "b": 1.0})]
    assert "step 3 is below the current step 5" in caplog.text
    run.finish()
    assert recorder.metrics[-1] == (6, {"d": 1.0})


def test_define_metric_logs_against_its_step_metric() -> None:
    run, recorder = opened()
    run.define_metric("val/*", step_metric="epoch")
    run.log({"epoch": 0, "val/loss": 0.9})
    run.log({"train/loss": 0.5})
    run.log({"epoch": 1, "val/loss": 0.7})
    assert recorder.metrics == [
        (0, {"epoch": 0.0, "val/loss": 0.9}),  # one call per step of the row
        (1, {"train/loss": 0.5}),
        (2, {"epoch": 1.0}),
        (1, {"val/loss": 0.7}),
    ]


def test_the_summary_row_has_last_values_defined_summaries_and_what_was_set() -> None:
    run, recorder = opened()
    run.define_metric("loss", summary="min")
    for value in (0.5, 0.2, 0.4):
        run.log({"loss": value, "acc": 1 - value})
    run.summary["best_epoch"] = 1
    run.finish()
    rows = [args for name, (args, kwargs) in recorder.calls if name == "log_row"]
    assert rows == [(SUMMARY_TABLE,)]
    row = next(kwargs for name, (args, kwargs) in recorder.calls if name == "log_row")
    assert row == {"loss": 0.2, "acc": 0.6, "best_epoch": 1}
    assert ("complete", ((), {})) in recorder.calls


def test_a_non_zero_exit_code_fails_the_run() -> None:
    run, recorder = opened()
    run.finish(exit_code=3)
    assert ("fail", (("exit code 3",), {"exit_code": 3})) in recorder.calls


def test_a_table_row_of_the_wrong_width_is_refused() -> None:
    table = Table(columns=["x", "y"])
    with pytest.raises(ValidationError, match="2 values"):
        table.add_data(1)
    table.add_data(1, 2.0)
    assert table.as_columns() == {"x": [1], "y": [2.0]}


def test_a_disabled_run_logs_nothing() -> None:
    run = WandbRun(None, "off")
    run.log({"a": 1})
    run.config["lr"] = 0.1
    run.finish()
    assert (run.id, run.config["lr"]) == ("disabled", 0.1)
