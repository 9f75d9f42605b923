"""The watchdog's clock: received-time stamps, blind time, step rates (pure logic)."""

from __future__ import annotations

import uuid
from dataclasses import replace

from aiokafka import TopicPartition

from runstream.consumers._loop import FetchProgress
from runstream.consumers._sightings import PartitionSight, WatchedRuns
from runstream.consumers._steprates import StepRates
from runstream.consumers._verdicts import WatchPolicy
from runstream.schemas import EventRecord, Heartbeat, Metrics, event_record, kinds

TP = TopicPartition("events", 0)
POLICY = WatchPolicy(stall_after=60, lost_after=30, straggler_window=10)


def seen(at: float, highwater: int, position: int) -> FetchProgress:
    return FetchProgress(at, highwater, position)


def heartbeat(rank: int = 0, *, trainer_time: int = 0) -> EventRecord:
    return event_record(
        run_id="r1",
        experiment="exp",
        rank=rank,
        world_size=1,
        producer_id=str(uuid.uuid4()),
        seq=0,
        kind=kinds.HEARTBEAT,
        body=Heartbeat(),
        time_us=trainer_time,
    )


def test_a_partition_read_to_its_end_with_fresh_fetches_is_never_blind() -> None:
    sight = PartitionSight(stale_after=3)
    for t in range(100, 110):
        sight.observe(t, t, seen(t - 0.5, 10, 10))
    assert (sight.blind, sight.blind_now, sight.visible(110)) == (0, False, 110)


def test_no_fetch_response_makes_the_time_since_the_last_tick_blind() -> None:
    sight = PartitionSight(stale_after=3)
    for t in range(100, 103):
        sight.observe(t, t, seen(t, 10, 10))
    for t in range(103, 133):  # the broker is gone: the last response stays at 102
        sight.observe(t, t, seen(102, 10, 10))
    assert sight.blind_now
    assert sight.blind == 30 - 3
    sight.observe(133, 133, seen(133, 40, 10))
    assert sight.blind == 27, "all the broker held at the last tick is read"
    sight.observe(134, 134, seen(134, 41, 20))
    assert sight.blind == 28, "a backlog the broker held at the last tick is not read yet"
    sight.observe(135, 135, seen(135, 41, 41))
    assert sight.visible(135) == 135 - 28


def test_events_are_stamped_on_receipt_whatever_the_trainer_clock_says() -> None:
    runs = WatchedRuns(POLICY, stale_after=3, finished_ttl=600)
    runs.observe({TP: seen(1000, 1, 1)}, 1000, 1000)
    runs.fold(TP, [heartbeat(trainer_time=0)], 1000)  # a trainer clock 1000 s behind
    for t in range(1001, 1025):
        runs.observe({TP: seen(t, 1, 1)}, t, t)
    assert runs.verdicts(1025) == []
    for t in range(1025, 1032):
        runs.observe({TP: seen(t, 1, 1)}, t, t)
    assert [v.outcome for v in runs.verdicts(1032)] == ["lost"]


def test_a_silence_the_watchdog_could_not_see_makes_no_verdict() -> None:
    runs = WatchedRuns(POLICY, stale_after=3, finished_ttl=600)
    runs.observe({TP: seen(1000, 1, 1)}, 1000, 1000)
    runs.fold(TP, [heartbeat()], 1000)
    for t in range(1001, 1100):  # broker unreachable for 99 s
        runs.observe({TP: seen(1000, 1, 1)}, t, t)
        assert runs.verdicts(t) == []


def test_a_rate_needs_a_whole_window_then_follows_the_steps() -> None:
    rates = StepRates(window=10)
    for t in range(10):
        rates.sample("r", 0, t, 2 * t)
    assert rates.rate("r", 0) is None
    for t in range(10, 30):
        rates.sample("r", 0, t, 2 * t)
    assert rates.rate("r", 0) == 2
    rates.forget("r")
    assert rates.rate("r", 0) is None


def metrics(rank: int, step: int) -> EventRecord:
    return replace(heartbeat(rank), world_size=2, body=Metrics(step=step, values=[("x", 1.0)]))


def test_a_gap_that_lasts_less_than_the_hold_is_a_courier_catching_up_not_a_straggler() -> None:
    gap_only = WatchPolicy(straggler_steps=100, straggler_window=1000)
    runs = WatchedRuns(gap_only, stale_after=3, finished_ttl=600, straggler_hold=5)
    straggling: list[int] = []
    for t in range(1000, 1020):
        runs.observe({TP: seen(t, 1, 1)}, t, t)
        late = 1005 <= t < 1008  # rank 1's events arrive 3 s late: 150 steps behind meanwhile
        runs.fold(TP, [metrics(0, 50 * t)] + ([] if late else [metrics(1, 50 * t)]), t)
        straggling += [v.rank for v in runs.verdicts(t) if v.outcome == "straggling"]
    assert straggling == []
    for t in range(1020, 1030):  # rank 1 stops at step 50950: 150 behind from 1022 on
        runs.observe({TP: seen(t, 1, 1)}, t, t)
        runs.fold(TP, [metrics(0, 50 * t), metrics(1, 50950)], t)
        straggling += [t for v in runs.verdicts(t) if v.outcome == "straggling"]
    assert straggling[:1] == [1027]


def test_a_verdict_carries_the_last_offset_read_and_settles_unless_overtaken() -> None:
    runs = WatchedRuns(POLICY, stale_after=3, finished_ttl=600)
    runs.observe({TP: seen(1000, 8, 8)}, 1000, 1000)
    runs.fold(TP, [heartbeat(), heartbeat()], 1000, [6, 7])
    for t in range(1001, 1032):
        runs.observe({TP: seen(t, 8, 8)}, t, t)
    (lost,) = runs.verdicts(1032)
    assert (lost.outcome, lost.judged_through) == ("lost", 7)
    body = replace(lost.body, judged_through=lost.judged_through)
    verdict = replace(heartbeat(), body=body)

    runs.fold(TP, [heartbeat()], 1032, [8])  # the rank spoke while the verdict was being sent
    runs.settle([verdict])
    assert runs.runs["r1"].status == "running"
    runs.settle([replace(verdict, body=replace(body, judged_through=8))])
    assert runs.runs["r1"].status == "lost"
