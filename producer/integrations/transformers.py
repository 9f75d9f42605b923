"""Hugging Face Transformers: `RunstreamCallback`, a `TrainerCallback` that streams to a run.

    from runstream.producer.integrations.transformers import RunstreamCallback

    trainer = Trainer(model, args, ..., callbacks=[RunstreamCallback(experiment="glue")])

(put `report_to=[]` in the arguments to keep the Trainer from adding other trackers too).

- every `logs` dict the Trainer emits (train loss, learning rate, grad norm, `eval_*`, the final
  `train_*` figures) at the Trainer's global step, numbers only, names as the Trainer gives them;
- the training arguments as params, and the model's config as `model/…` params;
- progress while it trains and while it evaluates or saves: a long evaluation is not a stall.
  Each step, and each evaluation batch, reports progress (at most once a second); before an
  evaluation or a save it says how long the next one may take (`expect_next_in`: twice the
  longest one so far, at least `min_expect_next_in`), so the watchdog waits that long;
- the run completes when training ends; an exception that escapes `train()` fails it with the
  traceback (runstream's own process hooks, as for `start_run`). A run handed in with `run=`
  is the caller's: it is logged to and left open.

Under torchrun or Accelerate every process joins the run with its own rank (each reports its
progress and its end); the logs, which the Trainer has already gathered, come from the world's
process zero, as the Trainer itself shows them. Needs `pip install 'runstream[transformers]'`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments

from runstream._config import ProducerConfig
from runstream.producer._run import Run
from runstream.producer.integrations._common import flat_params, numbers, opener

PROGRESS_EVERY = 1.0


class RunstreamCallback(TrainerCallback):
    """Logs a Transformers `Trainer`'s metrics, arguments and progress to a runstream run."""

    def __init__(
        self,
        experiment: str | None = None,
        name: str | None = None,
        *,
        run_id: str | None = None,
        run: Run | None = None,
        tags: Mapping[str, object] | None = None,
        config: ProducerConfig | None = None,
        min_expect_next_in: float = 60.0,
    ) -> None:
        self._opener = opener(experiment, name, run_id, run, tags=tags, config=config)
        self._min_expect = min_expect_next_in
        self._longest_pause = 0.0  # the longest evaluation or save so far, in seconds
        self._paused_at: float | None = None
        self._last_progress = 0.0

    @property
    def run_id(self) -> str:
        """The run this callback logs to."""
        return self._opener.run_id

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Open the run; process zero records the arguments and the model's config as params."""
        run = self._opener.get()
        if not state.is_world_process_zero:
            return
        as_dict: Callable[[], dict[str, Any]] = args.to_dict
        params = flat_params(as_dict())
        model = kwargs.get("model")
        model_config = getattr(model, "config", None)
        if model_config is not None and hasattr(model_config, "to_dict"):
            params |= flat_params(model_config.to_dict(), prefix="model/")
        run.log_params(params)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        """The Trainer's logs at its global step (process zero)."""
        values = numbers(logs or {})
        if values and state.is_world_process_zero:
            self._opener.get().log_metrics(values, step=state.global_step)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Progress; before an evaluation or a save, how long it may take."""
        if control.should_evaluate or control.should_save:
            self._paused_at = time.monotonic()
            expect = max(self._min_expect, 2 * self._longest_pause)
            self._opener.get().report_progress(expect_next_in=expect)
            self._last_progress = self._paused_at
        else:
            self._progress()

    def on_prediction_step(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """An evaluation batch is progress too."""
        self._progress()

    def on_evaluate(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """An evaluation ended: remember how long it took."""
        self._resumed()

    def on_save(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """A checkpoint was written: remember how long the pause took."""
        self._resumed()

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        """Training ended: this rank's part of the run is completed."""
        self._opener.end("completed")

    def _progress(self) -> None:
        now = time.monotonic()
        if now - self._last_progress >= PROGRESS_EVERY:
            self._last_progress = now
            self._opener.get().report_progress()

    def _resumed(self) -> None:
        if self._paused_at is not None:
            self._longest_pause = max(self._longest_pause, time.monotonic() - self._paused_at)
        self._paused_at = None
        self._progress()
