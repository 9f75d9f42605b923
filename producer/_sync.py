"""`runstream sync`: deliver the spools that dead or offline runs left on disk.

Each folder goes to the destination it records (its Kafka servers and topic), with the security
settings of the configuration given; a folder that records none (an older version's) goes to the
configuration's. `to` sends every folder there instead, on purpose. A sync always ends: events
over their size limit are moved to the spool's dead-letter file, and once `within` seconds have
passed (Kafka unreachable, say) what is not sent stays where it is and is counted as left.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from runstream._config import ProducerConfig
from runstream.producer._courier import Delivery, deliver_folder
from runstream.producer._deadletter import DeadLetterFile
from runstream.producer._problems import ProblemReporter
from runstream.producer._sender import KafkaSender
from runstream.producer._spool import Destination, SpoolFolder, orphaned_folders

Progress = Callable[[int, int], None]


@dataclass(frozen=True, slots=True)
class SyncReport:
    """What a sync did: folders delivered whole, events sent, events moved aside to the
    dead-letter file, events left on disk (not sent in time), and live sessions' folders.
    """

    folders: int
    events: int
    busy: int
    skipped: int = 0
    left: int = 0
    dead_letters: str = ""


def pending_bytes(spool_dir: Path) -> int:
    """Bytes waiting in every session folder of a spool directory (live ones included)."""
    if not spool_dir.is_dir():
        return 0
    return sum(SpoolFolder(p).size() for p in spool_dir.iterdir() if p.is_dir())


class _Senders:
    """One Kafka producer per destination, made when first needed."""

    def __init__(self, config: ProducerConfig) -> None:
        self.config = config
        self._by_destination: dict[Destination, KafkaSender] = {}

    def sender(self, destination: Destination) -> KafkaSender:
        sender = self._by_destination.get(destination)
        if sender is None:
            kafka = replace(
                self.config.kafka,
                bootstrap_servers=destination.bootstrap_servers,
                topic=destination.topic,
            )
            sender = KafkaSender(replace(self.config, kafka=kafka), ProblemReporter())
            self._by_destination[destination] = sender
        return sender

    async def stop(self) -> None:
        for sender in self._by_destination.values():
            await sender.stop()


async def sync_spool(
    config: ProducerConfig,
    on_progress: Progress | None = None,
    *,
    to: Destination | None = None,
    within: float | None = None,
) -> SyncReport:
    """Deliver every folder whose owner is gone, each to its own destination (or `to`); live
    sessions deliver their own. Gives up on what Kafka has not taken after `within` seconds.
    """
    give_up_at = None if within is None else time.monotonic() + within
    configured = Destination(config.kafka.bootstrap_servers, config.kafka.topic)
    dead_letters = DeadLetterFile(config.spool_dir)
    senders = _Senders(config)
    total = pending_bytes(config.spool_dir)
    folders = events = skipped = left = unfinished = done = 0
    try:
        for folder in orphaned_folders(config.spool_dir):
            size = folder.size()
            destination = to or folder.destination() or configured
            try:
                if give_up_at is not None and time.monotonic() >= give_up_at:
                    delivery = Delivery(0, 0, folder.count_frames())
                else:
                    sender = senders.sender(destination)
                    delivery = await deliver_folder(folder, sender, dead_letters, give_up_at)
            finally:
                folder.unlock()
            events += delivery.sent
            skipped += delivery.skipped
            left += delivery.left
            folders += delivery.left == 0
            unfinished += delivery.left > 0
            done += size
            if on_progress:
                on_progress(done, total)
    finally:
        await senders.stop()
    spool = config.spool_dir
    busy = sum(1 for p in spool.iterdir() if p.is_dir()) - unfinished if spool.is_dir() else 0
    return SyncReport(folders, events, busy, skipped, left, str(dead_letters.path))
