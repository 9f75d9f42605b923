"""Keras 3: `RunstreamCallback`, a `keras.callbacks.Callback` that streams to a run.

    from runstream.producer.integrations.keras import RunstreamCallback

    model.fit(x, y, epochs=10, validation_split=0.2, callbacks=[RunstreamCallback("mnist")])

- each epoch's logs (`loss`, `val_loss`, compiled metrics) at step = the epoch (from 0), as
  MLflow's Keras callback does; with `log_every_n_batches=N`, every N-th training batch's logs
  too, as `batch/<name>` at step = batches seen since training began;
- `fit`'s `epochs` and `steps` and the optimizer's config (`optimizer/learning_rate`…) as params;
- progress each batch (at most once a second), so a long epoch is not a stall;
- the run completes when `fit` returns (a run handed in with `run=` is left open); an exception
  that escapes `fit` fails it with the traceback (runstream's process hooks).

Any Keras 3 backend (`KERAS_BACKEND=torch` needs no TensorFlow). Needs `runstream[keras]`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import keras

from runstream._config import ProducerConfig
from runstream.producer._run import Run
from runstream.producer.integrations._common import flat_params, numbers, opener

PROGRESS_EVERY = 1.0


class RunstreamCallback(keras.callbacks.Callback):  # type: ignore[misc]
    """Logs a Keras `fit` to a runstream run."""

    def __init__(
        self,
        experiment: str | None = None,
        name: str | None = None,
        *,
        run_id: str | None = None,
        run: Run | None = None,
        log_every_n_batches: int | None = None,
        config: ProducerConfig | None = None,
    ) -> None:
        super().__init__()
        self._opener = opener(experiment, name, run_id, run, config=config)
        self._every = log_every_n_batches
        self._batches = 0
        self._last_progress = 0.0

    @property
    def run_id(self) -> str:
        """The run this callback logs to."""
        return self._opener.run_id

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        """Open the run; `fit`'s settings and the optimizer's config as params."""
        params = {k: v for k, v in (self.params or {}).items() if k in ("epochs", "steps")}
        optimizer = getattr(self.model, "optimizer", None)
        if optimizer is not None:
            config = optimizer.get_config()
            params |= flat_params(config, prefix="optimizer/")
        self._opener.get().log_params(flat_params(params))

    def on_train_batch_end(self, batch: int, logs: Mapping[str, Any] | None = None) -> None:
        """Progress; every N-th batch's logs when asked for."""
        self._batches += 1
        run = self._opener.get()
        if self._every and self._batches % self._every == 0:
            values = numbers(logs or {})
            run.log_metrics({f"batch/{k}": v for k, v in values.items()}, step=self._batches)
        now = time.monotonic()
        if now - self._last_progress >= PROGRESS_EVERY:
            self._last_progress = now
            run.report_progress()

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        """The epoch's logs at step = epoch."""
        values = numbers(logs or {})
        if values:
            self._opener.get().log_metrics(values, step=epoch)

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        """`fit` returned: the run completes."""
        self._opener.end("completed")
