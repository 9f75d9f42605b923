"""`StepRates`: each rank's steps per second over a sliding window, sampled at every tick.

Samples are (visible time, step) pairs (`consumers/_sightings.py`), so time the watchdog could not
see the stream slows no rank down. A rate exists once the samples span a whole window; memory is
one sample per tick and window for each live rank.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable

Sample = tuple[float, int]


class StepRates:
    """Steps per second of each (run, rank) over the last `window` seconds."""

    def __init__(self, window: float) -> None:
        self.window = window
        self._samples: dict[tuple[str, int], deque[Sample]] = {}

    def sample(self, run_id: str, rank: int, at: float, step: int) -> None:
        """Record that `rank` of `run_id` was at `step` at visible time `at`."""
        samples = self._samples.setdefault((run_id, rank), deque())
        samples.append((at, step))
        start = at - self.window
        while len(samples) > 2 and samples[1][0] <= start:
            samples.popleft()

    def rate(self, run_id: str, rank: int) -> float | None:
        """Steps per second over the window, or None before a whole window was sampled."""
        samples = self._samples.get((run_id, rank))
        if not samples or len(samples) < 2:
            return None
        (first_at, first_step), (last_at, last_step) = samples[0], samples[-1]
        if last_at - first_at < self.window:
            return None
        return max(0, last_step - first_step) / (last_at - first_at)

    def rates(self, run_id: str, ranks: Iterable[int]) -> dict[int, float]:
        """The known rates of `ranks` of one run."""
        found = {}
        for rank in ranks:
            rate = self.rate(run_id, rank)
            if rate is not None:
                found[rank] = rate
        return found

    def forget(self, run_id: str) -> None:
        """Drop every sample of a run."""
        for key in [k for k in self._samples if k[0] == run_id]:
            del self._samples[key]
