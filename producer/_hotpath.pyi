"""Types of the C hot path of `run.log()` (producer/_hotpath.c)."""

from typing import Any

from runstream.producer._intake import Intake

class FastLog:
    def __init__(
        self,
        *,
        run: Any,
        names: set[str],
        steps: dict[str, int],
        seq: Any,
        writer: Any,
        encoded: dict[str, bytes],
        head: bytes,
        branch: bytes,
        intake: Intake,
    ) -> None: ...
    def __call__(self, name: object, value: object, step: object, /) -> bool: ...
