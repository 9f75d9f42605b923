"""A hand-rolled writer for the hottest event, `Metrics`, byte-identical to the codec's output.

Everything in the envelope but `seq` and `time` is fixed for one producer session, so its bytes are
computed once; a metrics event then costs a few varints and packed doubles. Tests compare this
writer's bytes with `EventCodec.encode` over many random events.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable

from runstream.schemas._codec import EventCodec
from runstream.schemas._kinds import BODY_KINDS, METRICS

_DOUBLE = struct.Struct("<d").pack
_METRICS_BRANCH = BODY_KINDS.index(METRICS)
_NAME_CACHE_MAX = 100_000


def _varint_loop(n: int) -> bytes:
    out = []
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


# Varints of 0..2**14-1 whole, and of the low 14 bits of a larger number (two bytes that both
# carry the continuation bit): any value below 2**28 is then one or two table lookups.
_WHOLE = [_varint_loop(n) for n in range(1 << 14)]
_LOW14 = [bytes(((n & 0x7F) | 0x80, ((n >> 7) & 0x7F) | 0x80)) for n in range(1 << 14)]


def _unsigned_varint(n: int) -> bytes:
    if n < 0x4000:
        return _WHOLE[n]
    if n < 0x10000000:
        return _LOW14[n & 0x3FFF] + _WHOLE[n >> 14]
    return _varint_loop(n)


def avro_long(value: int) -> bytes:
    """Avro's zig-zag varint encoding of a 64-bit integer."""
    return _unsigned_varint((value << 1) ^ (value >> 63))


class _TimeVarint:
    """Avro long of a microsecond timestamp: the low 28 bits change every call and come from the
    tables; the varint of the high bits changes every ~2 minutes and is cached.
    """

    __slots__ = ("_high", "_high_bytes")

    def __init__(self) -> None:
        self._high = -1
        self._high_bytes = b""

    def __call__(self, time_us: int) -> bytes:
        n = time_us << 1  # zig-zag of a non-negative number
        high = n >> 28
        if high == 0:
            return _unsigned_varint(n)
        if high != self._high:
            self._high_bytes = _unsigned_varint(high)
            self._high = high
        return _LOW14[n & 0x3FFF] + _LOW14[(n >> 14) & 0x3FFF] + self._high_bytes


def avro_string(value: str) -> bytes:
    """Avro string: length then UTF-8 bytes."""
    data = value.encode()
    return avro_long(len(data)) + data


class MetricsWriter:
    """Encodes `Metrics` events for one (run, rank, producer session)."""

    def __init__(
        self,
        codec: EventCodec,
        run_id: str,
        experiment: str,
        rank: int,
        world_size: int,
        producer_id: str,
    ) -> None:
        self._head = codec.header + b"".join(
            (
                avro_string(run_id),
                avro_string(experiment),
                avro_long(rank),
                avro_long(world_size),
                avro_string(producer_id),
            )
        )
        self._branch = avro_long(_METRICS_BRANCH)
        self._names: dict[str, bytes] = {}
        self._time = _TimeVarint()

    def fast_parts(self) -> tuple[dict[str, bytes], bytes, bytes]:
        """What the C hot path of `log()` encodes with: the name cache, the head, the branch."""
        return self._names, self._head, self._branch

    def encode_name(self, name: str) -> bytes:
        """`name` as an Avro string, from the cache (the C hot path calls this for a new one)."""
        encoded = self._names.get(name)
        if encoded is None:
            encoded = avro_string(name)
            if len(self._names) < _NAME_CACHE_MAX:
                self._names[name] = encoded
        return encoded

    def encode(
        self, seq: int, time_us: int, step: int, values: Iterable[tuple[str, float]]
    ) -> bytes:
        """The single-object encoding of one Metrics event."""
        items = [self.encode_name(name) + _DOUBLE(value) for name, value in values]
        parts = [self._head, avro_long(seq), self._time(time_us), self._branch, avro_long(step)]
        if items:
            parts.append(avro_long(len(items)))
            parts.extend(items)
        parts.append(b"\x00")
        return b"".join(parts)

    def encode_one(self, seq: int, time_us: int, step: int, name: str, value: float) -> bytes:
        """The single-object encoding of a Metrics event holding one value (the `log()` path)."""
        encoded = self._names.get(name) or self.encode_name(name)
        return b"".join(
            (
                self._head,
                avro_long(seq),
                self._time(time_us),
                self._branch,
                avro_long(step),
                b"\x02",  # one item in the array block
                encoded,
                _DOUBLE(value),
                b"\x00",
            )
        )
