"""Events as history rows: identity in every row, text PostgreSQL can store."""

from __future__ import annotations

import json
import math
import uuid
from datetime import UTC, datetime
from typing import Any

from runstream.consumers._rows import HistoryRows, json_storable, storable
from runstream.consumers._store import fold_runs
from runstream.schemas import EventRecord, event_record, kinds, micros

PID = str(uuid.uuid4())
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def event(kind: str, body: dict[str, Any], seq: int = 7, run_id: str = "r1") -> EventRecord:
    return event_record(
        run_id=run_id,
        experiment="e",
        rank=0,
        world_size=1,
        producer_id=PID,
        seq=seq,
        kind=kind,
        body=body,
        time_us=micros(T0),
    )


def test_heartbeats_and_params_have_no_history_rows() -> None:
    rows = HistoryRows()
    rows.add(event(kinds.HEARTBEAT, {"step": None, "progress": False, "expect_next_in": None}))
    rows.add(event(kinds.PARAMS, {"params": {"a": "b"}}))
    assert rows.count() == 0


def test_rank_finished_is_a_status_event_from_the_rank() -> None:
    rows = HistoryRows()
    rows.add(event(kinds.RANK_FINISHED, {"state": "failed", "reason": "boom", "exit_code": 1}))
    assert rows.tables["status_events"] == [("r1", 0, T0, "failed", "boom", 1, "rank", PID, 7)]


def test_text_postgres_refuses_is_made_storable() -> None:
    assert storable("a\x00b") == "a\ufffdb"
    stored = json.loads(json_storable({"x": math.nan, "y": -math.inf, "z": "q\x00"}))
    assert stored == {"x": "NaN", "y": "-Infinity", "z": "q\ufffd"}


def test_fold_runs_creates_unknown_runs_and_applies_events_in_order() -> None:
    runs = fold_runs(
        {},
        [
            event(kinds.METRICS, {"step": 1, "values": []}, run_id="a"),
            event(
                kinds.RANK_FINISHED,
                {"state": "completed", "reason": None, "exit_code": 0},
                run_id="a",
            ),
            event(kinds.METRICS, {"step": 1, "values": []}, run_id="b"),
        ],
    )
    assert {k: r.status for k, r in runs.items()} == {"a": "completed", "b": "running"}
