"""`RunLogHandler`: ship the host's Python log records to a run as log events.

The SDK never installs a handler by itself; attach one where you want it:

    import logging
    from runstream.producer import get_run
    from runstream.producer.logging import RunLogHandler

    logging.getLogger("train").addHandler(RunLogHandler(get_run()))
"""

from __future__ import annotations

import logging

from runstream._errors import RunstreamError
from runstream.producer._base import RunBase

__all__ = ["RunLogHandler"]


class RunLogHandler(logging.Handler):
    """A `logging.Handler` that sends each record (formatted) to `run` as a `LogRecord` event."""

    def __init__(self, run: RunBase, level: int = logging.NOTSET) -> None:
        super().__init__(level)
        self.run = run

    def emit(self, record: logging.LogRecord) -> None:
        """Format the record and hand it to the run (never blocks, never raises into the host)."""
        if record.name.startswith(("runstream", "aiokafka")):
            return  # our own problems are reported elsewhere; shipping them could loop
        try:
            self.run.log_record(record.levelname, record.name, self.format(record))
        except (RunstreamError, ValueError):
            self.handleError(record)
