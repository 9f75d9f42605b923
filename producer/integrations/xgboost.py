"""XGBoost: `RunstreamCallback`, an `xgboost.callback.TrainingCallback` that streams to a run.

    from runstream.producer.integrations.xgboost import RunstreamCallback

    xgb.train(params, dtrain, 100, evals=[(dtrain, "train"), (dvalid, "valid")],
              callbacks=[RunstreamCallback("churn", params=params)])

Each iteration's evaluation results as `<data>-<metric>` (`train-rmse`, `valid-logloss`, the
names XGBoost prints and MLflow's autologging uses) at step = the iteration (from 0); the
`params` given as params; progress each iteration; the run completes after training (a run
handed in with `run=` is left open). Works with the scikit-learn API too
(`XGBRegressor(callbacks=[...])`). Needs `runstream[xgboost]`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import xgboost

from runstream._config import ProducerConfig
from runstream.producer._run import Run
from runstream.producer.integrations._common import flat_params, opener


class RunstreamCallback(xgboost.callback.TrainingCallback):
    """Logs an XGBoost training's per-iteration evaluation metrics to a runstream run."""

    def __init__(
        self,
        experiment: str | None = None,
        name: str | None = None,
        *,
        params: Mapping[str, Any] | None = None,
        run_id: str | None = None,
        run: Run | None = None,
        config: ProducerConfig | None = None,
    ) -> None:
        super().__init__()
        self._opener = opener(experiment, name, run_id, run, config=config)
        self._params = dict(params or {})

    @property
    def run_id(self) -> str:
        """The run this callback logs to."""
        return self._opener.run_id

    def before_training(self, model: Any) -> Any:
        """Open the run; record the params given."""
        run = self._opener.get()
        if self._params:
            run.log_params(flat_params(self._params))
        return model

    def after_iteration(self, model: Any, epoch: int, evals_log: Any) -> bool:
        """This iteration's last value of each evaluation metric; never stops training."""
        values = {
            f"{data}-{metric}": float(_last(history))
            for data, metrics in evals_log.items()
            for metric, history in metrics.items()
        }
        run = self._opener.get()
        if values:
            run.log_metrics(values, step=epoch)
        else:
            run.report_progress()
        return False

    def after_training(self, model: Any) -> Any:
        """Training ended: the run completes."""
        self._opener.end("completed")
        return model


def _last(history: Any) -> float:
    """The newest entry (a value, or (mean, std) in `xgb.cv`: the mean)."""
    last = history[-1]
    return float(last[0] if isinstance(last, tuple) else last)
