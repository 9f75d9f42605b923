"""LightGBM: `RunstreamCallback`, a LightGBM callback that streams to a run.

    from runstream.producer.integrations.lightgbm import RunstreamCallback

    lgb.train(params, train, 100, valid_sets=[train, valid], valid_names=["train", "valid"],
              callbacks=[RunstreamCallback("churn")])

Each iteration's evaluation results as `<data>-<metric>` (`valid-l2`, `train-auc`) at step = the
iteration (from 0); LightGBM's params as params at the first iteration; the run completes after
the last iteration (a run handed in with `run=` is left open; early stopping ends training
without a last iteration, and the run then completes when the process exits). Works with the
scikit-learn API too (`LGBMRegressor().fit(..., callbacks=[...])`). Needs `runstream[lightgbm]`.
"""

from __future__ import annotations

from typing import Any

from runstream._config import ProducerConfig
from runstream.producer._run import Run
from runstream.producer.integrations._common import flat_params, opener


class RunstreamCallback:
    """Logs a LightGBM training's per-iteration evaluation metrics to a runstream run."""

    order = 25  # after LightGBM's own recorders (10, 20), before early stopping (30) may stop it
    before_iteration = False

    def __init__(
        self,
        experiment: str | None = None,
        name: str | None = None,
        *,
        run_id: str | None = None,
        run: Run | None = None,
        config: ProducerConfig | None = None,
    ) -> None:
        self._opener = opener(experiment, name, run_id, run, config=config)
        self._started = False

    @property
    def run_id(self) -> str:
        """The run this callback logs to."""
        return self._opener.run_id

    def __call__(self, env: Any) -> None:
        """Called by LightGBM after each iteration with its `CallbackEnv`."""
        run = self._opener.get()
        if not self._started:
            self._started = True
            run.log_params(flat_params(env.params))
        values = {
            f"{result[0]}-{result[1]}": float(result[2])
            for result in env.evaluation_result_list or []
        }
        if values:
            run.log_metrics(values, step=env.iteration)
        else:
            run.report_progress()
        if env.iteration + 1 >= env.end_iteration:
            self._opener.end("completed")
