"""`EventRecord`: the envelope every event travels in, as one typed record, built by `event_record`.

The fields are the envelope of `avro/event-v*.avsc` (DESIGN.md, "Events"): the run, the rank and
world size, the producer session and its sequence number (together the event's identity), the
producer's time in microseconds, and the body as its record name and fields. The producer, the
watchdog and the test harness build their events with `event_record` and encode them with
`EventCodec.encode_record`, so a field name is checked by the type checker where an event is
written, never spelled as a string key.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One event: its envelope and its body (`kind`: the body's record name, `kinds.STATUS`…)."""

    run_id: str
    experiment: str
    rank: int
    world_size: int
    producer_id: str
    seq: int
    time_us: int
    kind: str
    body: Mapping[str, Any]

    def avro(self) -> dict[str, Any]:
        """The record as the Avro writer takes it (`time` in microseconds, body as a pair)."""
        return {
            "run_id": self.run_id,
            "experiment": self.experiment,
            "rank": self.rank,
            "world_size": self.world_size,
            "producer_id": self.producer_id,
            "seq": self.seq,
            "time": self.time_us,
            "body": (self.kind, self.body),
        }


def event_record(
    *,
    run_id: str,
    experiment: str,
    rank: int,
    world_size: int,
    producer_id: str,
    seq: int,
    kind: str,
    body: Mapping[str, Any],
    time_us: int | None = None,
) -> EventRecord:
    """The one way to build an event; `time_us` defaults to now (set once, never re-stamped)."""
    return EventRecord(
        run_id=run_id,
        experiment=experiment,
        rank=rank,
        world_size=world_size,
        producer_id=producer_id,
        seq=seq,
        time_us=time.time_ns() // 1000 if time_us is None else time_us,
        kind=kind,
        body=body,
    )
