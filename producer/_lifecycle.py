"""The process around a run: exit, uncaught exceptions, SIGTERM and fork.

- At exit, a run not yet ended is marked completed, then flushed (its shipper is a daemon thread).
- An uncaught exception marks it failed with the traceback; KeyboardInterrupt marks it canceled.
- SIGTERM (when the host left the default handler in place) marks it canceled after a flush, then
  lets the default action terminate the process. The handler never waits on a lock the code it
  interrupted holds (`_signals.critical`), and still ends a run whose `close` it interrupted.
- In a forked child the run starts a new producer session (new producer_id and spool folder), so
  the child's events never collide with the parent's; a child never ends the run on exit.
- A child that `multiprocessing` forked (a DataLoader worker) leaves through `os._exit`, which
  runs no `atexit` handler; `multiprocessing` runs its own exit finalizers first, so the child's
  session is closed by one (delivered within `_CHILD_CLOSE_TIMEOUT`, the rest left in its spool).
  A child forked by `os.fork()` that leaves through `os._exit` runs nothing at all: what it
  logged since its last round (one flush interval) is lost unless it calls `close()` first.
"""

from __future__ import annotations

import atexit
import contextlib
import multiprocessing.util
import os
import signal
import sys
import threading
import weakref
from types import FrameType, TracebackType
from typing import TYPE_CHECKING

from runstream._errors import ClosedError
from runstream.producer._signals import critical
from runstream.producer._values import describe_error

if TYPE_CHECKING:
    from runstream.producer._base import RunBase

_runs: weakref.WeakSet[RunBase] = weakref.WeakSet()
_installed = False
_CHILD_CLOSE_TIMEOUT = 2.0  # at most this long, so a worker still ends before it is terminated
_CHILD_CLOSE_PRIORITY = 10  # among multiprocessing's exit finalizers: before the usual (0)


def watch_process(run: RunBase) -> None:
    """Tie `run` to this process's exit, uncaught exceptions, SIGTERM and forks."""
    global _installed  # noqa: PLW0603 - process-wide hooks are installed once
    _runs.add(run)
    multiprocessing.util.register_after_fork(run, _close_at_worker_exit)
    if _installed:
        return
    _installed = True
    atexit.register(_at_exit)
    previous = sys.excepthook

    def excepthook(
        kind: type[BaseException], error: BaseException, tb: TracebackType | None
    ) -> None:
        _end_all(error)
        previous(kind, error, tb)

    sys.excepthook = excepthook
    os.register_at_fork(after_in_child=_after_fork_in_child)
    in_main = threading.current_thread() is threading.main_thread()
    if in_main and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _on_sigterm)


def _end_all(error: BaseException | None) -> None:
    for run in list(_runs):
        if run.finished is not None or run.forked_child:
            continue
        with contextlib.suppress(ClosedError):  # closed by its owner without an end: nothing to say
            _end(run, error)


def _end(run: RunBase, error: BaseException | None) -> None:
    if error is None:
        run.end("completed", None, None, run.config.close_timeout)
    elif isinstance(error, KeyboardInterrupt):
        run.end("canceled", "interrupted (SIGINT)", None, run.config.close_timeout)
    else:
        run.end("failed", describe_error(error), None, run.config.close_timeout)


def _at_exit() -> None:
    _end_all(None)
    for run in list(_runs):
        run.close_blocking(run.config.close_timeout)


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    critical.run_or_defer(_terminate)  # never inside a lock the interrupted code holds


def _terminate() -> None:
    """End every run as canceled (even one whose `close` SIGTERM interrupted), then let the
    default action end the process, whatever happened meanwhile.
    """
    try:
        for run in list(_runs):
            if run.forked_child:
                continue
            with contextlib.suppress(ClosedError):  # its thread had already ended
                if run.finished is None:
                    run.end("canceled", "terminated (SIGTERM)", None, run.config.close_timeout)
                else:  # ending already (`complete`, say): let that finish delivering
                    run.close_blocking(run.config.close_timeout)
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTERM)


def _after_fork_in_child() -> None:
    for run in list(_runs):
        run.restart_after_fork()


def _close_at_worker_exit(run: RunBase) -> None:
    """In a child `multiprocessing` forked (after `_after_fork_in_child`): close the child's
    session among the exit finalizers it runs before `os._exit`.
    """
    multiprocessing.util.Finalize(
        run, _close_child, args=(weakref.ref(run),), exitpriority=_CHILD_CLOSE_PRIORITY
    )


def _close_child(ref: weakref.ref[RunBase]) -> None:
    run = ref()
    if run is not None:
        run.close_blocking(min(run.config.close_timeout, _CHILD_CLOSE_TIMEOUT))
