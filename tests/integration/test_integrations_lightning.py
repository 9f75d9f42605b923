"""PyTorch Lightning's `RunstreamLogger` in real training on CPU, against the stack.

A tiny model trains for two epochs in a subprocess (Lightning's DDP re-runs the script for each
rank); the program writes down what each rank logged, and PostgreSQL must hold exactly that.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.support import Rows, wait_for_run

PROGRAM = Path(__file__).parent / "programs" / "lightning_train.py"


def train(env: dict[str, str], out: Path, mode: str, run_id: str = "-") -> list[dict[str, Any]]:
    done = subprocess.run(
        [sys.executable, str(PROGRAM), run_id, str(out), mode],
        env=env | {"PYTHONWARNINGS": "ignore"},
        cwd=out,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    if mode != "raise":
        assert done.returncode == 0, done.stderr[-3000:]
    else:
        assert done.returncode != 0
    return [json.loads(p.read_text()) for p in sorted(out.glob("rank*.json"))]


def stored_losses(db: Rows, run_id: str, rank: int) -> list[tuple[int, float]]:
    rows = db.fetch(
        "SELECT step, value FROM metrics WHERE run_id = $1 AND name = 'train_loss' AND rank = $2 "
        "ORDER BY step",
        run_id,
        rank,
    )
    return [(r["step"], r["value"]) for r in rows]


def test_a_two_epoch_fit_logs_every_step_params_and_completes(
    run_env: dict[str, str], db: Rows, tmp_path: Path
) -> None:
    run_id = f"lightning-{uuid.uuid4().hex[:12]}"
    (logged,) = train(run_env, tmp_path, "plain", run_id)
    assert logged["run_id"] == run_id
    wait_for_run(db, run_id, metrics=len(logged["logged"]))
    expected = [(step, value) for _, step, value in logged["logged"]]
    assert [s for s, _ in expected] == list(range(16))  # 8 batches an epoch, global steps
    assert stored_losses(db, run_id, 0) == expected
    run = db.fetchrow("SELECT params, world_size FROM runs WHERE run_id = $1", run_id)
    assert run is not None
    assert json.loads(run["params"]) == {"lr": "0.05", "hidden": "4", "fail": "False"}
    epochs = db.fetch(
        "SELECT DISTINCT value FROM metrics WHERE run_id = $1 AND name = 'epoch'", run_id
    )
    assert sorted(r["value"] for r in epochs) == [0.0, 1.0]
    assert (
        db.fetchval("SELECT count(*) FROM metrics WHERE run_id = $1 AND name = 'val_loss'", run_id)
        == 2
    )


@pytest.mark.slow
def test_ddp_on_two_processes_is_one_run_with_two_ranks(
    run_env: dict[str, str], db: Rows, tmp_path: Path
) -> None:
    ranks = train(run_env, tmp_path, "ddp")
    assert len(ranks) == 2
    run_id = ranks[0]["run_id"]
    assert ranks[1]["run_id"] == run_id  # rank 1 found the id rank 0 picked
    wait_for_run(db, run_id, metrics=sum(len(r["logged"]) for r in ranks))
    for rank, logged in enumerate(ranks):
        assert stored_losses(db, run_id, rank) == [(s, v) for _, s, v in logged["logged"]]
    run = db.fetchrow("SELECT status, world_size, params FROM runs WHERE run_id = $1", run_id)
    assert run is not None
    assert (run["status"], run["world_size"]) == ("completed", 2)
    assert json.loads(run["params"]) == {"lr": "0.05", "hidden": "4", "fail": "False"}
    statuses = db.fetch("SELECT rank, status FROM run_ranks WHERE run_id = $1 ORDER BY 1", run_id)
    assert [(r["rank"], r["status"]) for r in statuses] == [(0, "completed"), (1, "completed")]


def test_a_training_step_that_raises_fails_the_run_with_the_traceback(
    run_env: dict[str, str], db: Rows, tmp_path: Path
) -> None:
    run_id = f"lightning-{uuid.uuid4().hex[:12]}"
    (logged,) = train(run_env, tmp_path, "raise", run_id)
    wait_for_run(db, run_id, status="failed", metrics=3)
    error = db.fetchval("SELECT error FROM runs WHERE run_id = $1", run_id)
    assert "RuntimeError: exploding gradient at step 3" in error
    assert "raise RuntimeError" in error  # the traceback (its end: the error text keeps the tail)
    assert "training_step" in error
    assert stored_losses(db, run_id, 0) == [(s, v) for _, s, v in logged["logged"]]
