"""The watchdog's verdicts: lost, stalled, running again, straggling ranks."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from runstream.consumers import RankState, RunState, WatchPolicy, judge
from runstream.consumers._verdicts import assess
from runstream.schemas import RankStraggling, Status, kinds

NOW = datetime(2026, 1, 1, 12, tzinfo=UTC)
POLICY = WatchPolicy(stall_after=60, lost_after=30, straggler_steps=100)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def run(*ranks: RankState, status: str = "running", expect: float | None = None) -> RunState:
    state = RunState("r1", "exp", world_size=len(ranks), status=status, started_at=ago(1000))
    state.expect_next_in = expect
    state.ranks = {r.rank: r for r in ranks}
    return state


def rank(
    n: int, *, heard: float = 1, progressed: float | None = 1, step: int | None = 10
) -> RankState:
    return RankState(
        "r1",
        n,
        last_heartbeat_at=ago(heard),
        last_progress_at=None if progressed is None else ago(progressed),
        last_step=step,
    )


def outcomes(state: RunState) -> list[tuple[int, str]]:
    return [(v.rank, v.outcome) for v in judge(state, NOW, POLICY)]


def test_a_healthy_run_gets_no_verdict() -> None:
    assert outcomes(run(rank(0), rank(1))) == []


def test_one_silent_rank_makes_the_run_lost() -> None:
    [verdict] = judge(run(rank(0), rank(1, heard=31)), NOW, POLICY)
    assert isinstance(verdict.body, Status)
    assert (verdict.kind, verdict.outcome, verdict.body.source) == (
        kinds.STATUS,
        "lost",
        "watchdog",
    )
    assert "rank 1" in (verdict.body.reason or "")


def test_heartbeats_without_progress_make_it_stalled() -> None:
    assert outcomes(run(rank(0, progressed=61), rank(1, progressed=70))) == [(0, "stalled")]


def test_the_expected_time_given_by_the_run_replaces_the_default() -> None:
    assert outcomes(run(rank(0, progressed=20), expect=15)) == [(0, "stalled")]
    assert outcomes(run(rank(0, progressed=20), expect=600)) == []


def test_no_progress_yet_counts_from_the_start() -> None:
    assert outcomes(run(rank(0, progressed=None, step=None))) == [(0, "stalled")]


def test_the_watchdog_never_takes_a_verdict_back_the_run_itself_does() -> None:
    assert outcomes(run(rank(0), status="stalled")) == []
    assert outcomes(run(rank(0), status="lost")) == []


def test_the_same_verdict_is_not_repeated() -> None:
    assert outcomes(run(rank(0, heard=100), status="lost")) == []


def test_finished_runs_and_ranks_are_not_judged() -> None:
    assert outcomes(run(rank(0, heard=1000), status="completed")) == []
    finished = rank(1, heard=1000)
    finished.finished_at = ago(999)
    assert outcomes(run(rank(0), finished)) == []


def test_a_rank_trailing_the_leader_by_more_than_the_margin_straggles_then_catches_up() -> None:
    slow = rank(2, step=10)
    state = run(rank(0, step=200), rank(1, step=150), slow)
    [verdict] = judge(state, NOW, POLICY)
    assert (verdict.kind, verdict.rank, verdict.body) == (
        kinds.RANK_STRAGGLING,
        2,
        RankStraggling(straggling=True, step=10, leader_step=200),
    )
    slow.straggling, slow.last_step = True, 150
    assert outcomes(state) == [(2, "caught_up")]


def test_ranks_without_steps_are_not_stragglers() -> None:
    assert outcomes(run(rank(0, step=500), rank(1, step=None))) == []


def test_the_lost_verdict_names_the_first_silent_rank() -> None:
    [verdict] = judge(run(rank(0), rank(1, heard=40), rank(2, heard=31)), NOW, POLICY)
    assert (verdict.rank, verdict.outcome) == (1, "lost")
    assert isinstance(verdict.body, Status)
    assert "rank 1, 2" in (verdict.body.reason or "")


def test_an_expected_rank_never_heard_from_is_lost_after_lost_after_from_the_start() -> None:
    state = run(rank(0), rank(1))
    state.world_size = 3
    state.announced_at = ago(29)
    assert outcomes(state) == []
    state.announced_at = ago(31)
    assert outcomes(state) == [(2, "lost")]


def test_expected_ranks_that_finished_leave_the_silent_one_to_judge() -> None:
    done = [rank(0, heard=500), rank(1, heard=500)]
    for finished in done:
        finished.finished_at = ago(400)
    state = run(*done)
    state.world_size, state.announced_at = 3, ago(1000)
    assert outcomes(state) == [(2, "lost")]


def test_ranks_beyond_the_world_size_are_not_judged() -> None:
    state = run(rank(0), rank(1), rank(2, heard=1000))
    state.world_size = 2
    assert outcomes(state) == []


def test_a_rank_far_below_the_others_step_rate_straggles_without_a_step_gap() -> None:
    slow = rank(2, step=95)
    state = run(rank(0, step=100), rank(1, step=100), slow)
    rates = {0: 1.0, 1: 1.1, 2: 0.4}
    [verdict] = judge(state, NOW, POLICY, rates)
    assert (verdict.rank, verdict.outcome) == (2, "straggling")
    slow.straggling = True
    assert [(v.rank, v.outcome) for v in judge(state, NOW, POLICY, rates | {2: 0.9})] == [
        (2, "caught_up")
    ]


def test_the_rate_compares_with_the_other_ranks_even_in_a_pair() -> None:
    [found] = [s for s in assess([rank(0), rank(1)], POLICY, {0: 1.0, 1: 0.4}) if s.straggling]
    assert (found.rank, found.cause, found.by_gap) == (1, "rate", False)
    assert "0.4 steps/s against a median of 1" in found.reason()


def test_rates_not_known_yet_judge_nothing() -> None:
    assert outcomes(run(rank(0), rank(1))) == []
    assert [s.by_rate for s in assess([rank(0), rank(1)], POLICY, {0: 1.0})] == [False, False]
