"""The examples in examples/, run as their docstrings say, against the real stack; each test checks
what a user would then find in PostgreSQL.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.integration.support import Rows

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
RUNSTREAM = [sys.executable, "-m", "runstream.cli"]


@pytest.fixture
def env(run_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return run_env | {"RUNSTREAM_SPOOL_DIR": str(tmp_path / "spool"), "MPLBACKEND": "Agg"}


def finished(db: Rows, run_id: str, *, launched: bool) -> Any:
    """The run's row once it has ended (for a launched run: once the launcher said how)."""
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        run = db.fetchrow("SELECT * FROM runs WHERE run_id = $1", run_id)
        final = db.fetchval(
            "SELECT count(*) FROM status_events WHERE run_id = $1 AND source = 'launcher' "
            "AND state <> 'running'",
            run_id,
        )
        if run is not None and run["ended_at"] is not None and (final or not launched):
            time.sleep(1.0)  # the run's last rows travel with or just before its end
            return db.fetchrow("SELECT * FROM runs WHERE run_id = $1", run_id)
        time.sleep(0.2)
    pytest.fail(f"run {run_id} did not end within 90s")


def counts(db: Rows, query: str, run_id: str) -> dict[Any, Any]:
    return {r[0]: r[1] for r in db.fetch(query, run_id)}


def run_example(env: dict[str, str], command: list[str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        command, env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done


def test_ridge_sweep_under_runstream_run(env: dict[str, str], db: Rows) -> None:
    run_id = f"sweep-{uuid.uuid4().hex[:12]}"
    script = [sys.executable, str(EXAMPLES / "sweep_ridge.py")]
    run_example(env, [*RUNSTREAM, "run", "--run-id", run_id, "-e", "examples",
                      "--param", "dataset=diabetes", "--", *script])  # fmt: skip
    run = finished(db, run_id, launched=True)
    assert (run["status"], run["exit_code"]) == ("completed", 0)
    assert json.loads(run["params"])["dataset"] == "diabetes"
    assert "best_alpha" in json.loads(run["tags"])
    metrics = counts(
        db, "SELECT name, count(*) FROM metrics WHERE run_id = $1 GROUP BY name", run_id
    )
    assert metrics == {"alpha": 20, "mse": 20, "best_alpha": 1, "best_mse": 1}
    rows = db.fetchval("SELECT count(*) FROM table_rows WHERE run_id = $1", run_id)
    assert rows == 20
    lines = db.fetchval("SELECT count(*) FROM log_records WHERE run_id = $1", run_id)
    assert lines == 21  # one line per fit and the best


def test_interactive_logging_session(env: dict[str, str], db: Rows) -> None:
    run_id = f"notebook-{uuid.uuid4().hex[:12]}"
    command = [sys.executable, str(EXAMPLES / "logging_api.py"), "--experiment", "examples"]
    run_example(env | {"RUNSTREAM_RUN_ID": run_id}, command)
    run = finished(db, run_id, launched=False)
    assert run["status"] == "completed"
    metrics = counts(
        db, "SELECT name, count(*) FROM metrics WHERE run_id = $1 GROUP BY name", run_id
    )
    assert metrics == {"a number": 1, "Fibonacci numbers": 11, "Sigmoid": 20}
    text = db.fetchval("SELECT value FROM text_metrics WHERE run_id = $1", run_id)
    assert text == "Hello from run!"
    tables = counts(
        db, "SELECT table_name, count(*) FROM table_rows WHERE run_id = $1 GROUP BY 1", run_id
    )
    assert tables == {"Cosine Wave": 20, "Sine Wave": 50}
    files = counts(
        db, "SELECT name, min(media_type) FROM files WHERE run_id = $1 GROUP BY name", run_id
    )
    assert files == {"Gaussian Plot": "image/png", "outputs/myfile.txt": "text/plain"}
    assert json.loads(run["tags"]) == {"Fibonacci numbers": "logged as a list", "notebook": ""}


def test_ddp_on_two_cpu_ranks_under_runstream_run_and_torchrun(
    env: dict[str, str], db: Rows
) -> None:
    run_id = f"ddp-{uuid.uuid4().hex[:12]}"
    torchrun = [shutil.which("torchrun") or "", "--standalone", "--nproc_per_node", "2"]
    if not torchrun[0]:
        torchrun = [sys.executable, "-m", "torch.distributed.run", *torchrun[1:]]
    script = [str(EXAMPLES / "ddp_train.py"), "--steps", "20"]
    run_example(env, [*RUNSTREAM, "run", "--run-id", run_id, "-e", "examples", "--",
                      *torchrun, *script])  # fmt: skip
    run = finished(db, run_id, launched=True)
    assert (run["status"], run["exit_code"], run["world_size"]) == ("completed", 0, 2)
    ranks = counts(db, "SELECT rank, status FROM run_ranks WHERE run_id = $1", run_id)
    assert ranks == {0: "completed", 1: "completed"}
    per_rank = db.fetch(
        "SELECT name, rank, count(*) FROM metrics WHERE run_id = $1 "
        "AND name IN ('loss', 'accuracy') GROUP BY name, rank ORDER BY name, rank",
        run_id,
    )
    assert [tuple(r) for r in per_rank] == [
        ("accuracy", 0, 20), ("accuracy", 1, 20), ("loss", 0, 20), ("loss", 1, 20),
    ]  # fmt: skip
