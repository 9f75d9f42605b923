"""`LogSource`: adds log records to a run from outside it, without speaking for any of its ranks.

A container's output or a system service's journal belongs to a run but is not one of its
ranks: a `LogSource` is a producer session (its own producer id, spool folder and courier) that
sends only `LogRecord` events. It never announces the run, sends no heartbeats and no end, so the
run's status, params and ranks stay what the training processes say. Its records carry the rank
given (0 by default, as `runstream run`'s captured output does) and count as that rank being
heard, as the launcher's own output does.
"""

from __future__ import annotations

import itertools

from runstream._config import ProducerConfig
from runstream.producer._context import RunContext
from runstream.producer._problems import ErrorCallback, ProblemReporter
from runstream.producer._shipper import CloseReport, Shipper
from runstream.schemas import LogRecord, check_name, default_codec, event_record, kinds
from runstream.schemas._rules import MESSAGE_MAX

LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")


class LogSource:
    """Ships log records of `source` to the run of `context`."""

    def __init__(
        self,
        context: RunContext,
        config: ProducerConfig,
        source: str,
        *,
        on_error: ErrorCallback | None = None,
    ) -> None:
        self.context = context
        self.source = check_name("source", source)
        self._codec = default_codec()
        self._shipper = Shipper(config, ProblemReporter(on_error), context.run_id.encode())
        self._seq = itertools.count()
        self.lines = 0

    def log(self, message: str, level: str = "INFO") -> None:
        """Add one line (cut to the message limit) at `level`."""
        body = LogRecord(level=level, logger=self.source, message=message[:MESSAGE_MAX])
        c = self.context
        event = event_record(
            run_id=c.run_id,
            experiment=c.experiment,
            rank=c.rank,
            world_size=c.world_size,
            producer_id=self._shipper.producer_id,
            seq=next(self._seq),
            kind=kinds.LOG_RECORD,
            body=body,
        )
        self._shipper.submit(self._codec.encode_record(event))
        self.lines += 1

    def flush(self, timeout: float) -> bool:
        """Block until Kafka acknowledged every line so far; False on timeout."""
        return self._shipper.flush(timeout)

    def close(self, timeout: float) -> CloseReport:
        """Deliver what can be within `timeout`; the rest waits in the spool for `sync`."""
        return self._shipper.close(timeout)
