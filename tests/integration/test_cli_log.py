"""`runstream log`: lines from another source added to a live run, as a user pipes them in."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runstream._config import KafkaConfig, ProducerConfig
from runstream.deploy.local import StackEndpoints
from runstream.producer import Run, RunContext
from tests.integration.support import Rows
from tests.integration.test_cli_watch import Terminal

RUNSTREAM = [sys.executable, "-m", "runstream.cli"]


@pytest.fixture
def live_run(stack: StackEndpoints, tmp_path: Path, db: Rows) -> Iterator[Run]:
    """A running run with a param, stored before the test starts."""
    config = ProducerConfig(
        kafka=KafkaConfig(bootstrap_servers=stack.bootstrap_servers), spool_dir=tmp_path / "spool"
    )
    context = RunContext(run_id=f"log-{uuid.uuid4().hex[:12]}", experiment="cli-log", name="job")
    handle = Run(context, config, params={"lr": 0.1})
    handle.log("loss", 1.0, step=0)
    wait_until(lambda: db.fetchval("SELECT status FROM runs WHERE run_id = $1", handle.run_id))
    yield handle
    handle.close(timeout=10)


def wait_until(check: Callable[[], object], within: float = 60) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.2)
    pytest.fail("not stored in time")


def records(db: Rows, run_id: str) -> list[tuple[str, str, int, str]]:
    rows = db.fetch(
        "SELECT logger, level, rank, message FROM log_records WHERE run_id = $1 ORDER BY time, seq",
        run_id,
    )
    return [(r["logger"], r["level"], r["rank"], r["message"]) for r in rows]


def test_piped_lines_show_in_watch_and_postgres_and_a_closed_pipe_ends_it(
    live_run: Run, run_env: dict[str, str], db: Rows, tmp_path: Path
) -> None:
    env = run_env | {"RUNSTREAM_SPOOL_DIR": str(tmp_path / "log-spool")}
    command = [*RUNSTREAM, "log", live_run.run_id, "--source", "container"]
    piped = subprocess.Popen(
        command, env=env, stdin=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    watch = Terminal([*RUNSTREAM, "watch", live_run.run_id, "--interval", "0.3"], run_env)
    try:
        assert piped.stdin is not None
        piped.stdin.write("pulling image\nstep 1 done\n")
        piped.stdin.flush()
        watch.expect("container: step 1 done")
        piped.stdin.write("progress 10%\rprogress 100%\nno newline at the end")
        piped.stdin.close()  # the writer exited
        assert piped.wait(timeout=60) == 0
        assert piped.stderr is not None
        stderr = piped.stderr.read()
        assert f"added 4 lines from container to run {live_run.run_id}" in stderr
        expected = [
            ("container", "INFO", 0, line)
            for line in ("pulling image", "step 1 done", "progress 100%", "no newline at the end")
        ]
        wait_until(lambda: len(records(db, live_run.run_id)) >= 4)
        assert records(db, live_run.run_id) == expected
        watch.expect("no newline at the end")
        run = db.fetchrow(
            "SELECT status, name, params FROM runs WHERE run_id = $1", live_run.run_id
        )
        assert run is not None
        assert (run["status"], run["name"]) == ("running", "job")  # the run's own say
        assert json.loads(run["params"]) == {"lr": "0.1"}
    finally:
        watch.close()
        if piped.poll() is None:
            piped.kill()
            piped.wait()
        if piped.stderr is not None:
            piped.stderr.close()


def test_follow_reads_a_file_through_rotation_until_sigterm(
    live_run: Run, run_env: dict[str, str], db: Rows, tmp_path: Path
) -> None:
    path = tmp_path / "service.log"
    path.write_text("started\n")
    env = run_env | {"RUNSTREAM_SPOOL_DIR": str(tmp_path / "log-spool")}
    command = [
        *RUNSTREAM,
        "log",
        live_run.run_id,
        "-s",
        "journal",
        "-l",
        "WARNING",
        "-f",
        str(path),
    ]
    follower = subprocess.Popen(command, env=env, stderr=subprocess.PIPE, text=True)
    try:
        wait_until(lambda: len(records(db, live_run.run_id)) >= 1)
        with path.open("a") as file:
            file.write("disk 91% full\n")
        wait_until(lambda: len(records(db, live_run.run_id)) >= 2)
        path.rename(tmp_path / "service.log.1")  # rotated: a new file takes the name
        path.write_text("after rotation\n")
        wait_until(lambda: len(records(db, live_run.run_id)) >= 3)
        follower.send_signal(signal.SIGTERM)
        _, stderr = follower.communicate(timeout=60)
        assert follower.returncode == 0, stderr
    finally:
        if follower.poll() is None:
            follower.kill()
            follower.communicate()
    assert records(db, live_run.run_id) == [
        ("journal", "WARNING", 0, line) for line in ("started", "disk 91% full", "after rotation")
    ]


def test_a_bad_run_id_is_a_clear_error(run_env: dict[str, str]) -> None:
    done = subprocess.run(
        [*RUNSTREAM, "log", "bad id with spaces"],
        env=run_env,
        input="x\n",
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 2
    assert "run_id" in done.stderr


def test_following_a_missing_file_is_not_found(run_env: dict[str, str], tmp_path: Path) -> None:
    missing = tmp_path / "nothing.log"
    done = subprocess.run(
        [*RUNSTREAM, "log", "some-run", "--follow", str(missing)],
        env=run_env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3
    assert f"--follow {missing}: no such file" in done.stderr
