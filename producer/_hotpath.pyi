"""Types of the C hot path of `run.log()` (producer/_hotpath.c; see producer/_hotstate.py)."""

from runstream.producer._intake import Intake
from runstream.schemas._fast import MetricsWriter

class LogState:
    max_step: int
    @property
    def names(self) -> set[str]: ...
    @property
    def steps(self) -> dict[str, int]: ...
    def next_seq(self) -> int: ...
    def new_session(self) -> None: ...

class FastLog:
    def __init__(
        self,
        *,
        state: LogState,
        writer: MetricsWriter,
        encoded: dict[str, bytes],
        head: bytes,
        branch: bytes,
        intake: Intake,
    ) -> None: ...
    def __call__(self, name: object, value: object, step: object, /) -> bool: ...
