"""runstream: what training jobs say about themselves, via Kafka into PostgreSQL and Prometheus."""

from runstream._errors import (
    ClosedError,
    ConfigError,
    DecodeError,
    RunstreamError,
    TransportError,
    ValidationError,
)

__version__ = "0.1.0"

__all__ = [
    "ClosedError",
    "ConfigError",
    "DecodeError",
    "RunstreamError",
    "TransportError",
    "ValidationError",
    "__version__",
]
