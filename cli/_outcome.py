"""What a launched command's end means for its run, and for `runstream run`'s own exit code.

- exit 0 → `completed`, exit N → `failed` (exit code N);
- killed by SIGINT, SIGTERM or SIGHUP → `canceled`; killed by any other signal (SIGKILL from the
  OOM killer, SIGSEGV, SIGABRT…) → `failed`; either way the exit code is 128 + the signal number,
  as shells report it;
- when `runstream run` itself received SIGINT, SIGTERM or SIGHUP while the command ran, the run is
  `canceled` whatever the command's exit code: someone asked it to stop.
- a command that cannot be started: 127 (not found) or 126 (not executable), `failed`;
- `runstream run` failing itself before the command starts (a spool it cannot write): 125.
"""

from __future__ import annotations

import signal
from dataclasses import dataclass

CANCEL_SIGNALS = frozenset({signal.SIGINT, signal.SIGTERM, signal.SIGHUP})
LAUNCHER_FAILED = 125
NOT_EXECUTABLE = 126
NOT_FOUND = 127
REASON_MAX = 4000


@dataclass(frozen=True, slots=True)
class Outcome:
    """The run's final state, the reason recorded with it, and the exit code to return."""

    state: str
    exit_code: int
    reason: str | None = None

    def with_output(self, tail: list[str]) -> Outcome:
        """The same outcome with the last lines of output in its reason (failures only)."""
        if self.state == "completed" or not tail:
            return self
        text = "\n".join([self.reason or "", "last lines of output:", *tail])
        return Outcome(self.state, self.exit_code, text[-REASON_MAX:])


def signal_name(number: int) -> str:
    """`SIGKILL` for 9; `signal 64` for numbers without a name."""
    try:
        return signal.Signals(number).name
    except ValueError:
        return f"signal {number}"


def outcome_of(returncode: int, requested: int | None = None) -> Outcome:
    """Map `Popen.returncode` (negative: killed by that signal) and the stop signal the launcher
    received (if any) to an `Outcome`.
    """
    if returncode < 0:
        number = -returncode
        if requested is not None or number in CANCEL_SIGNALS:
            return Outcome("canceled", 128 + number, f"stopped by {signal_name(number)}")
        return Outcome("failed", 128 + number, f"killed by {signal_name(number)}")
    if requested is not None:
        reason = f"canceled by {signal_name(requested)}; the command exited with code {returncode}"
        return Outcome("canceled", returncode, reason)
    if returncode == 0:
        return Outcome("completed", 0)
    return Outcome("failed", returncode, f"exited with code {returncode}")


def not_started(error: OSError, program: str) -> Outcome:
    """The outcome of a command that could not be started at all."""
    if isinstance(error, FileNotFoundError):
        return Outcome("failed", NOT_FOUND, f"command not found: {program}")
    if isinstance(error, PermissionError):
        return Outcome("failed", NOT_EXECUTABLE, f"permission denied: {program}")
    return Outcome("failed", NOT_EXECUTABLE, f"cannot start {program}: {error}")
