"""Hugging Face Transformers' `RunstreamCallback` on a real `Trainer` on CPU, against the stack.

The model is a tiny BERT built from a config (no download, `HF_HUB_OFFLINE=1`); the Trainer's own
log history is the reference for what PostgreSQL must hold.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path

from tests.integration.support import Rows, wait_for_run

PROGRAM = Path(__file__).parent / "programs" / "transformers_train.py"
OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "PYTHONWARNINGS": "ignore"}


def test_train_and_eval_metrics_params_and_the_final_status(
    run_env: dict[str, str], db: Rows, tmp_path: Path
) -> None:
    run_id = f"hf-{uuid.uuid4().hex[:12]}"
    done = subprocess.run(
        [sys.executable, str(PROGRAM), run_id, str(tmp_path), "callback"],
        env=run_env | OFFLINE | {"HF_HOME": str(tmp_path / "hf")},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    history = json.loads((tmp_path / "history.json").read_text())
    expected = sorted(
        (name, entry["step"], float(value))
        for entry in history
        for name, value in entry.items()
        if name != "step" and isinstance(value, int | float)
    )
    wait_for_run(db, run_id, metrics=len(expected))
    stored = db.fetch("SELECT name, step, value FROM metrics WHERE run_id = $1", run_id)
    assert sorted((r["name"], r["step"], r["value"]) for r in stored) == expected
    names = {name for name, _, _ in expected}
    assert {"loss", "learning_rate", "eval_loss", "train_runtime"} <= names
    assert {step for name, step, _ in expected if name == "eval_loss"} == {4, 8, 12, 16}
    run = db.fetchrow("SELECT status, params FROM runs WHERE run_id = $1", run_id)
    assert run is not None
    assert run["status"] == "completed"
    params = json.loads(run["params"])
    assert (params["learning_rate"], params["num_train_epochs"]) == ("0.001", "2")
    assert params["eval_strategy"] == "steps"
    assert params["model/hidden_size"] == "16"
    budget = db.fetchval("SELECT max(expect_next_in) FROM run_ranks WHERE run_id = $1", run_id)
    assert budget == 60.0  # said before the evaluations: the default minimum
