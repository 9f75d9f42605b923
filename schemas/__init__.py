"""Event schemas and the codec: encode, decode, fingerprint, validate."""

from runstream.schemas import _kinds as kinds
from runstream.schemas._codec import (
    HEADER_SIZE,
    MAGIC,
    Event,
    EventCodec,
    default_codec,
    released_schema_files,
    schema_fingerprint,
)
from runstream.schemas._rules import (
    FILE_MAX,
    MESSAGE_MAX,
    NAME_MAX,
    check_event,
    check_name,
    check_run_id,
    check_seconds,
    check_step,
    check_string_map,
    check_text,
    check_value,
)

__all__ = [
    "FILE_MAX",
    "HEADER_SIZE",
    "MAGIC",
    "MESSAGE_MAX",
    "NAME_MAX",
    "Event",
    "EventCodec",
    "check_event",
    "check_name",
    "check_run_id",
    "check_seconds",
    "check_step",
    "check_string_map",
    "check_text",
    "check_value",
    "default_codec",
    "kinds",
    "released_schema_files",
    "schema_fingerprint",
]
