"""Run status derivation: how events fold into a run's and its ranks' state."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from runstream.consumers import RunState
from runstream.schemas import EventRecord, event_record, kinds, micros

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(
    kind: str, body: dict[str, Any], *, rank: int = 0, world: int = 1, at: float = 0
) -> EventRecord:
    return event_record(
        run_id="r1",
        experiment="exp",
        rank=rank,
        world_size=world,
        producer_id=str(uuid.uuid4()),
        seq=0,
        kind=kind,
        body=body,
        time_us=micros(T0 + timedelta(seconds=at)),
    )


def fold(*events: EventRecord) -> RunState:
    run = RunState.first_seen(events[0])
    for e in events:
        run.apply(e)
    return run


def started(**kw: Any) -> EventRecord:
    body = {"name": "n", "params": {"lr": "0.1"}, "tags": {}, "host": "h", "pid": 1, "command": "c"}
    return event(kinds.RUN_STARTED, body | {"git_commit": None}, **kw)


def metrics(step: int, **kw: Any) -> EventRecord:
    return event(kinds.METRICS, {"step": step, "values": [{"name": "loss", "value": 1.0}]}, **kw)


def finished(state: str, **kw: Any) -> EventRecord:
    return event(kinds.RANK_FINISHED, {"state": state, "reason": "why", "exit_code": 3}, **kw)


def status(state: str, source: str = "run", **kw: Any) -> EventRecord:
    body = {"state": state, "reason": "r", "exit_code": None, "source": source}
    return event(kinds.STATUS, body, **kw)


def heartbeat(step: int | None = None, *, progress: bool = False, **kw: Any) -> EventRecord:
    body = {"step": step, "progress": progress, "expect_next_in": None}
    return event(kinds.HEARTBEAT, body, **kw)


def test_run_started_sets_identity_and_running() -> None:
    run = fold(started())
    assert (run.status, run.name, run.params, run.host) == ("running", "n", {"lr": "0.1"}, "h")
    assert run.started_at == T0


def test_events_before_run_started_create_a_minimal_run() -> None:
    run = fold(metrics(5, rank=1, world=2))
    assert (run.experiment, run.world_size, run.status) == ("exp", 2, "running")
    assert run.ranks[1].last_step == 5


def test_a_higher_step_is_progress_and_a_repeated_one_is_not() -> None:
    run = fold(metrics(5, at=1), metrics(5, at=2), metrics(4, at=3))
    rank = run.ranks[0]
    assert (rank.last_step, rank.last_progress_at, rank.last_heartbeat_at) == (
        5,
        T0 + timedelta(seconds=1),
        T0 + timedelta(seconds=3),
    )


def test_explicit_progress_and_expected_time_are_kept() -> None:
    body = {"step": None, "progress": True, "expect_next_in": 30.0}
    run = fold(event(kinds.HEARTBEAT, body, at=7))
    assert run.ranks[0].last_progress_at == T0 + timedelta(seconds=7)
    assert run.expect_next_in == run.ranks[0].expect_next_in == 30.0


def test_run_completes_only_when_every_rank_completed() -> None:
    run = fold(started(world=2), finished("completed", rank=0, world=2))
    assert run.status == "running"
    run.apply(finished("completed", rank=1, world=2, at=5))
    assert (run.status, run.ended_at) == ("completed", T0 + timedelta(seconds=5))


def test_one_failed_rank_fails_the_run_and_cancel_does_not_override_failure() -> None:
    run = fold(started(world=3), finished("failed", rank=1, world=3))
    assert (run.status, run.error, run.exit_code) == ("failed", "why", 3)
    run.apply(finished("canceled", rank=2, world=3))
    run.apply(finished("completed", rank=0, world=3))
    assert run.status == "failed"


def test_canceled_rank_cancels_the_run() -> None:
    assert fold(started(world=2), finished("canceled", rank=1, world=2)).status == "canceled"


def test_launcher_status_is_authoritative() -> None:
    launcher = event(
        kinds.STATUS, {"state": "failed", "reason": "oom", "exit_code": 137, "source": "launcher"}
    )
    run = fold(started(), finished("completed"), launcher)
    assert (run.status, run.exit_code, run.error) == ("failed", 137, "oom")


def test_watchdog_never_overrides_a_terminal_status() -> None:
    run = fold(started(), finished("completed"), status("lost", source="watchdog"))
    assert run.status == "completed"


def test_watchdog_verdicts_are_not_heartbeats() -> None:
    run = fold(started(at=0), status("lost", source="watchdog", at=100))
    assert (run.status, run.last_heartbeat_at) == ("lost", T0)


def test_lost_run_that_speaks_again_is_running() -> None:
    run = fold(started(), status("lost", source="watchdog"), heartbeat(at=5))
    assert run.status == "running"


def test_stalled_run_returns_to_running_on_progress_not_on_a_heartbeat() -> None:
    run = fold(started(), metrics(1), status("stalled", source="watchdog"), heartbeat(1, at=5))
    assert run.status == "stalled"
    run.apply(metrics(2, at=6))
    assert run.status == "running"


def test_explicit_progress_ends_a_stall() -> None:
    run = fold(started(), status("stalled", source="watchdog"), heartbeat(progress=True, at=5))
    assert run.status == "running"


def test_straggling_flag_is_set_and_cleared() -> None:
    body = {"straggling": True, "step": 1, "leader_step": 500}
    run = fold(started(world=2), event(kinds.RANK_STRAGGLING, body, rank=1, world=2))
    assert run.ranks[1].straggling
    run.apply(event(kinds.RANK_STRAGGLING, body | {"straggling": False}, rank=1, world=2))
    assert not run.ranks[1].straggling


def test_params_and_tags_merge() -> None:
    run = fold(
        started(),
        event(kinds.PARAMS, {"params": {"epochs": "3"}}),
        event(kinds.TAGS, {"tags": {"team": "a"}}),
    )
    assert (run.params, run.tags) == ({"lr": "0.1", "epochs": "3"}, {"team": "a"})


def test_replaying_a_suffix_of_events_gives_the_same_state() -> None:
    events = [started(world=2), metrics(1, at=1), metrics(2, rank=1, world=2, at=2)]
    events += [status("stalled", source="watchdog", at=3), metrics(3, at=4)]
    events += [finished("completed", at=5), finished("completed", rank=1, world=2, at=6)]
    once = fold(*events)
    replayed = fold(*events)
    for e in events[2:]:
        replayed.apply(e)
    assert replayed == once


def test_a_newer_run_started_reopens_a_finished_run() -> None:
    run = fold(
        started(world=2),
        finished("completed", world=2),
        finished("completed", rank=1, world=2, at=1),
    )
    run.apply(started(world=2, at=0))  # a late copy of the first start
    assert run.status == "completed"
    run.apply(started(world=2, at=10))
    assert (run.status, run.ended_at) == ("running", None)
    assert {r.status for r in run.ranks.values()} == {"running"}


def test_a_slow_rank_0_does_not_reopen_a_run_another_rank_failed() -> None:
    run = fold(
        metrics(1, rank=1, world=2, at=0.1),
        finished("failed", rank=1, world=2, at=0.2),
        started(rank=0, world=2, at=0.3),  # rank 0's announcement arrives (and was made) later
        metrics(1, rank=0, world=2, at=0.4),
        finished("completed", rank=0, world=2, at=0.5),
    )
    assert run.status == "failed"
    assert run.ranks[1].status == "failed"
    assert run.started_at == T0 + timedelta(seconds=0.1)


def test_a_run_resumed_after_rank_0_finished_reopens() -> None:
    run = fold(started(at=0), finished("completed", at=1), started(at=10))
    assert run.status == "running"
    assert run.ranks[0].status == "running"
    assert run.started_at == T0 + timedelta(seconds=10)


def test_the_launchers_final_status_stands_against_a_late_rank() -> None:
    run = fold(
        status("running", source="launcher", at=0),
        started(at=1),
        status("completed", source="launcher", at=5),
        finished("failed", at=2),  # delivered late, say by `runstream sync`
    )
    assert run.status == "completed"
    assert run.status_source == "launcher"
    assert run.ranks[0].status == "failed"


def test_a_late_duplicate_status_never_reopens_or_changes_a_finished_run() -> None:
    run = fold(
        started(at=0),
        status("running", source="launcher", at=1),
        status("canceled", source="launcher", at=5),
        status("running", source="launcher", at=1),  # the same event again, resent after the end
        status("failed", source="run", at=3),  # stale, from a producer thrown away meanwhile
    )
    assert (run.status, run.status_source) == ("canceled", "launcher")
    assert run.ended_at == T0 + timedelta(seconds=5)
    later = status("running", source="launcher", at=9)  # a newer word does reopen it
    run.apply(later)
    assert run.status == "running"


def test_the_earliest_start_and_command_are_kept() -> None:
    launcher = event(
        kinds.RUN_STARTED,
        {"name": "n", "params": {}, "tags": {}, "host": "h", "pid": 1, "command": "runstream run",
         "git_commit": None},
        at=0,
    )  # fmt: skip
    run = fold(launcher, started(at=3))
    assert run.started_at == T0
    assert run.command == "runstream run"


def test_an_elastic_restart_with_fewer_ranks_forgets_the_ranks_beyond_the_new_size() -> None:
    run = fold(started(world=3), *(metrics(1, rank=r, world=3) for r in range(3)))
    run.apply(started(world=2, at=10))
    assert (run.world_size, sorted(run.ranks), run.announced_at) == (
        2,
        [0, 1],
        T0 + timedelta(seconds=10),
    )
    run.apply(heartbeat(rank=2, world=3, at=11))
    assert run.world_size == 2, "a late event of the old size does not grow the announced one"


def test_a_lost_run_returns_to_running_when_the_rank_the_verdict_named_speaks() -> None:
    run = fold(started(world=2), metrics(1, world=2), metrics(1, rank=1, world=2))
    run.apply(status("lost", "watchdog", rank=1, world=2, at=5))
    run.apply(heartbeat(world=2, at=6))
    assert run.status == "lost", "another rank speaking is not the silent one coming back"
    run.apply(heartbeat(rank=1, world=2, at=7))
    assert run.status == "running"


def test_a_lost_run_forgotten_by_whom_returns_when_any_rank_speaks() -> None:
    run = fold(started(world=2), metrics(1, world=2))
    run.apply(status("lost", "watchdog", world=2, at=5))
    run.lost_rank = None  # as reloaded from the database
    run.apply(heartbeat(rank=1, world=2, at=6))
    assert run.status == "running"


# -- verdicts against the run's own events, ordered by offsets of the run's partition ----------


def verdict(state: str, judged_through: int | None, *, rank: int = 0) -> EventRecord:
    body = {"state": state, "reason": "w", "source": "watchdog", "judged_through": judged_through}
    return event(kinds.STATUS, body, rank=rank, world=2)


def fold_at(run: RunState, *events: tuple[EventRecord, int | None]) -> RunState:
    for e, offset in events:
        run.apply(e, offset)
    return run


def two_ranks() -> RunState:
    run = RunState.first_seen(started(world=2))
    return fold_at(run, (started(world=2), 10), (metrics(1, rank=1, world=2), 11))


def test_a_stalled_verdict_judged_before_later_progress_is_overtaken() -> None:
    run = fold_at(two_ranks(), (metrics(2, world=2), 12))
    run.apply(verdict("stalled", judged_through=11))
    assert (run.status, run.status_source) == ("running", "run")


def test_a_stalled_verdict_stands_when_only_heartbeats_followed_it() -> None:
    run = fold_at(two_ranks(), (heartbeat(world=2), 12))
    run.apply(verdict("stalled", judged_through=11))
    assert (run.status, run.status_source) == ("stalled", "watchdog")


def test_a_lost_verdict_is_overtaken_only_by_its_own_rank() -> None:
    other = fold_at(two_ranks(), (heartbeat(world=2), 12))
    other.apply(verdict("lost", judged_through=11, rank=1))
    assert other.status == "lost"
    named = fold_at(two_ranks(), (heartbeat(rank=1, world=2), 12))
    named.apply(verdict("lost", judged_through=11, rank=1))
    assert named.status == "running"


def test_events_the_watchdog_had_seen_do_not_take_its_verdict_back() -> None:
    """A consumer behind the watchdog folds events older than the verdict after it."""
    run = RunState.first_seen(started(world=2))
    run.apply(verdict("stalled", judged_through=12))
    fold_at(run, (started(world=2), 10), (metrics(1, world=2), 11), (metrics(2, world=2), 12))
    assert run.status == "stalled"
    fold_at(run, (metrics(3, world=2), 13))
    assert (run.status, run.status_source) == ("running", "run")


def test_a_lost_rank_heard_only_before_the_verdict_stays_lost() -> None:
    run = RunState.first_seen(started(world=2))
    run.apply(verdict("lost", judged_through=20, rank=1))
    fold_at(run, (heartbeat(rank=1, world=2), 15))
    assert run.status == "lost"
    fold_at(run, (heartbeat(rank=1, world=2), 21))
    assert run.status == "running"


def test_a_verdict_without_offsets_follows_the_old_rules() -> None:
    run = fold_at(two_ranks(), (metrics(2, world=2), 12))
    run.apply(verdict("stalled", judged_through=None))
    assert run.status == "stalled"
    run.apply(metrics(3, world=2))
    assert run.status == "running"
