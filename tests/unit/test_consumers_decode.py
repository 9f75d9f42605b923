"""Routing records to events or dead letters, and the dead letters' headers."""

from __future__ import annotations

import math
import time
import uuid
from dataclasses import dataclass
from typing import Any

import pytest

from runstream.consumers import DeadLetter, decode_batch, decode_record
from runstream.schemas import EventRecord, Metrics, default_codec, kinds


@dataclass(frozen=True)
class Record:
    value: bytes | None
    offset: int = 0
    topic: str = "events"
    partition: int = 3
    key: bytes | None = b"r1"


def encode(body: tuple[str, dict[str, Any]], **envelope: Any) -> bytes:
    event = {
        "run_id": "r1",
        "experiment": "exp",
        "rank": 0,
        "world_size": 1,
        "producer_id": str(uuid.uuid4()),
        "seq": 0,
        "time": time.time_ns() // 1000,
        "body": body,
    } | envelope
    return default_codec().encode(event)


GOOD = encode((kinds.METRICS, {"step": 1, "values": [{"name": "loss", "value": math.nan}]}))


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (None, "empty"),
        (b"", "bad_magic"),
        (b"\x00\x01" + GOOD[2:], "bad_magic"),
        (GOOD[:2] + bytes(8) + GOOD[10:], "unknown_fingerprint"),
        (GOOD[:-3], "truncated"),
        (GOOD + b"junk", "trailing_bytes"),
        (encode((kinds.METRICS, {"step": -1, "values": []})), "bad_step"),
        (
            encode((kinds.METRICS, {"step": 1, "values": [{"name": "x" * 300, "value": 1.0}]})),
            "bad_name",
        ),
        (encode((kinds.METRICS, {"step": 1, "values": []}), rank=2), "bad_identity"),
        (
            encode(
                (kinds.HEARTBEAT, {"step": None, "progress": False, "expect_next_in": math.inf})
            ),
            "non_finite",
        ),
    ],
    ids=[
        "none",
        "empty",
        "wrong-magic",
        "unknown-fingerprint",
        "truncated",
        "trailing-bytes",
        "negative-step",
        "long-name",
        "rank-beyond-world",
        "infinite-expectation",
    ],
)
def test_bad_records_become_dead_letters_with_their_reason(
    value: bytes | None, reason: str
) -> None:
    decoded = decode_record(default_codec(), Record(value, offset=42))
    assert isinstance(decoded, DeadLetter)
    assert (decoded.reason, decoded.offset, decoded.partition) == (reason, 42, 3)


def test_a_good_record_is_an_event_and_nan_values_are_kept() -> None:
    decoded = decode_record(default_codec(), Record(GOOD))
    assert isinstance(decoded, EventRecord)
    assert isinstance(decoded.body, Metrics)
    assert math.isnan(decoded.body.values[0][1])


def test_a_batch_keeps_topic_order_and_counts_kinds() -> None:
    records = [Record(GOOD, 10), Record(b"junk", 11), Record(GOOD, 12)]
    batch = decode_batch(default_codec(), records)
    assert [s.offset for s in batch.sources] == [10, 12]
    assert [d.offset for d in batch.dead] == [11]
    assert (batch.kinds, batch.last_offset) == ({"metrics": 2}, 12)


def test_dead_letter_headers_name_reason_and_source() -> None:
    letter = DeadLetter("events", 3, 99, b"r1", b"junk", "bad_magic", "x" * 5000)
    headers = dict(letter.headers())
    assert headers["reason"] == b"bad_magic"
    assert (headers["source_topic"], headers["source_partition"], headers["source_offset"]) == (
        b"events",
        b"3",
        b"99",
    )
    assert len(headers["detail"]) == 1000


STALLED = encode((kinds.STATUS, {"state": "stalled", "reason": "r", "source": "watchdog"}))
STRAGGLING = encode((kinds.RANK_STRAGGLING, {"straggling": True, "step": 1, "leader_step": 900}))
LAUNCHER = encode((kinds.STATUS, {"state": "failed", "reason": "r", "source": "launcher"}))


def test_a_verdict_is_trusted_only_from_the_verdict_topic() -> None:
    records = [
        Record(STALLED, 1),
        Record(STRAGGLING, 2),
        Record(LAUNCHER, 3),
        Record(STALLED, 4, topic="verdicts"),
        Record(STRAGGLING, 5, topic="verdicts"),
        Record(LAUNCHER, 6, topic="verdicts"),
        Record(GOOD, 7, topic="verdicts"),
    ]
    batch = decode_batch(default_codec(), records, verdict_topic="verdicts")
    assert batch.offsets == [3, 4, 5]
    assert [(d.offset, d.reason) for d in batch.dead] == [
        (1, "verdict_off_its_topic"),
        (2, "verdict_off_its_topic"),
        (6, "not_a_verdict"),
        (7, "not_a_verdict"),
    ]
