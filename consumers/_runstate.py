"""How a run's events fold into the state of the run and of each of its ranks.

Persist writes this state to `runs` and `run_ranks`, export keeps it in memory and the watchdog
judges it, so all three agree. The rules:

- `RunStarted` (rank 0) creates or updates the run: status running, name, params, tags, host, pid,
  git commit; `started_at` and `command` keep the earliest start (a `runstream run` launcher
  announces first, the command's own rank 0 later). A `RunStarted` reopens a finished run (a
  resumed run: status running, every rank unfinished) only when rank 0 itself had finished before
  it; otherwise it is a slow rank 0 of a run another rank already ended (say, failed), and the
  verdict stands.
- An event of an unknown run creates a minimal run (experiment, world size), so ranks whose events
  arrive before rank 0's `RunStarted` are not lost.
- The world size grows with the events' until the run is announced; a `RunStarted` then sets it
  (an elastic restart with a new size wins from there on) and forgets ranks beyond it.
  `announced_at` is when the latest `RunStarted` arrived (not stored: after a reload from the
  database the size grows again until the next one).
- Every event from the run itself updates its rank: it counts as a heartbeat. `Metrics` (or a
  `Heartbeat` step) above the rank's last step is progress, and so is `Heartbeat(progress=true)`;
  `Heartbeat.expect_next_in` is kept until the next one that gives it.
- `RankFinished` finishes one rank. The run is `failed` as soon as a rank failed, `canceled` when a
  rank canceled (and none failed), `completed` once every rank 0..world_size-1 completed.
- `Status` from the run or its launcher sets the run's status as given: authoritative (a launcher's
  `failed` with an exit code wins, and a rank's `RankFinished` arriving after a launcher's final
  status leaves it as it is). `Status` from the watchdog (stalled, lost) never overrides a
  terminal status, nor what the run said after the watchdog judged (below). `status_source`
  records who set the current status. A `Status` stamped before the end of a finished run (a late
  duplicate, a resend from a producer thrown away during an outage) leaves it as it is: an event's
  time, set once at the producer, decides, not its place in the topic.
- A `lost` run returns to `running` when the rank the verdict named speaks again (any rank once
  the state forgot which, e.g. after a reload from the database); a `stalled` run
  when it progresses again (a heartbeat alone is what `stalled` means, and would make it flap).
- `RankStraggling` (from the watchdog) sets the rank's straggling flag; watchdog events are not
  heartbeats of the run.
- Verdicts travel on a topic of their own, so a verdict and the run's events are ordered by
  offsets. A verdict carries `judged_through`: the last offset of the run's events partition the
  watchdog had read when it judged. Each rank remembers the offset of its latest event
  (`heard_offset`) and latest progress (`progress_offset`). A `lost` verdict whose rank was heard
  after `judged_through`, or a `stalled` verdict after which some rank progressed, is overtaken and
  changes nothing. An applied verdict remembers its `judged_through` (`verdict_offset`), and only
  the run's events after it take it back: one the watchdog had already seen when it judged (a
  consumer behind the watchdog folds it later) leaves the verdict standing. Events folded without
  an offset, and verdicts without `judged_through`, follow the rules above alone.
- `Params` and `Tags` merge into the run's.

Redelivered or replayed events fold to the same state: times only move forward, progress needs a
higher step, and statuses are last-writer-wins in topic order (one run = one partition), except
that none older than a finished run's end reopens or changes it.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from runstream.schemas import (
    Body,
    EventRecord,
    Heartbeat,
    Metrics,
    Params,
    RankFinished,
    RankStraggling,
    RunStarted,
    Status,
    Tags,
    kinds,
)

FINISHED_RANK_STATES = ("completed", "failed", "canceled")


@dataclass(slots=True)
class RankState:
    """One rank of a run: liveness, progress and how it ended (a `run_ranks` row)."""

    run_id: str
    rank: int
    status: str = "running"
    host: str | None = None
    pid: int | None = None
    last_heartbeat_at: datetime | None = None
    last_progress_at: datetime | None = None
    last_step: int | None = None
    expect_next_in: float | None = None
    straggling: bool = False
    finished_at: datetime | None = None
    exit_code: int | None = None
    reason: str | None = None
    heard_offset: int | None = None
    progress_offset: int | None = None

    def heard(self, time: datetime, offset: int | None = None) -> None:
        """The rank said something at `time` (at `offset` of the events topic, when known)."""
        self.last_heartbeat_at = _later(self.last_heartbeat_at, time)
        self.heard_offset = _higher(self.heard_offset, offset)

    def stepped(self, step: int | None, time: datetime) -> bool:
        """A step was reported; return whether it is progress (above the last step)."""
        if step is None or (self.last_step is not None and step <= self.last_step):
            return False
        self.last_step = step
        self.progressed(time)
        return True

    def progressed(self, time: datetime) -> None:
        """Explicit progress at `time`."""
        self.last_progress_at = _later(self.last_progress_at, time)

    def reopen(self) -> None:
        """Forget how this rank ended (its run was resumed)."""
        self.status, self.finished_at, self.exit_code, self.reason = "running", None, None, None


@dataclass(slots=True)
class RunState:
    """One run: identity, status, params and tags, and its ranks (a `runs` row + `run_ranks`)."""

    run_id: str
    experiment: str
    world_size: int = 1
    name: str | None = None
    status: str = "running"
    status_reason: str | None = None
    status_source: str | None = None
    started_at: datetime | None = None
    ended_at: datetime | None = None
    params: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)
    host: str | None = None
    pid: int | None = None
    command: str | None = None
    git_commit: str | None = None
    expect_next_in: float | None = None
    error: str | None = None
    exit_code: int | None = None
    ranks: dict[int, RankState] = field(default_factory=dict)
    announced_at: datetime | None = None
    lost_rank: int | None = None
    verdict_offset: int | None = None

    @classmethod
    def first_seen(cls, event: EventRecord) -> RunState:
        """The minimal run an event of an unknown run creates."""
        return cls(
            run_id=event.run_id,
            experiment=event.experiment,
            world_size=event.world_size,
            started_at=event.time,
        )

    @property
    def terminal(self) -> bool:
        """Completed, failed or canceled."""
        return self.status in kinds.TERMINAL_STATES

    @property
    def last_heartbeat_at(self) -> datetime | None:
        """Newest heartbeat of any rank."""
        return _newest(r.last_heartbeat_at for r in self.ranks.values())

    @property
    def last_progress_at(self) -> datetime | None:
        """Newest progress of any rank."""
        return _newest(r.last_progress_at for r in self.ranks.values())

    @property
    def last_step(self) -> int | None:
        """Highest step of any rank."""
        steps = [r.last_step for r in self.ranks.values() if r.last_step is not None]
        return max(steps, default=None)

    def rank(self, rank: int) -> RankState:
        """The state of `rank`, created on first use."""
        state = self.ranks.get(rank)
        if state is None:
            state = self.ranks[rank] = RankState(self.run_id, rank)
        return state

    def apply(self, event: EventRecord, offset: int | None = None) -> None:
        """Fold one event of this run into the state (the rules in the module docstring).

        `offset`: where the event sits on the events topic, when known (never a verdict's).
        """
        body, time = event.body, event.time
        if self.announced_at is None or isinstance(body, RunStarted):
            self.world_size = max(self.world_size, event.world_size)
        if from_watchdog(body):
            offset = None
        else:
            self._heard(event.rank, time, body, offset)
        self._fold_body(event, time, body, offset)

    def _fold_body(
        self, event: EventRecord, time: datetime, body: Body, offset: int | None
    ) -> None:
        match body:
            case RunStarted():
                self._started(event, time, body, offset)
            case Status():
                self._status(event, time, body, offset)
            case RankFinished():
                self._rank_finished(event, time, body)
            case RankStraggling():
                self.rank(event.rank).straggling = body.straggling
            case Params():
                self.params.update(body.params)
            case Tags():
                self.tags.update(body.tags)

    def _heard(self, rank_number: int, time: datetime, body: Body, offset: int | None) -> None:
        rank = self.rank(rank_number)
        rank.heard(time, offset)
        progress = False
        if isinstance(body, Metrics):
            progress = rank.stepped(body.step, time)
        elif isinstance(body, Heartbeat):
            progress = self._heartbeat(rank, time, body)
        if progress:
            rank.progress_offset = _higher(rank.progress_offset, offset)
        if not self._after_verdict(offset):
            return  # the watchdog had seen it when it judged
        named = self.status == "lost" and self.lost_rank in (None, rank.rank)
        if named or (self.status == "stalled" and progress):
            self._set_status("running", None, "run")

    def _after_verdict(self, offset: int | None) -> bool:
        """Whether an event at `offset` came after the current verdict was judged (or unknown)."""
        return offset is None or self.verdict_offset is None or offset > self.verdict_offset

    def _overtaken(self, state: str, rank: int, judged_through: int | None) -> bool:
        """Whether the run said, after `judged_through`, what takes a `state` verdict back."""
        if judged_through is None:
            return False
        if state == "lost":
            heard = self.ranks[rank].heard_offset if rank in self.ranks else None
            return heard is not None and heard > judged_through
        progressed = (r.progress_offset for r in self.ranks.values())
        return any(offset is not None and offset > judged_through for offset in progressed)

    def _heartbeat(self, rank: RankState, time: datetime, body: Heartbeat) -> bool:
        progress = rank.stepped(body.step, time)
        if body.progress:
            rank.progressed(time)
            progress = True
        if body.expect_next_in is not None:
            rank.expect_next_in = self.expect_next_in = body.expect_next_in
        return progress

    def _set_status(self, status: str, reason: str | None, source: str | None = None) -> None:
        self.status, self.status_reason, self.status_source = status, reason, source
        self.lost_rank = self.verdict_offset = None

    def _end(
        self, status: str, time: datetime, reason: str | None, exit_code: int | None, source: str
    ) -> None:
        self._set_status(status, reason, source)
        self.ended_at = time
        if exit_code is not None:
            self.exit_code = exit_code
        if status == "failed":
            self.error = reason

    def _started(
        self, event: EventRecord, time: datetime, body: RunStarted, offset: int | None
    ) -> None:
        announcer = self.ranks.get(event.rank)
        resumed = (
            self.terminal
            and announcer is not None
            and announcer.finished_at is not None
            and time > announcer.finished_at
        )
        if resumed:
            for rank in self.ranks.values():
                rank.reopen()
            self.ended_at = self.error = self.exit_code = None
            self.started_at = self.command = None
        if resumed or (not self.terminal and self._after_verdict(offset)):
            self._set_status("running", None, "run")
        self._resize(event.world_size)
        self.announced_at = time
        self.started_at = time if self.started_at is None else min(self.started_at, time)
        self.name = body.name or self.name
        self.params.update(body.params)
        self.tags.update(body.tags)
        self.host, self.pid = body.host, body.pid
        self.command = self.command or body.command
        self.git_commit = body.git_commit
        rank = self.rank(event.rank)
        rank.host, rank.pid = self.host, self.pid

    def _resize(self, world_size: int) -> None:
        """The announced size wins; ranks beyond it are gone (an elastic restart shrank the job)."""
        self.world_size = world_size
        for gone in [n for n in self.ranks if n >= world_size]:
            del self.ranks[gone]

    def _status(self, event: EventRecord, time: datetime, body: Status, offset: int | None) -> None:
        state, reason, source = body.state, body.reason, body.source
        if self.terminal and self.ended_at is not None and time < self.ended_at:
            return  # older than the verdict it would overturn: a late duplicate, a stale producer
        if source == "watchdog":
            self._verdict(state, reason, event.rank, body.judged_through)
        elif state in kinds.TERMINAL_STATES:
            self._end(state, time, reason, body.exit_code, source)
        elif self._after_verdict(offset):
            self._set_status(state, reason, source)
            self.ended_at = None

    def _verdict(self, state: str, reason: str | None, rank: int, judged: int | None) -> None:
        """A watchdog `Status`: never over a terminal status nor what the run said after it."""
        if self.terminal or self._overtaken(state, rank, judged):
            return
        self._set_status(state, reason, "watchdog")
        self.verdict_offset = judged
        if state == "lost":
            self.lost_rank = rank

    def _rank_finished(self, event: EventRecord, time: datetime, body: RankFinished) -> None:
        state = body.state
        if state not in FINISHED_RANK_STATES:
            return
        rank = self.rank(event.rank)
        rank.status, rank.finished_at = state, time
        rank.exit_code, rank.reason = body.exit_code, body.reason
        if self.terminal and self.status_source == "launcher":
            return  # the launcher's final word stands
        verdict = self._verdict_from_ranks()
        if verdict is not None and verdict != self.status:
            self._end(verdict, time, rank.reason, rank.exit_code, "ranks")

    def _verdict_from_ranks(self) -> str | None:
        states = {r.status for r in self.ranks.values()}
        if "failed" in states:
            return None if self.status == "failed" else "failed"
        if "canceled" in states:
            return None if self.status in ("failed", "canceled") else "canceled"
        everyone = all(
            self.ranks.get(n) is not None and self.ranks[n].status == "completed"
            for n in range(self.world_size)
        )
        return "completed" if everyone and not self.terminal else None


def from_watchdog(body: Body) -> bool:
    """Whether an event is a watchdog verdict rather than something the run itself said."""
    if isinstance(body, RankStraggling):
        return True
    return isinstance(body, Status) and body.source == "watchdog"


def with_offsets(
    events: Sequence[EventRecord], offsets: Sequence[int] | None
) -> Iterator[tuple[EventRecord, int | None]]:
    """Each event with its offset on the events topic (None for every one when not known)."""
    if offsets is None:
        return ((event, None) for event in events)
    return zip(events, offsets, strict=True)


def _later(current: datetime | None, time: datetime) -> datetime:
    return time if current is None or time > current else current


def _higher(current: int | None, offset: int | None) -> int | None:
    if offset is None:
        return current
    return offset if current is None or offset > current else current


def _newest(times: Iterable[datetime | None]) -> datetime | None:
    present = [t for t in times if t is not None]
    return max(present, default=None)
