"""Avro single-object encoding of events: `C3 01` + CRC-64-AVRO fingerprint (8 bytes) + Avro body.

Every released writer schema lives in `avro/event-v*.avsc`. The codec writes with the newest and
reads any of them, resolving to the newest (the reader schema). It decodes into `EventRecord`s: a
metrics event of the newest schema straight from its bytes (`MetricsReader`), any other through
fastavro, whose record is read once into the typed envelope and body.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from functools import cache
from importlib import resources
from typing import Any

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from runstream._errors import DecodeError
from runstream.schemas._bodies import body_from_fields
from runstream.schemas._fastread import MetricsReader
from runstream.schemas._record import EventRecord, micros
from runstream.schemas._rules import check_event

MAGIC = b"\xc3\x01"
HEADER_SIZE = 10

Schema = Any


def _load(name: str) -> Schema:
    text = resources.files("runstream.schemas").joinpath("avro", name).read_text()
    return fastavro.parse_schema(json.loads(text))


def schema_fingerprint(schema: Schema) -> bytes:
    """The 8 bytes that name `schema` in a single-object-encoded message."""
    return bytes.fromhex(fingerprint(to_parsing_canonical_form(schema), "CRC-64-AVRO"))


def released_schema_files() -> list[str]:
    """Every released writer schema, oldest first."""
    folder = resources.files("runstream.schemas").joinpath("avro")
    names = [p.name for p in folder.iterdir() if p.name.startswith("event-v")]
    return sorted(names, key=lambda n: int(n.removeprefix("event-v").removesuffix(".avsc")))


class EventCodec:
    """Encodes events with the current schema and decodes those written with any released one."""

    def __init__(self) -> None:
        files = released_schema_files()
        self._writers: Mapping[bytes, Schema] = {
            schema_fingerprint(s): s for s in (_load(f) for f in files)
        }
        self.header = MAGIC + schema_fingerprint(_load(files[-1]))
        self.schema: Schema = self._writers[self.header[2:]]
        self._metrics = MetricsReader()

    def encode(self, event: Mapping[str, Any]) -> bytes:
        """Return the single-object encoding of `event` (bodies given as `(record name, dict)`)."""
        out = io.BytesIO()
        out.write(self.header)
        fastavro.schemaless_writer(out, self.schema, event)
        return out.getvalue()

    def encode_record(self, record: EventRecord) -> bytes:
        """Return the single-object encoding of `record`."""
        return self.encode(record.avro())

    def decode(self, data: bytes) -> EventRecord:
        """Return the event in `data`, checked against the rules; raise `DecodeError` otherwise."""
        event = self.decode_unchecked(data)
        check_event(event)
        return event

    def decode_unchecked(self, data: bytes) -> EventRecord:
        """Decode without applying the rules (for tools that show bad events)."""
        if len(data) < HEADER_SIZE or data[:2] != MAGIC:
            raise DecodeError("bad_magic", f"message does not start with C3 01 ({data[:2].hex()})")
        writer = self._writers.get(data[2:HEADER_SIZE])
        if writer is None:
            raise DecodeError("unknown_fingerprint", data[2:HEADER_SIZE].hex())
        if writer is self.schema:
            metrics = self._metrics.read(data, HEADER_SIZE)
            if metrics is not None:
                return metrics
        body = io.BytesIO(data)
        body.seek(HEADER_SIZE)
        try:
            reader = None if writer is self.schema else self.schema
            decoded = fastavro.schemaless_reader(body, writer, reader, return_record_name=True)
        except (EOFError, ValueError, IndexError, KeyError, UnicodeDecodeError) as exc:
            raise DecodeError("truncated", f"Avro body cannot be read: {exc!r}") from exc
        left = len(data) - body.tell()
        if left:
            raise DecodeError("trailing_bytes", f"{left} bytes after the event")
        if not isinstance(decoded, dict):
            raise DecodeError("truncated", "the Avro body is not a record")
        return record_from_avro(decoded)


def record_from_avro(decoded: Mapping[str, Any]) -> EventRecord:
    """The typed record of what fastavro read (`time` a datetime, `producer_id` a UUID)."""
    kind, fields = decoded["body"]
    return EventRecord(
        run_id=decoded["run_id"],
        experiment=decoded["experiment"],
        rank=decoded["rank"],
        world_size=decoded["world_size"],
        producer_id=str(decoded["producer_id"]),
        seq=decoded["seq"],
        time_us=micros(decoded["time"]),
        body=body_from_fields(kind, fields),
    )


@cache
def default_codec() -> EventCodec:
    """The process-wide codec (schemas are parsed once)."""
    return EventCodec()
