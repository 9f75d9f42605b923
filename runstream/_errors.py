"""The exception tree of runstream.

RunstreamError
├── ConfigError (ValueError)        bad configuration, raised where the config is built
├── ValidationError (ValueError)    an event that breaks the rules, raised in the caller
├── DecodeError (ValueError)        bytes that are not a valid event; carries a dead-letter reason
├── ClosedError (RuntimeError)      a call on a run or producer that is already closed
├── NotFoundError (LookupError)     a run, metric, table or file the database does not hold
├── AmbiguousRunError (LookupError) a run id prefix (or an experiment) that names several runs
└── TransportError (OSError)        Kafka or PostgreSQL trouble; `retriable` says whether to retry
"""

from __future__ import annotations

from collections.abc import Sequence

EXIT_CONFIG = 78
"""Exit status of a service that stopped because its configuration cannot work (sysexits'
EX_CONFIG): a refused login or right, a missing topic or database. Supervisors do not retry it."""


class RunstreamError(Exception):
    """Root of every error runstream raises on purpose."""


class ConfigError(RunstreamError, ValueError):
    """A configuration value is missing or wrong; the message names it."""


class ValidationError(RunstreamError, ValueError):
    """An event breaks the rules: the message names the field, the value and what was expected."""

    def __init__(self, field: str, value: object, expected: str, *, rule: str = "invalid") -> None:
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"{field}={shown}: expected {expected}")
        self.field = field
        self.value = value
        self.expected = expected
        self.rule = rule


class DecodeError(RunstreamError, ValueError):
    """Bytes that cannot become an event. `reason` is the dead-letter reason label."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


class ClosedError(RunstreamError, RuntimeError):
    """The run or producer was closed; nothing more can be logged through it."""


class NotFoundError(RunstreamError, LookupError):
    """What was asked for is not stored; `suggestions` holds close names, when there are any."""

    def __init__(self, message: str, suggestions: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.message = message
        self.suggestions = tuple(suggestions)


class AmbiguousRunError(RunstreamError, LookupError):
    """Several runs match where one was meant; `matches` holds (some of) them."""

    def __init__(self, message: str, matches: Sequence[str]) -> None:
        super().__init__(message)
        self.message = message
        self.matches = tuple(matches)


class TransportError(RunstreamError, OSError):
    """Kafka or PostgreSQL could not be reached or refused a request."""

    def __init__(self, message: str, *, retriable: bool) -> None:
        super().__init__(message)
        self.retriable = retriable
