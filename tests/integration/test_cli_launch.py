"""`runstream run` as a user runs it, against the real stack: the status and exit code that reach
PostgreSQL for a command that exits 0, exits 3, raises, is killed with SIGKILL or is stopped
with SIGTERM, and `--show-output` streaming while the command still runs.
"""

from __future__ import annotations

import os
import selectors
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path
from typing import IO, Any

import pytest

from tests.integration.support import Rows

RUNSTREAM = [sys.executable, "-m", "runstream.cli"]


@pytest.fixture
def env(run_env: dict[str, str], tmp_path: Path) -> dict[str, str]:
    return run_env | {"RUNSTREAM_SPOOL_DIR": str(tmp_path / "spool")}


def launcher_verdict(db: Rows, run_id: str, within: float = 60) -> Any:
    """The run's row once the launcher's final status is stored."""
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        final = db.fetchval(
            "SELECT count(*) FROM status_events WHERE run_id = $1 AND source = 'launcher' "
            "AND state <> 'running'",
            run_id,
        )
        if final:
            return db.fetchrow("SELECT * FROM runs WHERE run_id = $1", run_id)
        time.sleep(0.2)
    pytest.fail(f"no final launcher status for {run_id} within {within}s")


def script(body: str) -> list[str]:
    return [sys.executable, "-c", textwrap.dedent(body)]


def launch(env: dict[str, str], run_id: str, command: list[str], *options: str) -> list[str]:
    return [*RUNSTREAM, "run", "--run-id", run_id, "-e", "cli-tests", *options, "--", *command]


def new_id() -> str:
    return f"cli-{uuid.uuid4().hex[:12]}"


def test_a_command_that_exits_0_completes_with_its_params_metrics_and_output(
    env: dict[str, str], db: Rows
) -> None:
    run_id = new_id()
    child = script("""
        from runstream.producer import get_run
        run = get_run()
        run.log("loss", 0.5, step=0)
        print("hello from the child")
    """)
    options = ("--param", "lr=0.01", "--tag", "team=vision", "--name", "ok")
    done = subprocess.run(launch(env, run_id, child, *options), env=env, timeout=120, check=False)
    assert done.returncode == 0
    run = launcher_verdict(db, run_id)
    assert (run["status"], run["exit_code"], run["name"]) == ("completed", 0, "ok")
    assert '"lr": "0.01"' in run["params"]
    assert '"team": "vision"' in run["tags"]
    logged = db.fetchval("SELECT count(*) FROM metrics WHERE run_id = $1", run_id)
    assert logged == 1
    lines = db.fetch("SELECT logger, message FROM log_records WHERE run_id = $1", run_id)
    assert ("stdout", "hello from the child") in [tuple(r) for r in lines]


@pytest.mark.parametrize(
    ("body", "code", "reason"),
    [
        ("import sys; print('giving up', file=sys.stderr); sys.exit(3)", 3, "giving up"),
        (
            "from runstream.producer import get_run\nget_run()\nraise ValueError('boom')",
            1,
            "ValueError: boom",
        ),
    ],
    ids=["exits-3", "raises"],
)
def test_a_failing_command_fails_the_run_with_its_exit_code_and_last_output(
    env: dict[str, str], db: Rows, body: str, code: int, reason: str
) -> None:
    run_id = new_id()
    done = subprocess.run(
        launch(env, run_id, script(body)),
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == code
    assert reason in done.stderr  # without --show-output a failure prints the last lines
    run = launcher_verdict(db, run_id)
    assert (run["status"], run["exit_code"]) == ("failed", code)
    assert f"exited with code {code}" in run["error"]
    assert reason in run["error"]


def test_a_command_killed_with_sigkill_fails_with_137_and_keeps_what_it_logged(
    env: dict[str, str], db: Rows, tmp_path: Path
) -> None:
    run_id, ready = new_id(), tmp_path / "child.pid"
    child = script(f"""
        import os, time
        from runstream.producer import get_run
        run = get_run()
        run.log("before_kill", 1.0, step=0)
        run.flush(30)
        open({str(ready)!r}, "w").write(str(os.getpid()))
        time.sleep(120)
    """)
    launcher = subprocess.Popen(launch(env, run_id, child), env=env)
    os.kill(wait_for_pid(ready), signal.SIGKILL)
    assert launcher.wait(timeout=120) == 128 + signal.SIGKILL
    run = launcher_verdict(db, run_id)
    assert (run["status"], run["exit_code"]) == ("failed", 137)
    assert run["error"].startswith("killed by SIGKILL")
    rows = db.fetchval(
        "SELECT count(*) FROM metrics WHERE run_id = $1 AND name = 'before_kill'", run_id
    )
    assert rows == 1


def test_sigterm_to_the_launcher_reaches_the_command_and_cancels_the_run(
    env: dict[str, str], db: Rows, tmp_path: Path
) -> None:
    run_id, ready = new_id(), tmp_path / "child.pid"
    child = script(f"""
        import os, time
        from runstream.producer import get_run
        get_run()
        open({str(ready)!r}, "w").write(str(os.getpid()))
        time.sleep(120)
    """)
    # A new session, as under a supervisor: no terminal shares the signal with the command.
    launcher = subprocess.Popen(launch(env, run_id, child), env=env, start_new_session=True)
    wait_for_pid(ready)
    launcher.send_signal(signal.SIGTERM)
    assert launcher.wait(timeout=120) == 128 + signal.SIGTERM
    run = launcher_verdict(db, run_id)
    assert (run["status"], run["exit_code"]) == ("canceled", 143)


def test_show_output_streams_lines_while_the_command_still_runs(
    env: dict[str, str], db: Rows, tmp_path: Path
) -> None:
    run_id, go_on = new_id(), tmp_path / "go-on"
    # The command cannot end before the test has read its first line through the launcher.
    child = script(f"""
        import os, time
        print("first line")
        while not os.path.exists({str(go_on)!r}):
            time.sleep(0.05)
        print("second line")
    """)
    command = launch(env, run_id, child, "--show-output")
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE) as launcher:
        assert launcher.stdout is not None
        assert read_line(launcher.stdout, within=60) == b"first line\n"
        assert launcher.poll() is None
        go_on.touch()
        assert read_line(launcher.stdout, within=60) == b"second line\n"
        assert launcher.wait(timeout=60) == 0
    launcher_verdict(db, run_id)
    messages = db.fetch("SELECT message FROM log_records WHERE run_id = $1 ORDER BY time", run_id)
    assert [r["message"] for r in messages] == ["first line", "second line"]


def wait_for_pid(path: Path, within: float = 60) -> int:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.05)
    pytest.fail(f"the command did not start within {within}s")


def read_line(stream: IO[bytes], within: float) -> bytes:
    """One line from a pipe, failing the test rather than hanging past `within` seconds."""
    selector = selectors.DefaultSelector()
    selector.register(stream, selectors.EVENT_READ)
    line = b""
    deadline = time.monotonic() + within
    while not line.endswith(b"\n"):
        if not selector.select(timeout=max(deadline - time.monotonic(), 0)):
            pytest.fail(f"no full line within {within}s (got {line!r})")
        byte = os.read(stream.fileno(), 1)
        if not byte:
            break
        line += byte
    return line
