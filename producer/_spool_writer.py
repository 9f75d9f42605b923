"""`SpoolWriter`: moves what callers handed over (`Intake`) to the spool on disk, one block a write.

Each write is counted in the `AckLedger` with where it ended, so the courier's acknowledgements
count it. When the spool takes no more (it holds `spool_max_bytes`, or the disk is nearly full)
or a write fails, the events are dropped, counted and reported; nothing of a failed block stays
in the spool (`SegmentWriter`). The loop writes once a round (`write_pending`); a caller whose
memory queue is full writes itself (`spill`), the only disk write a caller ever does.
"""

from __future__ import annotations

import time

from runstream._config import ProducerConfig
from runstream._errors import TransportError
from runstream.producer._intake import Intake
from runstream.producer._ledger import AckLedger
from runstream.producer._problems import ProblemReporter
from runstream.producer._signals import critical
from runstream.producer._spool import SegmentWriter, SpoolFolder

_MEASURE_EVERY = 1.0  # seconds between measures of the spool folder and the disk


class SpoolWriter:
    """Writes the intake's pending events to the spool; counts writes and drops in the ledger."""

    def __init__(
        self,
        config: ProducerConfig,
        folder: SpoolFolder,
        key: bytes,
        intake: Intake,
        ledger: AckLedger,
        problems: ProblemReporter,
    ) -> None:
        self.key = key
        self._intake = intake
        self._ledger = ledger
        self._problems = problems
        self._segments = SegmentWriter(folder, config.segment_bytes)
        self._space = SpoolSpace(config, folder)

    def spill(self) -> None:
        """From a caller whose memory queue is full: pending events to disk now."""
        with critical, self._intake.lock:
            self._write()

    def write_pending(self) -> bool:
        """From the loop: pending events to disk; whether it wrote something."""
        written = self._ledger.written
        with self._intake.lock:
            self._write()
        return self._ledger.written > written

    def close(self) -> None:
        self._segments.close()

    def _write(self) -> None:
        """One block of every pending event (the caller holds the intake's lock)."""
        values = self._intake.take()
        if not values:
            return
        full = self._space.full()
        if full:
            self._drop(len(values), "spool_full", TransportError(full, retriable=True))
            return
        try:
            before = self._segments.offset
            segment, offset = self._segments.append(self.key, values)
        except OSError as exc:  # nothing of the block stays in the spool (`SegmentWriter`)
            self._drop(len(values), "spool_write", exc)
            return
        self._space.wrote(offset - before)
        if self._segments.roll_error is not None:
            error = self._segments.roll_error
            self._problems.report("spool_roll", error, "cannot start a new spool segment")
        self._ledger.record_write(segment, offset, len(values))

    def _drop(self, count: int, kind: str, error: BaseException) -> None:
        dropped = self._ledger.record_drop(count)
        self._problems.report(kind, error, f"dropped {count} events ({dropped} so far)")


class SpoolSpace:
    """Whether the spool may take more: the folder and the disk are measured (a listing, a stat
    per segment, a statvfs) once a second, or sooner when what was written since the last
    measure reaches a limit; between measures the courier only ever frees space.
    """

    def __init__(self, config: ProducerConfig, folder: SpoolFolder) -> None:
        self._max_bytes = config.spool_max_bytes
        self._min_free = config.spool_min_free_bytes
        self._folder = folder
        self._measured = self._unmeasured = self._free = 0
        self._measure_at = 0.0

    def wrote(self, size: int) -> None:
        """`size` bytes went to the spool since the last measure."""
        self._unmeasured += size

    def full(self) -> str | None:
        """Why the spool takes no more now, or None."""
        now = time.monotonic()
        if now < self._measure_at and self._within_limits():
            return None
        try:
            self._measured, self._free = self._folder.size(), self._folder.free_bytes()
        except OSError:  # cannot look (no file descriptor left): the write will tell
            return None
        self._unmeasured, self._measure_at = 0, now + _MEASURE_EVERY
        if self._measured >= self._max_bytes:
            return f"spool is full ({self._measured} bytes in {self._folder.path})"
        if self._free < self._min_free:
            return f"disk is nearly full ({self._free} bytes free under {self._folder.path})"
        return None

    def _within_limits(self) -> bool:
        used = self._measured + self._unmeasured
        free = self._free - self._unmeasured
        return used < self._max_bytes and free >= self._min_free
