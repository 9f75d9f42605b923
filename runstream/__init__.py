"""runstream: what training jobs say about themselves, via Kafka into PostgreSQL and Prometheus."""

from runstream._errors import (
    AmbiguousRunError,
    ClosedError,
    ConfigError,
    DecodeError,
    NotFoundError,
    RunstreamError,
    TransportError,
    ValidationError,
)

__version__ = "0.1.0"

__all__ = [
    "AmbiguousRunError",
    "ClosedError",
    "ConfigError",
    "DecodeError",
    "NotFoundError",
    "RunstreamError",
    "TransportError",
    "ValidationError",
    "__version__",
]
