"""`runstream sync`: deliver the spools that dead or offline runs left on disk."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from runstream._config import ProducerConfig
from runstream.producer._courier import deliver_folder
from runstream.producer._problems import ProblemReporter
from runstream.producer._sender import KafkaSender
from runstream.producer._spool import SpoolFolder, orphaned_folders

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What a sync delivered, and which live sessions it left to their owners."""

    folders: int
    events: int
    busy: int


def pending_bytes(spool_dir: Path) -> int:
    """Bytes waiting in every session folder of a spool directory (live ones included)."""
    if not spool_dir.is_dir():
        return 0
    return sum(SpoolFolder(p).size() for p in spool_dir.iterdir() if p.is_dir())


async def sync_spool(config: ProducerConfig, on_progress: Progress | None = None) -> SyncReport:
    """Deliver every folder whose owner is gone; live sessions deliver their own.

    Waits while Kafka is unreachable: bound it with `asyncio.timeout` where that matters.
    """
    sender = KafkaSender(config, ProblemReporter())
    total = pending_bytes(config.spool_dir)
    folders = events = done = 0
    try:
        for folder in orphaned_folders(config.spool_dir):
            size = folder.size()
            events += await deliver_folder(folder, sender)
            folders += 1
            done += size
            if on_progress:
                on_progress(done, total)
    finally:
        await sender.stop()
    busy = (
        sum(1 for p in config.spool_dir.iterdir() if p.is_dir()) if config.spool_dir.is_dir() else 0
    )
    return SyncReport(folders, events, busy)
