"""Which ranks of a run get their own metric series on /metrics, and the cross-rank aggregates.

A run with at most `limit` ranks logging metrics shows every rank. A larger one shows rank 0 and
the ranks the watchdog flags straggling, lowest first, `limit` ranks at most (rank 0 always): the
ranks an operator looks at. Every rank, shown or not, is in the run's aggregates, and the number
of ranks left out is a series of its own, so a limit that bites is visible.
"""

from __future__ import annotations

import math
from collections.abc import Collection, Iterable
from typing import NamedTuple


def shown_ranks(ranks: Collection[int], straggling: Iterable[int], limit: int) -> set[int]:
    """The ranks among `ranks` whose series are exported one by one."""
    if len(ranks) <= limit:
        return set(ranks)
    shown = {0} if 0 in ranks else set()
    for rank in sorted(r for r in straggling if r in ranks and r != 0):
        if len(shown) >= limit:
            break
        shown.add(rank)
    return shown


class RankSpread(NamedTuple):
    """A metric's latest values across ranks: min, mean, max and how many ranks they cover."""

    low: float
    mean: float
    high: float
    ranks: int

    @classmethod
    def of(cls, values: list[float]) -> RankSpread:
        """The spread of `values` (one per rank, not empty); a NaN on any rank makes all 3 NaN."""
        mean = sum(values) / len(values)
        if math.isnan(mean) and any(map(math.isnan, values)):
            return cls(math.nan, math.nan, math.nan, len(values))
        return cls(min(values), mean, max(values), len(values))
