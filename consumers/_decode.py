"""From Kafka records to events and dead letters: the routing decision of every consumer.

A record becomes an event when the codec decodes it and the rules accept it; anything else becomes
a `DeadLetter` carrying the codec's reason (bad_magic, unknown_fingerprint, truncated,
trailing_bytes, bad_name, bad_step, …), or `empty` for a record without a value and `undecodable`
for a failure the codec did not foresee. Decoding never raises, so no record can stop a partition.

Where a record came from is part of the check: a watchdog verdict (`Status` from the watchdog,
`RankStraggling`) is trusted only from the verdict topic, which only the watchdog may write. One
on any other topic (a trainer's credentials suffice to write the events topic) is the dead letter
`verdict_off_its_topic`, and anything on the verdict topic that is not a verdict is `not_a_verdict`.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

from runstream._errors import DecodeError
from runstream.consumers._runstate import from_watchdog
from runstream.schemas import EventCodec, EventRecord, kinds

DETAIL_MAX = 1000


class KafkaRecord(Protocol):
    """What a consumer needs of a record (aiokafka's `ConsumerRecord` has it)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """A record that is not a valid event, with why and where it came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    reason: str
    detail: str
    source_size: int | None = None
    """Set when `value` is only the record's first bytes (a dead letter by reference)."""

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers of the dead-letter message: reason, detail and the source position
        (and `by_reference`, `source_size` when the value is only the record's first bytes).
        """
        headers = [
            ("reason", self.reason.encode()),
            ("detail", self.detail[:DETAIL_MAX].encode(errors="replace")),
            ("source_topic", self.topic.encode()),
            ("source_partition", str(self.partition).encode()),
            ("source_offset", str(self.offset).encode()),
        ]
        if self.source_size is not None:
            headers += [("by_reference", b"true"), ("source_size", str(self.source_size).encode())]
        return headers


@dataclass(slots=True)
class DecodedBatch:
    """One partition's records, decoded: events in topic order, their records, dead letters."""

    events: list[EventRecord] = field(default_factory=list)
    sources: list[KafkaRecord] = field(default_factory=list)
    dead: list[DeadLetter] = field(default_factory=list)
    kinds: collections.Counter[str] = field(default_factory=collections.Counter)
    last_offset: int = -1

    @property
    def offsets(self) -> list[int]:
        """Each event's offset in its partition."""
        return [record.offset for record in self.sources]


def decode_record(codec: EventCodec, record: KafkaRecord) -> EventRecord | DeadLetter:
    """The event in `record`, or the dead letter it becomes."""
    if record.value is None:
        return _dead(record, b"", "empty", "record has no value")
    try:
        event = codec.decode(record.value)
    except DecodeError as exc:
        return _dead(record, record.value, exc.reason, exc.detail)
    except Exception as exc:  # a record must never stop its partition
        return _dead(record, record.value, "undecodable", repr(exc))
    return event


def decode_batch(
    codec: EventCodec, records: Sequence[KafkaRecord], *, verdict_topic: str | None = None
) -> DecodedBatch:
    """Decode one partition's records, keeping topic order.

    With `verdict_topic`, a verdict anywhere else, or anything else there, is a dead letter.
    """
    batch = DecodedBatch()
    for record in records:
        decoded = decode_record(codec, record)
        if verdict_topic is not None and not isinstance(decoded, DeadLetter):
            decoded = _placed(decoded, record, verdict_topic)
        if isinstance(decoded, DeadLetter):
            batch.dead.append(decoded)
        else:
            batch.events.append(decoded)
            batch.sources.append(record)
            batch.kinds[kinds.short_kind(decoded.kind)] += 1
        batch.last_offset = max(batch.last_offset, record.offset)
    return batch


def _placed(
    event: EventRecord, record: KafkaRecord, verdict_topic: str
) -> EventRecord | DeadLetter:
    """`event`, or a dead letter when it is a verdict off the verdict topic or the reverse."""
    verdict = from_watchdog(event.body)
    if verdict and record.topic != verdict_topic:
        detail = f"watchdog verdicts are trusted only on {verdict_topic!r}"
        return dead_letter(record, "verdict_off_its_topic", detail)
    if not verdict and record.topic == verdict_topic:
        detail = f"{event.kind} is not a watchdog verdict"
        return dead_letter(record, "not_a_verdict", detail)
    return event


def dead_letter(record: KafkaRecord, reason: str, detail: str) -> DeadLetter:
    """A dead letter for a record that decoded but was refused later (e.g. by the database)."""
    return _dead(record, record.value or b"", reason, detail)


def _dead(record: KafkaRecord, value: bytes, reason: str, detail: str) -> DeadLetter:
    return DeadLetter(
        record.topic, record.partition, record.offset, record.key, value, reason, detail
    )
