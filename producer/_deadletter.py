"""The spool's dead-letter file: spooled events that Kafka would refuse, moved aside with why.

An event over its kind's size limit (`runstream.schemas.EVENT_LIMITS`) can be in a spool although
no call accepts one now: an older version wrote it, or a limit was lowered. Sent, it would be
refused by the broker again and again and hold up everything behind it. The courier and
`runstream sync` look at each frame's size before they send; one over the limit is appended to
`<spool dir>/dead-letters.jsonl`, one JSON object a line (`time`, `folder`, `reason`, `key` and the
event itself in base64, `value`), and counted, and what follows goes on.
"""

from __future__ import annotations

import base64
import json
import os
import time
from pathlib import Path

from runstream._errors import DecodeError
from runstream.producer._spool import Frame
from runstream.schemas import EVENT_LIMITS, EVENT_MAX, default_codec, event_limit

DEAD_LETTERS = "dead-letters.jsonl"
_SMALLEST_LIMIT = min([EVENT_MAX, *EVENT_LIMITS.values()])


def oversize_reason(value: bytes) -> str | None:
    """Why the encoded event `value` may not be sent (too large for its kind), or None."""
    size = len(value)
    if size <= _SMALLEST_LIMIT:
        return None
    try:
        kind = default_codec().decode_unchecked(value).kind
    except (DecodeError, KeyError, IndexError, TypeError):
        kind = None
    limit = EVENT_MAX if kind is None else event_limit(kind)
    if size <= limit:
        return None
    what = "an event" if kind is None else f"a {kind.rpartition('.')[2]} event"
    return f"oversize: {what} of {size} bytes, over its limit of {limit} bytes"


class DeadLetterFile:
    """Appends refused events of one spool directory to its dead-letter file."""

    def __init__(self, spool_dir: Path) -> None:
        self.path = spool_dir / DEAD_LETTERS

    def sieve(self, folder: str, frames: list[Frame]) -> tuple[list[Frame], list[str]]:
        """The frames that may be sent; the others are written aside. Returns (sendable, the
        reasons of those moved aside).
        """
        sendable: list[Frame] = []
        reasons: list[str] = []
        for key, value in frames:
            reason = oversize_reason(value) if len(value) > _SMALLEST_LIMIT else None
            if reason is None:
                sendable.append((key, value))
                continue
            try:
                self.add(folder, key, value, reason)
            except OSError as exc:  # a full disk: the event is lost, and said to be
                reason += f" (not kept: cannot write {self.path}: {exc.strerror})"
            reasons.append(reason)
        return sendable, reasons

    def add(self, folder: str, key: bytes, value: bytes, reason: str) -> None:
        """Append one event with its reason (one write call: lines of several writers never mix)."""
        record = {
            "time": time.time(),
            "folder": folder,
            "reason": reason,
            "key": key.decode(errors="replace"),
            "value": base64.b64encode(value).decode(),
        }
        line = (json.dumps(record) + "\n").encode()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)
            os.fsync(fd)
        finally:
            os.close(fd)
