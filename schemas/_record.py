"""`EventRecord`: the envelope every event travels in, as one typed record, built by `event_record`.

The fields are the envelope of `avro/event-v*.avsc` (DESIGN.md, "Events"): the run, the rank and
world size, the producer session and its sequence number (together the event's identity), the
producer's time in microseconds, and the body as one of the typed records of `_bodies` (its kind
is the body's `KIND`). The producer, the watchdog and the test harness build their events with
`event_record` and encode them with `EventCodec.encode_record`; the codec decodes every message
into an `EventRecord` too, so a field name is checked by the type checker where an event is
written and where it is read, never spelled as a string key.
"""

from __future__ import annotations

import datetime
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from runstream.schemas._bodies import Body, body_fields, body_from_fields

_EPOCH = datetime.datetime(1970, 1, 1, tzinfo=datetime.UTC)
_MICROSECOND = datetime.timedelta(microseconds=1)


def micros(moment: datetime.datetime) -> int:
    """`moment` (timezone-aware) in microseconds since the epoch, as `EventRecord.time_us`."""
    return (moment - _EPOCH) // _MICROSECOND


def moment(micros: int) -> datetime.datetime:
    """The UTC time `micros` microseconds after the epoch: `micros`'s inverse."""
    return _EPOCH + datetime.timedelta(microseconds=micros)


@dataclass(slots=True)
class EventRecord:
    """One event: its envelope and its typed body (`kind`: the body's record name). Not changed
    once built (not frozen only because a frozen dataclass is four times as slow to build).
    """

    run_id: str
    experiment: str
    rank: int
    world_size: int
    producer_id: str
    seq: int
    time_us: int
    body: Body

    @property
    def kind(self) -> str:
        """The body's record name (`kinds.STATUS`…)."""
        kind: str = self.body.KIND
        return kind

    @property
    def time(self) -> datetime.datetime:
        """When the producer made the event (UTC), as the database stores it."""
        return moment(self.time_us)

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
            "body": (self.kind, body_fields(self.body)),
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
    body: Body | Mapping[str, Any],
    time_us: int | None = None,
) -> EventRecord:
    """The one way to build an event; `body` a typed body or its fields; `time_us` defaults to
    now (set once, never re-stamped).
    """
    if isinstance(body, Mapping):
        body = body_from_fields(kind, body)
    elif kind != body.KIND:
        raise ValueError(f"a {type(body).__name__} body is not of kind {kind}")
    return EventRecord(
        run_id=run_id,
        experiment=experiment,
        rank=rank,
        world_size=world_size,
        producer_id=producer_id,
        seq=seq,
        time_us=time.time_ns() // 1000 if time_us is None else time_us,
        body=body,
    )
