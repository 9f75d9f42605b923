"""What the watchdog concludes about one run, from its state alone (pure logic).

- `lost`: an unfinished rank sent nothing (no event counts as a heartbeat) for `lost_after`
  seconds: killed, crashed or cut off. One silent rank is enough; a distributed run cannot finish
  without it.
- `stalled`: every unfinished rank is heard from, but none progressed (new step, or explicit
  `report_progress`) within the run's expected time (`expect_next_in` from its last heartbeat that
  gave one, else `stall_after`). Before any progress, the start of the run counts.
- `running`: neither, while the run's status says `stalled` or `lost` (persist already returns a
  run to running when it speaks or progresses; this is the backstop).
- a straggling rank: its step trails the leading unfinished rank's by more than `straggler_steps`;
  the flag is cleared when it catches up. Ranks that never reported a step are not judged.

Finished runs (completed, failed, canceled) and finished ranks are never judged.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from runstream.consumers._runstate import RankState, RunState
from runstream.schemas import kinds


@dataclass(frozen=True, slots=True)
class WatchPolicy:
    """The watchdog's thresholds."""

    stall_after: float = 300.0
    lost_after: float = 60.0
    straggler_steps: int = 100


@dataclass(frozen=True, slots=True)
class Verdict:
    """One event the watchdog will produce: a `Status` or a `RankStraggling` for a run."""

    run_id: str
    experiment: str
    world_size: int
    rank: int
    kind: str
    body: dict[str, Any]

    @property
    def key(self) -> tuple[str, int, str]:
        """What the verdict is about: (run, rank, kind)."""
        return (self.run_id, self.rank, self.kind)

    @property
    def outcome(self) -> str:
        """The verdict itself: a run state, or `straggling` / `caught_up`."""
        if self.kind == kinds.STATUS:
            return str(self.body["state"])
        return "straggling" if self.body["straggling"] else "caught_up"


def judge(run: RunState, now: datetime, policy: WatchPolicy) -> list[Verdict]:
    """The verdicts that differ from what `run` already says about itself."""
    if run.terminal:
        return []
    unfinished = [r for r in run.ranks.values() if r.finished_at is None]
    if not unfinished:
        return []
    verdicts = []
    state, reason = liveness(run, unfinished, now, policy)
    if state != run.status:
        body = {"state": state, "reason": reason, "exit_code": None, "source": "watchdog"}
        verdicts.append(_verdict(run, 0, kinds.STATUS, body))
    verdicts.extend(stragglers(run, unfinished, policy))
    return verdicts


def liveness(
    run: RunState, unfinished: list[RankState], now: datetime, policy: WatchPolicy
) -> tuple[str, str | None]:
    """`lost`, `stalled` or `running`, with the reason."""
    lost_after = timedelta(seconds=policy.lost_after)
    silent = [
        r.rank
        for r in unfinished
        if r.last_heartbeat_at is None or now - r.last_heartbeat_at > lost_after
    ]
    if silent:
        return "lost", f"no heartbeat from rank {_ranks(silent)} for {policy.lost_after:g}s"
    budget = run.expect_next_in or policy.stall_after
    progress = [r.last_progress_at for r in unfinished if r.last_progress_at is not None]
    since = max(progress, default=run.started_at)
    if since is not None and now - since > timedelta(seconds=budget):
        return "stalled", f"no progress for {budget:g}s (heartbeats arrive)"
    return "running", None


def stragglers(run: RunState, unfinished: list[RankState], policy: WatchPolicy) -> list[Verdict]:
    """`RankStraggling` verdicts for ranks whose flag should change."""
    stepped = [r for r in unfinished if r.last_step is not None]
    if len(stepped) < 2:
        return []
    leader = max(r.last_step or 0 for r in stepped)
    verdicts = []
    for rank in stepped:
        step = rank.last_step or 0
        behind = leader - step > policy.straggler_steps
        if behind != rank.straggling:
            body = {"straggling": behind, "step": step, "leader_step": leader}
            verdicts.append(_verdict(run, rank.rank, kinds.RANK_STRAGGLING, body))
    return verdicts


def _verdict(run: RunState, rank: int, kind: str, body: dict[str, Any]) -> Verdict:
    world_size = max(run.world_size, rank + 1)
    return Verdict(run.run_id, run.experiment, world_size, rank, kind, body)


def _ranks(ranks: list[int]) -> str:
    shown = ", ".join(str(r) for r in sorted(ranks)[:8])
    return shown + ("…" if len(ranks) > 8 else "")
