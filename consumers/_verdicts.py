"""What the watchdog concludes about one run, from its state alone (pure logic).

Every time here is on the watchdog's own clock (`consumers/_sightings.py`): when it received each
event, minus the time it could not see the stream. The ranks judged are the expected ones,
0..world_size-1 (the size the run last announced wins), whether or not they have spoken yet.

- `lost`: an unfinished expected rank sent nothing (no event counts as a heartbeat) for
  `lost_after` seconds: killed, crashed or cut off. A rank never heard from counts from the run's
  latest announcement (its `RunStarted`, else its first event). One silent rank is enough; a
  distributed run cannot finish without it. The verdict names the first silent rank, and only
  that rank speaking again returns the run to `running`.
- `stalled`: every unfinished rank is heard from, but none progressed (new step, or explicit
  `report_progress`) within the run's expected time (`expect_next_in` from its last heartbeat that
  gave one, else `stall_after`). Before any progress, the start of the run counts.
- The watchdog never takes a verdict back: the run's own events do (the fold rules in
  `_runstate.py`), in persist, export and the watchdog alike.
- a straggling rank: its step trails the leading unfinished rank's by more than `straggler_steps`,
  or its step rate over the last `straggler_window` seconds is below `straggler_rate` times the
  median rate of the other ranks; the flag is cleared when neither holds. Ranks that never
  reported a step are not judged, nor rates before a whole window was seen. (The watchdog flags a
  rank only once that held for six ticks: `WatchedRuns`.)

Finished runs (completed, failed, canceled) and finished ranks are never judged.
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from runstream.consumers._runstate import RankState, RunState
from runstream.schemas import RankStraggling, Status


@dataclass(frozen=True, slots=True)
class WatchPolicy:
    """The watchdog's thresholds."""

    stall_after: float = 300.0
    lost_after: float = 60.0
    straggler_steps: int = 100
    straggler_window: float = 120.0
    straggler_rate: float = 0.5


@dataclass(frozen=True, slots=True)
class Verdict:
    """One event the watchdog will produce: a `Status` or a `RankStraggling` for a run."""

    run_id: str
    experiment: str
    world_size: int
    rank: int
    body: Status | RankStraggling
    judged_through: int | None = None
    """The last offset of the run's events partition the watchdog had read when it judged."""

    @property
    def kind(self) -> str:
        """The body's record name: `kinds.STATUS` or `kinds.RANK_STRAGGLING`."""
        kind: str = self.body.KIND
        return kind

    @property
    def key(self) -> tuple[str, int, str]:
        """What the verdict is about: (run, rank, kind)."""
        return (self.run_id, self.rank, self.kind)

    @property
    def outcome(self) -> str:
        """The verdict itself: a run state, or `straggling` / `caught_up`."""
        if isinstance(self.body, Status):
            return self.body.state
        return "straggling" if self.body.straggling else "caught_up"


@dataclass(frozen=True, slots=True)
class Straggler:
    """Why a rank straggles: its step gap to the leader, its rate against the others' median."""

    rank: int
    step: int
    leader_step: int
    rate: float | None
    median_rate: float | None
    by_gap: bool
    by_rate: bool

    @property
    def straggling(self) -> bool:
        """Either rule holds."""
        return self.by_gap or self.by_rate

    @property
    def cause(self) -> str:
        """`gap`, `rate`, `gap+rate` or `none`: the label value on /metrics."""
        causes = [name for name, held in (("gap", self.by_gap), ("rate", self.by_rate)) if held]
        return "+".join(causes) or "none"

    def reason(self) -> str:
        """The rule(s) in words."""
        parts = [f"step {self.step}, leader {self.leader_step}"]
        if self.rate is not None and self.median_rate is not None:
            parts.append(f"{self.rate:.3g} steps/s against a median of {self.median_rate:.3g}")
        return f"{self.cause}: " + "; ".join(parts)


def expected_ranks(run: RunState, now: datetime) -> list[RankState]:
    """Ranks 0..world_size-1 not finished; one never heard from is silent since the announcement."""
    since = run.announced_at or run.started_at or now
    ranks = []
    for number in range(run.world_size):
        rank = run.ranks.get(number)
        if rank is None:
            rank = RankState(run.run_id, number, last_heartbeat_at=since)
        if rank.finished_at is None:
            ranks.append(rank)
    return ranks


def judge(
    run: RunState,
    now: datetime,
    policy: WatchPolicy,
    rates: Mapping[int, float] | None = None,
) -> list[Verdict]:
    """The verdicts that differ from what `run` already says about itself."""
    if run.terminal:
        return []
    unfinished = expected_ranks(run, now)
    if not unfinished:
        return []
    verdicts = [_straggling(run, s) for s in stragglers(unfinished, policy, rates or {})]
    state, reason, culprit = liveness(run, unfinished, now, policy)
    if state not in ("running", run.status):
        body = Status(state=state, reason=reason, source="watchdog")
        verdicts.insert(0, _verdict(run, culprit, body))
    return verdicts


def _straggling(run: RunState, straggler: Straggler) -> Verdict:
    body = RankStraggling(
        straggling=straggler.straggling, step=straggler.step, leader_step=straggler.leader_step
    )
    return _verdict(run, straggler.rank, body)


def liveness(
    run: RunState, unfinished: list[RankState], now: datetime, policy: WatchPolicy
) -> tuple[str, str | None, int]:
    """`lost`, `stalled` or `running`, with the reason and the rank the verdict names."""
    lost_after = timedelta(seconds=policy.lost_after)
    silent = [
        r.rank
        for r in unfinished
        if r.last_heartbeat_at is None or now - r.last_heartbeat_at > lost_after
    ]
    if silent:
        reason = f"no heartbeat from rank {_ranks(silent)} for {policy.lost_after:g}s"
        return "lost", reason, min(silent)
    budget = run.expect_next_in or policy.stall_after
    progress = [r.last_progress_at for r in unfinished if r.last_progress_at is not None]
    since = max(progress, default=run.started_at)
    if since is not None and now - since > timedelta(seconds=budget):
        return "stalled", f"no progress for {budget:g}s (heartbeats arrive)", 0
    return "running", None, 0


def stragglers(
    unfinished: list[RankState], policy: WatchPolicy, rates: Mapping[int, float]
) -> list[Straggler]:
    """The ranks whose straggling flag should change, with why."""
    return [s for s in assess(unfinished, policy, rates) if s.straggling != _flag(unfinished, s)]


def assess(
    unfinished: list[RankState], policy: WatchPolicy, rates: Mapping[int, float]
) -> list[Straggler]:
    """Both straggler rules for every rank that reported a step (none when fewer than two did)."""
    stepped = [r for r in unfinished if r.last_step is not None]
    if len(stepped) < 2:
        return []
    leader = max(r.last_step or 0 for r in stepped)
    return [_assess_one(rank, leader, stepped, policy, rates) for rank in stepped]


def _assess_one(
    rank: RankState,
    leader: int,
    stepped: list[RankState],
    policy: WatchPolicy,
    rates: Mapping[int, float],
) -> Straggler:
    step = rank.last_step or 0
    rate = rates.get(rank.rank)
    others = [rates[r.rank] for r in stepped if r.rank != rank.rank and r.rank in rates]
    median = statistics.median(others) if others else None
    slow = rate is not None and median is not None and rate < policy.straggler_rate * median
    by_gap = leader - step > policy.straggler_steps
    return Straggler(rank.rank, step, leader, rate, median, by_gap, slow)


def _flag(ranks: list[RankState], straggler: Straggler) -> bool:
    return next(r.straggling for r in ranks if r.rank == straggler.rank)


def _verdict(run: RunState, rank: int, body: Status | RankStraggling) -> Verdict:
    world_size = max(run.world_size, rank + 1)
    return Verdict(run.run_id, run.experiment, world_size, rank, body)


def _ranks(ranks: list[int]) -> str:
    shown = ", ".join(str(r) for r in sorted(ranks)[:8])
    return shown + ("…" if len(ranks) > 8 else "")
