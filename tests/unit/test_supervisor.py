"""The stack's service supervisor with small shell children: restarts, counts, gives up on 78."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from runstream._errors import EXIT_CONFIG
from runstream.deploy.local._supervisor import SupervisorState, describe_exit

_SUPERVISOR = [sys.executable, "-m", "runstream.deploy.local._supervisor"]


def supervise(tmp_path: Path, script: str) -> tuple[subprocess.Popen[bytes], Path, Path]:
    state, log = tmp_path / "supervisor.json", tmp_path / "service.log"
    with log.open("ab") as sink:
        supervisor = subprocess.Popen(
            [*_SUPERVISOR, str(state), "--log", str(log), "--", "/bin/sh", "-c", script],
            stdout=sink,
            stderr=subprocess.STDOUT,
        )
    return supervisor, state, log


def wait_for_state(
    path: Path, check: Callable[[SupervisorState], bool], within: float = 20.0
) -> SupervisorState:
    deadline = time.monotonic() + within
    state = SupervisorState.read(path)
    while time.monotonic() < deadline:
        state = SupervisorState.read(path)
        if state is not None and check(state):
            return state
        time.sleep(0.05)
    raise AssertionError(f"supervisor state never matched; last: {state}")


def test_a_child_that_keeps_dying_is_restarted_and_counted(tmp_path: Path) -> None:
    supervisor, state_file, _ = supervise(tmp_path, "echo working; exit 3")
    try:
        state = wait_for_state(state_file, lambda s: s.restarts >= 2)
    finally:
        supervisor.terminate()
        assert supervisor.wait(10) == 0
    assert state.last_exit == "exit 3"
    assert "working" in state.last_log
    assert not state.gave_up


def test_a_killed_child_is_replaced_by_a_new_process(tmp_path: Path) -> None:
    supervisor, state_file, _ = supervise(tmp_path, "exec sleep 600")
    try:
        first = wait_for_state(state_file, lambda s: s.child_pid is not None)
        assert first.child_pid is not None
        os.kill(first.child_pid, signal.SIGKILL)
        second = wait_for_state(
            state_file, lambda s: s.child_pid not in (None, first.child_pid), within=5.0
        )
    finally:
        supervisor.terminate()
        assert supervisor.wait(10) == 0
    assert second.restarts == 1
    assert second.last_exit == "killed by SIGKILL"


def test_exit_78_means_retrying_cannot_help(tmp_path: Path) -> None:
    supervisor, state_file, log = supervise(tmp_path, f"echo bad password; exit {EXIT_CONFIG}")
    assert supervisor.wait(10) == EXIT_CONFIG
    state = SupervisorState.read(state_file)
    assert state is not None
    assert state.gave_up
    assert state.restarts == 0
    assert "not restarting it" in log.read_text()


def test_sigterm_reaches_the_child_and_ends_the_supervisor(tmp_path: Path) -> None:
    marker = tmp_path / "got-term"
    script = f"trap 'touch {marker}; exit 0' TERM; while true; do sleep 0.1; done"
    supervisor, state_file, _ = supervise(tmp_path, script)
    wait_for_state(state_file, lambda s: s.child_pid is not None)
    time.sleep(0.3)  # let the shell install its trap
    supervisor.terminate()
    assert supervisor.wait(10) == 0
    assert marker.exists()
    state = SupervisorState.read(state_file)
    assert state is not None
    assert state.restarts == 0


def test_exits_are_described_as_a_user_reads_them() -> None:
    assert describe_exit(0) == "exit 0"
    assert describe_exit(-9) == "killed by SIGKILL"
