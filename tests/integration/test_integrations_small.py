"""Keras (torch backend), XGBoost and LightGBM callbacks: a few iterations each on CPU, and every
per-iteration metric the framework recorded is in PostgreSQL at its iteration."""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

from tests.integration.support import Rows, wait_for_run

PROGRAM = Path(__file__).parent / "programs" / "small_models.py"


@pytest.mark.parametrize(
    ("kind", "names", "some_params"),
    [
        ("keras", {"loss", "mae", "val_loss", "val_mae"}, {"epochs": "3", "optimizer/name": "sgd"}),
        ("xgboost", {"train-rmse", "valid-rmse"}, {"max_depth": "2", "eta": "0.3"}),
        ("lightgbm", {"train-l2", "valid-l2"}, {"num_leaves": "4", "objective": "regression"}),
    ],
)
def test_every_iteration_metric_is_stored_at_its_iteration(
    kind: str,
    names: set[str],
    some_params: dict[str, str],
    run_env: dict[str, str],
    db: Rows,
    tmp_path: Path,
) -> None:
    run_id = f"{kind}-{uuid.uuid4().hex[:12]}"
    done = subprocess.run(
        [sys.executable, str(PROGRAM), kind, run_id, str(tmp_path)],
        env=run_env | {"KERAS_BACKEND": "torch", "PYTHONWARNINGS": "ignore"},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    history = json.loads((tmp_path / f"{kind}.json").read_text())
    assert set(history) == names
    expected = sorted(
        (name, step, value) for name, values in history.items() for step, value in enumerate(values)
    )
    wait_for_run(db, run_id, metrics=len(expected))
    rows = db.fetch("SELECT name, step, value FROM metrics WHERE run_id = $1", run_id)
    assert sorted((r["name"], r["step"], r["value"]) for r in rows) == expected
    run = db.fetchrow("SELECT status, params FROM runs WHERE run_id = $1", run_id)
    assert run is not None
    assert run["status"] == "completed"
    params = json.loads(run["params"])
    assert {k: params.get(k) for k in some_params} == some_params
