"""Scripts written for W&B and for MLflow, with only their import line changed, log to runstream
what W&B or MLflow would have recorded (their step rules, params as strings, files, tables)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tests.integration.support import Rows, wait_for_run

PROGRAMS = Path(__file__).parent / "programs"


def run_script(name: str, env: dict[str, str], cwd: Path) -> tuple[str, str]:
    """(the run id the script printed, its stderr)."""
    done = subprocess.run(
        [sys.executable, str(PROGRAMS / name)],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout.split()[-1], done.stderr


def only_the_import_mentions_runstream(name: str) -> None:
    lines = [line for line in (PROGRAMS / name).read_text().splitlines() if "runstream" in line]
    assert len(lines) == 1
    assert lines[0].startswith(("import runstream.compat.", "from runstream.compat import "))


def metrics(db: Rows, run_id: str) -> list[tuple[str, int, float]]:
    rows = db.fetch("SELECT name, step, value FROM metrics WHERE run_id = $1", run_id)
    return sorted((r["name"], r["step"], r["value"]) for r in rows)


def test_a_wandb_script_records_what_wandb_would(
    run_env: dict[str, str], db: Rows, tmp_path: Path
) -> None:
    only_the_import_mentions_runstream("wandb_script.py")
    run_id, stderr = run_script("wandb_script.py", run_env, tmp_path)
    wait_for_run(db, run_id, metrics=12)
    assert metrics(db, run_id) == sorted(
        [
            ("loss", 0, 1.0), ("acc", 0, 0.0),
            ("loss", 1, 0.5), ("acc", 1, 0.1),
            ("loss", 2, 1 / 3), ("acc", 2, 0.2),
            # step=5 twice: one row; step=4 after it is dropped; commit=False joins the row
            ("val_loss", 5, 0.5), ("val_acc", 5, 0.8), ("lr", 5, 0.001), ("loss", 5, 0.1),
            ("epoch", 7, 2.0),
            ("val/loss", 2, 0.25),  # define_metric: against epoch
        ]
    )  # fmt: skip
    assert "step 4 is below the current step 5" in stderr
    assert stderr.count("watch() has no runstream meaning") == 1
    run = db.fetchrow(
        "SELECT name, experiment, status, params, tags FROM runs WHERE run_id = $1", run_id
    )
    assert run is not None
    assert (run["name"], run["experiment"], run["status"]) == (
        "baseline",
        "compat-wandb",
        "completed",
    )
    assert json.loads(run["params"]) == {"lr": "0.01", "arch.layers": "2", "batch_size": "32"}
    assert json.loads(run["tags"]) == {"baseline": ""}
    text = db.fetchrow("SELECT step, value FROM text_metrics WHERE run_id = $1", run_id)
    assert text is not None
    assert (text["step"], text["value"]) == (5, "halfway")
    rows = db.fetch(
        "SELECT row_data FROM table_rows WHERE run_id = $1 AND table_name = 'predictions' "
        "ORDER BY seq",
        run_id,
    )
    assert [json.loads(r["row_data"]) for r in rows] == [
        {"x": 1, "y": 2.0}, {"x": 2, "y": 4.0}, {"x": 3, "y": 6.0}
    ]  # fmt: skip
    files = db.fetch("SELECT name, step, data FROM files WHERE run_id = $1 ORDER BY name", run_id)
    assert [(f["name"], f["step"]) for f in files] == [("notes.txt", None), ("sample", 6)]
    assert files[1]["data"].startswith(b"\x89PNG")
    summary = db.fetchval(
        "SELECT row_data FROM table_rows WHERE run_id = $1 AND table_name = 'wandb-summary'",
        run_id,
    )
    assert json.loads(summary)["best_acc"] == 0.9
    assert json.loads(summary)["loss"] == 0.1


def test_an_mlflow_script_records_what_mlflow_would(
    run_env: dict[str, str], db: Rows, tmp_path: Path
) -> None:
    only_the_import_mentions_runstream("mlflow_script.py")
    run_id, stderr = run_script("mlflow_script.py", run_env, tmp_path)
    wait_for_run(db, run_id, metrics=6)
    assert metrics(db, run_id) == sorted(
        [
            ("loss", 0, 1.0), ("loss", 1, 0.5), ("loss", 2, 1 / 3),
            ("final", 0, 0.5),  # MLflow's step defaults to 0
            ("precision", 2, 0.7), ("recall", 2, 0.6),
        ]
    )  # fmt: skip
    run = db.fetchrow(
        "SELECT name, experiment, status, params, tags FROM runs WHERE run_id = $1", run_id
    )
    assert run is not None
    assert (run["name"], run["experiment"], run["status"]) == (
        "baseline",
        "compat-mlflow",
        "completed",
    )
    assert json.loads(run["params"]) == {"lr": "0.01", "epochs": "3", "optimizer": "sgd"}
    assert json.loads(run["tags"]) == {"team": "vision", "stage": "dev"}
    files = db.fetch("SELECT name, data FROM files WHERE run_id = $1 ORDER BY name", run_id)
    assert [(f["name"], f["data"]) for f in files] == [
        ("checkpoints/model.txt", b"weights: 1 2 3"),
        ("model.txt", b"weights: 1 2 3"),
    ]
    assert stderr.count("autolog() has no runstream meaning") == 1
