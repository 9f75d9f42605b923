"""How `runstream run` maps its command's end to the run's status and to its own exit code."""

from __future__ import annotations

import signal

import pytest

from runstream.cli._outcome import Outcome, not_started, outcome_of, signal_name


@pytest.mark.parametrize(
    ("returncode", "requested", "state", "exit_code"),
    [
        (0, None, "completed", 0),
        (1, None, "failed", 1),
        (3, None, "failed", 3),
        (255, None, "failed", 255),
        (-signal.SIGKILL, None, "failed", 137),
        (-signal.SIGSEGV, None, "failed", 139),
        (-signal.SIGABRT, None, "failed", 134),
        (-signal.SIGTERM, None, "canceled", 143),
        (-signal.SIGINT, None, "canceled", 130),
        (-signal.SIGHUP, None, "canceled", 129),
        (-signal.SIGTERM, signal.SIGTERM, "canceled", 143),
        (-signal.SIGKILL, signal.SIGTERM, "canceled", 137),
        (1, signal.SIGINT, "canceled", 1),
        (0, signal.SIGTERM, "canceled", 0),
    ],
)
def test_exit_codes_and_signals_map_to_states_and_shell_exit_codes(
    returncode: int, requested: int | None, state: str, exit_code: int
) -> None:
    outcome = outcome_of(returncode, requested)
    assert (outcome.state, outcome.exit_code) == (state, exit_code)


def test_reasons_say_what_happened() -> None:
    assert outcome_of(0).reason is None
    assert outcome_of(3).reason == "exited with code 3"
    assert outcome_of(-signal.SIGKILL).reason == "killed by SIGKILL"
    assert outcome_of(-signal.SIGTERM).reason == "stopped by SIGTERM"
    reason = outcome_of(1, signal.SIGINT).reason
    assert reason == "canceled by SIGINT; the command exited with code 1"


def test_commands_that_cannot_start_exit_like_a_shell() -> None:
    assert not_started(FileNotFoundError(), "nope") == Outcome(
        "failed", 127, "command not found: nope"
    )
    assert not_started(PermissionError(), "./x").exit_code == 126
    assert not_started(OSError("exec format error"), "./x").exit_code == 126


def test_failures_carry_the_last_lines_of_output() -> None:
    failed = outcome_of(1).with_output(["Traceback (most recent call last):", "ValueError: x"])
    assert failed.reason is not None
    assert failed.reason.endswith("ValueError: x")
    assert failed.reason.startswith("exited with code 1")
    assert outcome_of(0).with_output(["all good"]).reason is None


def test_the_reason_is_bounded() -> None:
    failed = outcome_of(1).with_output(["x" * 1000] * 20)
    assert failed.reason is not None
    assert len(failed.reason) <= 4000


def test_signal_names() -> None:
    assert signal_name(9) == "SIGKILL"
    assert signal_name(200) == "signal 200"
