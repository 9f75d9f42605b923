"""What the watchdog has seen of the stream, on one clock: its own.

- Every event is stamped with the moment the watchdog received it, never with the trainer's
  `time`: a trainer's clock, however skewed, cannot make a verdict.
- Each assigned partition has *blind time*. At every tick (`observe`) a partition is seen when
  the client had a fetch response for it within `stale_after` seconds and the watchdog had read
  everything the broker held at the previous tick; otherwise (broker unreachable, the watchdog
  cut off, a backlog still being read) the time since the previous tick is blind.
- A partition's *visible time* is the clock minus its blind time. Events are stamped, and runs
  judged, in visible time, so a silence only grows while the watchdog could have seen the run
  speak: the pipeline's own delays never become a run's.

Runs are folded by the same rules as persist's and export's (`_runstate.py`), the watchdog's own
verdicts included: it does not read the verdict topic, and applies each verdict itself once Kafka
has acknowledged it (`settle`). Each partition's sight also knows the last offset the watchdog
has read there (`read_through`), which every verdict carries as `judged_through`. A restart
rebuilds the runs from PostgreSQL (what persist wrote) and counts every rank as heard at that
moment; the topic then continues from the group's committed offsets.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

from aiokafka import TopicPartition
from aiokafka.partitioner import murmur2

from runstream.consumers._loop import FetchProgress
from runstream.consumers._runstate import RunState, with_offsets
from runstream.consumers._steprates import StepRates
from runstream.consumers._verdicts import (
    Straggler,
    Verdict,
    WatchPolicy,
    assess,
    expected_ranks,
    judge,
)
from runstream.schemas import EventRecord, RankStraggling, micros


@dataclass(slots=True)
class PartitionSight:
    """One partition's blind time and when the watchdog last saw it whole."""

    stale_after: float
    blind: float = 0.0
    checked_at: float | None = None
    highwater: int | None = None
    seen_at: float | None = None
    blind_now: bool = True
    read_through: int | None = None

    def read(self, offset: int) -> None:
        """Everything up to `offset` of the partition is folded."""
        if self.read_through is None or offset > self.read_through:
            self.read_through = offset

    def visible(self, now: float) -> float:
        """The clock minus the blind time."""
        return now - self.blind

    def observe(self, now: float, wall: float, progress: FetchProgress) -> None:
        """One tick: was the partition seen since the last one? (`wall`: the client's clock)."""
        fresh = (
            progress.fetched_at is not None
            and wall - progress.fetched_at <= self.stale_after
            and progress.position is not None
            and self.highwater is not None
            and progress.position >= self.highwater
        )
        if not fresh and self.checked_at is not None:
            self.blind += max(0.0, now - self.checked_at)
        if fresh:
            self.seen_at = now
        self.blind_now = not fresh
        self.checked_at = now
        self.highwater = progress.highwater
        if progress.position is not None and progress.position > 0:
            self.read(progress.position - 1)


def stamp(seconds: float) -> datetime:
    """A visible time as the datetime the fold rules compare."""
    return datetime.fromtimestamp(seconds, UTC)


class WatchedRuns:
    """The runs of the watchdog's partitions, folded in visible time, and their step rates."""

    def __init__(
        self,
        policy: WatchPolicy,
        *,
        stale_after: float,
        finished_ttl: float,
        straggler_hold: float = 0.0,
    ) -> None:
        self.policy = policy
        self.stale_after = stale_after
        self.finished_ttl = finished_ttl
        self.straggler_hold = straggler_hold
        self._held: dict[tuple[str, int], tuple[bool, float]] = {}
        self.runs: dict[str, RunState] = {}
        self.sights: dict[TopicPartition, PartitionSight] = {}
        self.rates = StepRates(policy.straggler_window)
        self.assessed: tuple[tuple[RunState, Straggler], ...] = ()
        self._partition_of: dict[str, TopicPartition] = {}

    def sight(self, tp: TopicPartition) -> PartitionSight:
        """The partition's sight, created on first use."""
        found = self.sights.get(tp)
        if found is None:
            found = self.sights[tp] = PartitionSight(self.stale_after)
        return found

    def fold(
        self,
        tp: TopicPartition,
        events: Sequence[EventRecord],
        now: float,
        offsets: Sequence[int] | None = None,
    ) -> None:
        """Apply one partition's batch (at `offsets`, when known), each event stamped with the
        partition's visible time.
        """
        sight = self.sight(tp)
        received = micros(stamp(sight.visible(now)))
        runs = self.runs
        for sent, offset in with_offsets(events, offsets):
            event = replace(sent, time_us=received)
            run = runs.get(event.run_id)
            if run is None:
                run = runs[event.run_id] = RunState.first_seen(event)
                self._partition_of[run.run_id] = tp
            run.apply(event, offset)
            if offset is not None:
                sight.read(offset)

    def settle(self, verdicts: Iterable[EventRecord]) -> None:
        """Apply the watchdog's own verdicts, acknowledged by Kafka, to the runs still known
        (by the fold rules: one the run overtook meanwhile changes nothing).
        """
        for event in verdicts:
            run = self.runs.get(event.run_id)
            if run is not None:
                run.apply(event)

    def observe(
        self, progress: Mapping[TopicPartition, FetchProgress], now: float, wall: float
    ) -> None:
        """Update every assigned partition's sight; forget partitions no longer assigned."""
        for tp in [tp for tp in self.sights if tp not in progress]:
            del self.sights[tp]
        for tp, seen in progress.items():
            self.sight(tp).observe(now, wall, seen)

    def load(self, states: Mapping[str, RunState], now: float) -> None:
        """Start from PostgreSQL's live runs; every rank counts as heard (and progressing) now.

        Their partitions are found once the topic's partition count is known (`place`).
        """
        heard = stamp(now)
        for run_id, state in states.items():
            for rank in state.ranks.values():
                if rank.finished_at is None:
                    rank.last_heartbeat_at = rank.last_progress_at = heard
            state.announced_at = state.started_at = heard
            self.runs[run_id] = state

    def place(self, topic: str, partitions: int | None) -> None:
        """Give every run not seen on the topic yet the partition its key goes to."""
        if not partitions:
            return
        for run_id in self.runs:
            if run_id not in self._partition_of:
                self._partition_of[run_id] = partition_for(topic, run_id, partitions)

    def verdicts(self, now: float) -> list[Verdict]:
        """Judge every run of a partition the watchdog sees; sample step rates first."""
        found: list[Verdict] = []
        assessed: list[tuple[RunState, Straggler]] = []
        for run_id, run in self.runs.items():
            sight = self.sights.get(self._partition_of.get(run_id, _NOWHERE))
            if sight is None or run.terminal:
                continue
            visible = sight.visible(now)
            rates = self._sample(run, visible)
            at = stamp(visible)
            judged = [
                replace(v, judged_through=sight.read_through)
                for v in judge(run, at, self.policy, rates)
            ]
            found.extend(self._steady(run_id, judged, visible))
            ranks = expected_ranks(run, at)
            assessed.extend((run, s) for s in assess(ranks, self.policy, rates))
        self.assessed = tuple(assessed)
        return found

    def _steady(self, run_id: str, verdicts: list[Verdict], visible: float) -> list[Verdict]:
        """Verdicts; a rank is flagged straggling only once that held for `straggler_hold` seconds.

        Ranks' events travel through couriers of their own: one rank's backlog can arrive
        seconds before another's (a courier replaced, a broker back), which for a moment looks
        like a gap. A real straggler stays one. Clearing a flag waits for nothing.
        """
        steady, changing = [], set()
        for verdict in verdicts:
            if not isinstance(verdict.body, RankStraggling):
                steady.append(verdict)
                continue
            key, flag = (run_id, verdict.rank), verdict.body.straggling
            if not flag:
                steady.append(verdict)
                continue
            changing.add(key)
            held = self._held.get(key)
            if held is None or held[0] != flag:
                held = self._held[key] = (flag, visible)
            if visible - held[1] >= self.straggler_hold:
                steady.append(verdict)
        for key in [k for k in self._held if k[0] == run_id and k not in changing]:
            del self._held[key]
        return steady

    def _sample(self, run: RunState, visible: float) -> dict[int, float]:
        ranks = [r for r in expected_ranks(run, stamp(visible)) if r.last_step is not None]
        for rank in ranks:
            self.rates.sample(run.run_id, rank.rank, visible, rank.last_step or 0)
        return self.rates.rates(run.run_id, (r.rank for r in ranks))

    def evict(self, now: float) -> list[str]:
        """Forget runs that ended `finished_ttl` ago, and runs of partitions no longer assigned."""
        gone = []
        horizon = stamp(now) - timedelta(seconds=self.finished_ttl)
        for run_id, run in self.runs.items():
            moved = self._partition_of.get(run_id, _NOWHERE) not in self.sights
            ended = run.terminal and run.ended_at is not None and run.ended_at < horizon
            placed = run_id in self._partition_of
            if ended or (placed and moved and self.sights):
                gone.append(run_id)
        for run_id in gone:
            del self.runs[run_id]
            self._partition_of.pop(run_id, None)
            self.rates.forget(run_id)
            for key in [k for k in self._held if k[0] == run_id]:
                del self._held[key]
        return gone


_NOWHERE = TopicPartition("", -1)


def partition_for(topic: str, run_id: str, partitions: int) -> TopicPartition:
    """Where the Kafka clients' default partitioner puts a run's events (key = run id)."""
    return TopicPartition(topic, (murmur2(run_id.encode()) & 0x7FFFFFFF) % partitions)
