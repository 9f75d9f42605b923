"""`runstream show` and `runstream watch` print user data with its control characters escaped:
a param, a run name or a log line cannot clear the screen or retitle the terminal."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from runstream._config import KafkaConfig, ProducerConfig
from runstream.deploy.local import StackEndpoints
from runstream.producer import Run, RunContext
from tests.integration.support import Rows

RUNSTREAM = [sys.executable, "-m", "runstream.cli"]
CLEAR = "\x1b[2J"
RETITLE = "\x1b]0;owned\x07"


@pytest.fixture(scope="module")
def hostile_run(stack: StackEndpoints, tmp_path_factory: pytest.TempPathFactory) -> str:
    run_id = f"escapes-{uuid.uuid4().hex[:12]}"
    config = ProducerConfig(
        kafka=KafkaConfig(bootstrap_servers=stack.bootstrap_servers),
        spool_dir=tmp_path_factory.mktemp("spool"),
    )
    context = RunContext(run_id=run_id, experiment="cli-escapes", name=f"name{CLEAR}")
    run = Run(context, config, params={"note": f"before{CLEAR}after"})
    run.log("loss", 0.5, step=0)
    run.log_record("WARNING", "train", f"message{RETITLE}")
    run.complete(timeout=30)
    db = Rows(stack.reader_url)
    deadline = time.monotonic() + 60
    while db.fetchval("SELECT status FROM runs WHERE run_id = $1", run_id) != "completed":
        assert time.monotonic() < deadline, "persist did not store the run"
        time.sleep(0.2)
    while not db.fetchval("SELECT count(*) FROM log_records WHERE run_id = $1", run_id):
        assert time.monotonic() < deadline, "persist did not store the log line"
        time.sleep(0.2)
    return run_id


def printed(args: list[str], env: dict[str, str]) -> str:
    done = subprocess.run(
        [*RUNSTREAM, *args], env=env, capture_output=True, timeout=120, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout.decode()


def assert_escaped(output: str) -> None:
    assert "\x1b" not in output
    assert "\x07" not in output


def test_show_prints_a_hostile_param_and_name_escaped(
    hostile_run: str, run_env: dict[str, str], tmp_path: Path
) -> None:
    output = printed(["show", hostile_run], run_env)
    assert_escaped(output)
    assert "before\\x1b[2Jafter" in output
    assert "name\\x1b[2J" in output


def test_watch_prints_a_hostile_param_and_log_line_escaped(
    hostile_run: str, run_env: dict[str, str], tmp_path: Path
) -> None:
    output = printed(["watch", hostile_run, "--interval", "0.3"], run_env)
    assert_escaped(output)
    assert "note=before\\x1b[2Jafter" in output
    assert "message\\x1b]0;owned\\x07" in output
