"""Chunk rows in PostgreSQL's binary COPY format, assembled here rather than by asyncpg.

asyncpg encodes a COPY record field by field and an array element by element (with an
`isinstance` test per element): for chunk rows, five arrays of up to a thousand numbers each, that
was more than half of persist's time. Here each array is packed at once by `struct` and its
elements' length words are laid between them with strided slice assignments, all in C.

The format (PostgreSQL's `COPY … (FORMAT binary)`): a signature and two zero words, then per row
the field count and each field as its length and bytes (big-endian), then -1. An array field is
its dimension count (1), a zero flags word (no NULLs), its element type, its length, its lower
bound (1), then each element with its length. Timestamps are microseconds since 2000-01-01.
"""

from __future__ import annotations

import functools
import struct
import uuid
from collections.abc import Iterable, Sequence
from typing import Any

HEADER = b"PGCOPY\n\xff\r\n\x00" + bytes(8)
TRAILER = b"\xff\xff"
PG_EPOCH_US = 946_684_800_000_000
"""2000-01-01 in microseconds since the Unix epoch: PostgreSQL's zero time."""

INT4, INT8, FLOAT8, TIMESTAMPTZ = 23, 20, 701, 1184
"""Element type OIDs of the arrays written (PostgreSQL's built-in, fixed)."""
_CODES = {INT4: ("i", 4), INT8: ("q", 8), FLOAT8: ("d", 8), TIMESTAMPTZ: ("q", 8)}

_INT4 = struct.Struct(">ii").pack
_INT8 = struct.Struct(">iq").pack
_FLOAT8 = struct.Struct(">id").pack
_ARRAY_HEAD = struct.Struct(">iiiiii").pack
_LENGTH = struct.Struct(">i").pack
_FIELDS = struct.Struct(">h").pack


def array(oid: int, values: Sequence[Any]) -> bytes:
    """A one-dimensional array field of fixed-size elements of type `oid`, none NULL."""
    code, size = _CODES[oid]
    n = len(values)
    packed = struct.pack(f">{n}{code}", *values)
    width = 4 + size
    out = bytearray(width * n)
    out[3::width] = bytes((size,)) * n  # each element's length word: 0, 0, 0, size
    for k in range(size):
        out[4 + k :: width] = packed[k::size]
    return _ARRAY_HEAD(20 + width * n, 1, 0, oid, n, 1) + out


def text(value: str) -> bytes:
    """A text field."""
    raw = value.encode()
    return _LENGTH(len(raw)) + raw


def int4(value: int) -> bytes:
    """An integer field."""
    return _INT4(4, value)


def int8(value: int) -> bytes:
    """A bigint field."""
    return _INT8(8, value)


def float8(value: float) -> bytes:
    """A double precision field."""
    return _FLOAT8(8, value)


def timestamptz(micros: int) -> bytes:
    """A timestamptz field from microseconds since the Unix epoch."""
    return _INT8(8, micros - PG_EPOCH_US)


def timestamps(micros: Sequence[int]) -> bytes:
    """A timestamptz[] field from microseconds since the Unix epoch."""
    return array(TIMESTAMPTZ, [t - PG_EPOCH_US for t in micros])


@functools.lru_cache(maxsize=4096)
def uuid_field(value: str) -> bytes:
    """A uuid field from its text (producer sessions repeat: each parsed once while recent)."""
    return _LENGTH(16) + uuid.UUID(value).bytes


def copy_data(field_count: int, rows: Iterable[Iterable[bytes]]) -> bytes:
    """The whole COPY stream of `rows`, each given as its encoded fields."""
    count = _FIELDS(field_count)
    parts = [HEADER]
    for fields in rows:
        parts.append(count)
        parts.extend(fields)
    parts.append(TRAILER)
    return b"".join(parts)
