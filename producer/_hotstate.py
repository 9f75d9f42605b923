"""`LogState`: what a run's `log()` reads and changes on every call, in one object made for it.

The C hot path of `log()` (`producer/_hotpath.c`) and the run's Python path (`producer/_base.py`)
work on the same `LogState`, which the run owns; C reads no attribute of the run itself. It holds:

- `names`: the metric names already checked (`RunBase` stops adding new ones at 100,000);
- `steps`: name -> the step an omitted step continues from;
- `max_step`: the highest step logged, -1 before any (heartbeats and system metrics report it);
- `next_seq()`: the producer session's next seq number (0, 1, 2…); `new_session()` starts again.

With the extension built a run's state is its C type, whose fields C reads directly, and `log()`
takes its common case in C; without it, `PyLogState` below does the same in Python and the Python
path takes every call. tests/unit/test_producer_hotpath.py holds the two to the same events.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Protocol

from runstream.producer._intake import Intake
from runstream.schemas._fast import MetricsWriter

try:
    from runstream.producer import _hotpath

    BUILT = True
except ImportError:  # built without a C compiler: the Python path takes every call
    BUILT = False

FastLogCall = Callable[[str, object, int | None], bool]


class LogState(Protocol):
    """What both kinds of state offer (see the module doc)."""

    max_step: int

    @property
    def names(self) -> set[str]: ...

    @property
    def steps(self) -> dict[str, int]: ...

    def next_seq(self) -> int: ...

    def new_session(self) -> None: ...


class PyLogState:
    """`LogState` in Python, for a build without the C extension."""

    __slots__ = ("_seq", "max_step", "names", "steps")

    def __init__(self) -> None:
        self.names: set[str] = set()
        self.steps: dict[str, int] = {}
        self.max_step = -1
        self._seq = itertools.count()

    def next_seq(self) -> int:
        """The session's next seq number (0, 1, 2…); each call takes one."""
        return next(self._seq)

    def new_session(self) -> None:
        """A new producer session: seq numbers start again at 0."""
        self._seq = itertools.count()


def new_log_state() -> LogState:
    """A run's state: the C type when the extension was built, else `PyLogState`."""
    return _hotpath.LogState() if BUILT else PyLogState()


def fast_log(state: LogState, writer: MetricsWriter, intake: Intake) -> FastLogCall | None:
    """The C hot path of `log()` over `state` and one session's writer and intake; None without
    the extension (the Python path then takes every call).
    """
    if not BUILT or not isinstance(state, _hotpath.LogState):
        return None
    encoded, head, branch = writer.fast_parts()
    return _hotpath.FastLog(
        state=state, writer=writer, encoded=encoded, head=head, branch=branch, intake=intake
    )
