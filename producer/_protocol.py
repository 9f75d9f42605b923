"""The protocol between the training process (`Shipper`) and its courier process: both ends
import this module, so the messages are spelled in one place.

- trainer → courier, stdin: one line, the orders (`orders`: the pickled, base64-encoded
  `(ProducerConfig, folder path)`), then single bytes: `WAKE` (more was written), `CLOSE` (stop
  now). End of file also means stop.
- courier → trainer, stdout, one message a line: `r` once ready (`READY`), `a SEGMENT OFFSET`
  (everything before that spool position is acknowledged by Kafka; `acknowledged`) and
  `e KIND<TAB>MESSAGE<TAB>ERROR` (a problem the trainer counts and reports; `problem`).
"""

from __future__ import annotations

import base64
import pickle
from pathlib import Path
from typing import NamedTuple

from runstream._config import ProducerConfig
from runstream.producer._spool import SegmentCursor

WAKE = b"w"
CLOSE = b"c"
READY = "r\n"


class Problem(NamedTuple):
    """A problem the courier met: its kind (a counter's name), what it means, the error."""

    kind: str
    message: str
    error: str


Message = SegmentCursor | Problem | None  # None: the courier is ready


def orders(config: ProducerConfig, folder: Path) -> bytes:
    """The first line the trainer writes."""
    return base64.b64encode(pickle.dumps((config, str(folder)))) + b"\n"


def read_orders(line: bytes) -> tuple[ProducerConfig, Path]:
    """The courier's reading of `orders` (its parent wrote them)."""
    config, path = pickle.loads(base64.b64decode(line))  # noqa: S301 - from our own parent
    return config, Path(path)


def acknowledged(cursor: SegmentCursor) -> str:
    """The line saying Kafka acknowledged everything before `cursor`."""
    return f"a {cursor.segment} {cursor.offset}\n"


def problem(kind: str, message: str, error: BaseException) -> str:
    """The line reporting one problem (tabs and newlines inside it become spaces)."""
    return f"e {_clean(kind)}\t{_clean(message)}\t{_clean(error)}\n"


def parse(line: str) -> Message:
    """One line of the courier's: a cursor, a `Problem`, or None (ready). Unknown lines raise
    `ValueError`.
    """
    kind, _, rest = line.partition(" ")
    if kind == "r":
        return None
    if kind == "a":
        segment, offset = rest.split()
        return SegmentCursor(int(segment), int(offset))
    if kind == "e":
        what, message, error = [*rest.split("\t", 2), "", ""][:3]
        return Problem(what, message, error)
    raise ValueError(f"not a courier message: {line!r}")


def _clean(text: object) -> str:
    return str(text).replace("\t", " ").replace("\n", " ")
