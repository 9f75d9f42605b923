"""PyTorch Lightning: `RunstreamLogger`, a `Trainer(logger=...)` that streams to a run.

    from runstream.producer.integrations.lightning import RunstreamLogger

    trainer = Trainer(max_epochs=10, logger=RunstreamLogger(experiment="mnist"))

- every value `self.log` sends (and Lightning's `epoch`) at the trainer's global step;
- `save_hyperparameters()` and `log_hyperparams` as params, nested keys flattened to `a/b`;
- the run ends with the trainer: `completed` after fit, `failed` with the traceback when a step
  raises, `canceled` on Ctrl-C or when Lightning stops for a signal (a run handed in with
  `run=` is the caller's: it is logged to and left open);
- under `strategy="ddp"` (or torchrun) every rank logs to the same run with its own rank, as
  `get_run()` does; see `runstream.producer.integrations` for how the run id reaches each rank.

Needs `pip install 'runstream[lightning]'` (the `lightning` package, `import lightning`).
"""

from __future__ import annotations

import sys
from argparse import Namespace
from collections.abc import Mapping
from typing import Any

from lightning.pytorch.loggers import Logger

from runstream._config import ProducerConfig
from runstream.producer._run import Run
from runstream.producer.integrations._common import flat_params, numbers, opener

_ENDINGS = {"success": "completed", "failed": "failed"}


class RunstreamLogger(Logger):
    """A Lightning logger that logs to a runstream run (from every rank)."""

    def __init__(
        self,
        experiment: str | None = None,
        name: str | None = None,
        *,
        run_id: str | None = None,
        run: Run | None = None,
        tags: Mapping[str, object] | None = None,
        config: ProducerConfig | None = None,
    ) -> None:
        super().__init__()
        self._opener = opener(experiment, name, run_id, run, tags=tags, config=config)

    @property
    def name(self) -> str | None:
        """The experiment (Lightning's `name`)."""
        return self._opener.experiment

    @property
    def version(self) -> str:
        """The run id (Lightning's `version`)."""
        return self._opener.run_id

    @property
    def experiment(self) -> Run:
        """This rank's `Run`, for anything else to log (tables, images, files)."""
        return self._opener.get()

    def log_metrics(self, metrics: Mapping[str, Any], step: int | None = None) -> None:
        """Lightning's metrics at its step (the trainer's global step)."""
        values = numbers(metrics)
        if values:
            self.experiment.log_metrics(values, step=step)

    def log_hyperparams(
        self, params: Mapping[str, Any] | Namespace, *args: Any, **kwargs: Any
    ) -> None:
        """Hyperparameters as params (nested keys as `a/b`), recorded by rank 0."""
        mapping = vars(params) if isinstance(params, Namespace) else dict(params)
        run = self.experiment
        if mapping and run.rank == 0:  # every rank has them; the run's announcer records them
            run.log_params(flat_params(mapping))

    def finalize(self, status: str) -> None:
        """End this rank's part of the run as the trainer ended (called once per `fit`/`test`)."""
        error = sys.exc_info()[1]
        state = _ENDINGS.get(status, "canceled")
        if isinstance(error, KeyboardInterrupt):
            state = "canceled"
        self._opener.end(state, error if state != "completed" else None)

    def save(self) -> None:
        """Nothing to save: events are already on their way."""
