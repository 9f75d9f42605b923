"""Events a run left in its spool, decoded into records, and their bodies of one type."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

from runstream.producer._spool import SpoolFolder, SpoolReader
from runstream.schemas import EventRecord, default_codec

B = TypeVar("B")


def spooled_events(spool: Path) -> list[EventRecord]:
    """Every event in the spool's session folders, folder by folder, in spool order."""
    events: list[EventRecord] = []
    for path in sorted(p for p in spool.iterdir() if p.is_dir()):
        reader = SpoolReader(SpoolFolder(path))
        while batch := reader.next_batch():
            events.extend(default_codec().decode(value) for _, value in batch)
            reader.commit()
    return events


def bodies(events: list[EventRecord], kind: type[B]) -> list[B]:
    """The bodies of `events` that are of type `kind`, in order."""
    return [e.body for e in events if isinstance(e.body, kind)]
