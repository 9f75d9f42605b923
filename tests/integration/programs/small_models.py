# ruff: noqa: PLC0415 - each framework is imported only by the function that trains with it
"""A few iterations of Keras (torch backend), XGBoost or LightGBM with runstream's callback; the
framework's own record of each iteration's metrics goes to a JSON file.

python small_models.py keras|xgboost|lightgbm RUN_ID OUT_DIR [none]
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "torch")

ROWS = np.random.default_rng(0).normal(size=(200, 4))
TARGET = ROWS @ np.array([1.0, -2.0, 0.5, 0.0]) + 0.1


def keras_fit(run_id: str, with_callback: bool) -> dict[str, Any]:
    import keras

    from runstream.producer.integrations.keras import RunstreamCallback

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(8), keras.layers.Dense(1)])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=0.01), loss="mse", metrics=["mae"])
    callbacks = [RunstreamCallback("keras", run_id=run_id)] if with_callback else []
    history = model.fit(
        ROWS, TARGET, epochs=3, batch_size=32, validation_split=0.25, verbose=0, callbacks=callbacks
    )
    return {name: list(map(float, values)) for name, values in history.history.items()}


def xgboost_fit(run_id: str, with_callback: bool) -> dict[str, Any]:
    import xgboost as xgb

    from runstream.producer.integrations.xgboost import RunstreamCallback

    params = {"max_depth": 2, "eta": 0.3, "objective": "reg:squarederror", "nthread": 1}
    train = xgb.DMatrix(ROWS[:150], label=TARGET[:150])
    valid = xgb.DMatrix(ROWS[150:], label=TARGET[150:])
    record: dict[str, Any] = {}
    callbacks = (
        [RunstreamCallback("xgboost", run_id=run_id, params=params)] if with_callback else []
    )
    xgb.train(
        params, train, 5, evals=[(train, "train"), (valid, "valid")], evals_result=record,
        verbose_eval=False, callbacks=callbacks,
    )  # fmt: skip
    return {f"{d}-{m}": values for d, metrics in record.items() for m, values in metrics.items()}


def lightgbm_fit(run_id: str, with_callback: bool) -> dict[str, Any]:
    import lightgbm as lgb

    from runstream.producer.integrations.lightgbm import RunstreamCallback

    params = {"objective": "regression", "num_leaves": 4, "verbose": -1, "num_threads": 1}
    train = lgb.Dataset(ROWS[:150], label=TARGET[:150])
    valid = lgb.Dataset(ROWS[150:], label=TARGET[150:], reference=train)
    record: dict[str, Any] = {}
    callbacks: list[Any] = [lgb.record_evaluation(record)]
    if with_callback:
        callbacks.append(RunstreamCallback("lightgbm", run_id=run_id))
    lgb.train(
        params, train, 5, valid_sets=[train, valid], valid_names=["train", "valid"],
        callbacks=callbacks,
    )  # fmt: skip
    return {f"{d}-{m}": values for d, metrics in record.items() for m, values in metrics.items()}


FITS = {"keras": keras_fit, "xgboost": xgboost_fit, "lightgbm": lightgbm_fit}

if __name__ == "__main__":
    kind, run_id, out = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    history = FITS[kind](run_id, with_callback=sys.argv[4:] != ["none"])
    (out / f"{kind}.json").write_text(json.dumps(history))
