"""The exporter's in-memory state and the series its collector exposes."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from runstream.consumers import LiveRuns, RunCollector, safe_label
from runstream.schemas import EventRecord, event_record, kinds, micros

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(
    kind: str, body: dict[str, Any], *, run: str = "r1", rank: int = 0, at: float = 0
) -> EventRecord:
    return event_record(
        run_id=run,
        experiment="exp",
        rank=rank,
        world_size=2,
        producer_id=str(uuid.uuid4()),
        seq=0,
        kind=kind,
        body=body,
        time_us=micros(T0 + timedelta(seconds=at)),
    )


def metrics(step: int, value: float, **kw: Any) -> EventRecord:
    return event(kinds.METRICS, {"step": step, "values": [{"name": "loss", "value": value}]}, **kw)


def exposed(live: LiveRuns) -> dict[str, list[tuple[dict[str, str], float]]]:
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    for family in text_string_to_metric_families(RunCollector(live).render()):
        for s in family.samples:
            samples.setdefault(s.name, []).append((s.labels, s.value))
    return samples


def test_last_value_by_time_wins_even_when_delivered_late() -> None:
    live = LiveRuns(finished_ttl=60, idle_ttl=3600)
    live.apply([metrics(5, 0.5, at=5), metrics(3, 0.3, at=3)])
    page = exposed(live)
    labels = {"experiment": "exp", "run_id": "r1", "metric": "loss", "rank": "0"}
    assert page["runstream_metric_value"] == [(labels, 0.5)]
    assert page["runstream_metric_step"] == [(labels, 5.0)]


def test_one_info_series_per_run_with_its_current_status_and_rank_series() -> None:
    live = LiveRuns(finished_ttl=60, idle_ttl=3600)
    body = {"name": "a\tb", "params": {}, "tags": {}, "host": "h", "pid": 1, "command": "c"}
    live.apply(
        [event(kinds.RUN_STARTED, body | {"git_commit": None}), metrics(7, 1.0, rank=1, at=2)]
    )
    live.apply(
        [event(kinds.RANK_FINISHED, {"state": "failed", "reason": None, "exit_code": 1}, at=3)]
    )
    page = exposed(live)
    assert page["runstream_run_info"] == [
        ({"experiment": "exp", "run_id": "r1", "run_name": "a\ufffdb", "status": "failed"}, 1.0)
    ]
    steps = {labels["rank"]: value for labels, value in page["runstream_run_step"]}
    assert steps == {"1": 7.0}
    beats = {
        labels["rank"]: value
        for labels, value in page["runstream_run_last_heartbeat_timestamp_seconds"]
    }
    assert beats == {
        "0": (T0 + timedelta(seconds=3)).timestamp(),
        "1": (T0 + timedelta(seconds=2)).timestamp(),
    }


def test_finished_runs_leave_after_the_ttl_and_silent_ones_after_the_idle_ttl() -> None:
    live = LiveRuns(finished_ttl=60, idle_ttl=3600)
    live.apply(
        [
            metrics(1, 1.0, run="done"),
            event(
                kinds.RANK_FINISHED,
                {"state": "completed", "reason": None, "exit_code": 0},
                run="done",
            ),
        ]
    )
    live.apply([metrics(1, 1.0, run="done-rank1", rank=1)])
    live.apply([metrics(1, 1.0, run="live", at=100)])
    assert live.evict(T0 + timedelta(seconds=59)) == []
    # "done" has only rank 0 of 2 finished: it is still running
    assert live.evict(T0 + timedelta(seconds=61)) == []
    live.apply(
        [
            event(
                kinds.RANK_FINISHED,
                {"state": "completed", "reason": None, "exit_code": 0},
                run="done",
                rank=1,
            )
        ]
    )
    assert live.evict(T0 + timedelta(seconds=61)) == ["done"]
    assert live.evict(T0 + timedelta(seconds=3601)) == ["done-rank1"]
    assert set(live.runs) == {"live"}


def test_label_values_from_free_text_are_bounded_and_printable() -> None:
    assert safe_label("x" * 1000) == "x" * 250
    assert safe_label("a\x00\nb") == "a\ufffd\ufffdb"
    assert safe_label(None) == ""
