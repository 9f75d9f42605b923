"""The services' own health metrics, and the HTTP endpoint that serves a registry.

Each service builds one `CollectorRegistry` and injects it here; nothing touches the global
registry. The endpoint runs in its own thread: a scrape never waits on the consume loop.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Mapping
from threading import Thread
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server
from wsgiref.types import StartResponse
from wsgiref.types import WSGIApplication as WSGIApp

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import ThreadingWSGIServer

from runstream._config import Address

_CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
_WRITE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ConsumerHealth:
    """Events consumed by kind, dead letters by reason, batch write time, lag and commits."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.events = Counter(
            "runstream_consumer_events", "Events consumed, by kind", ["kind"], registry=registry
        )
        self.dead_letters = Counter(
            "runstream_consumer_dead_letters",
            "Records that were not valid events, by reason",
            ["reason"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "runstream_consumer_batch_write_seconds",
            "Time to write one batch (one partition, one transaction)",
            buckets=_WRITE_BUCKETS,
            registry=registry,
        )
        self.lag = Gauge(
            "runstream_consumer_lag_messages",
            "Records behind the partition's high watermark",
            ["topic", "partition"],
            registry=registry,
        )
        self.last_commit = Gauge(
            "runstream_consumer_last_commit_timestamp_seconds",
            "When offsets were last committed (Unix time)",
            registry=registry,
        )
        self.database_errors = Counter(
            "runstream_consumer_database_errors",
            "Batch writes that failed because the database was unavailable (then retried)",
            registry=registry,
        )
        self.paused = Gauge(
            "runstream_consumer_paused",
            "1 while consumption is paused because the sink is unavailable",
            registry=registry,
        )

    def consumed(self, counts: Mapping[str, int]) -> None:
        """Count events by kind."""
        for kind, count in counts.items():
            self.events.labels(kind).inc(count)

    def dead(self, reasons: Iterable[str]) -> None:
        """Count dead letters by reason."""
        for reason in reasons:
            self.dead_letters.labels(reason).inc()

    def committed(self) -> None:
        """Offsets were committed now."""
        self.last_commit.set(time.time())

    def forget_partition(self, topic: str, partition: int) -> None:
        """A partition left this consumer: drop its lag series."""
        with contextlib.suppress(KeyError):
            self.lag.remove(topic, str(partition))


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        """Scrapes are not worth a log line each."""


def metrics_app(registry: CollectorRegistry, extra: Callable[[], str] | None) -> WSGIApp:
    """A WSGI app serving `registry` (and `extra()`'s text, appended) as text exposition 0.0.4."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> list[bytes]:
        if environ.get("PATH_INFO") not in ("/", "/metrics"):
            start_response("404 Not Found", [("Content-Type", "text/plain")])
            return [b"not found: try /metrics\n"]
        body = generate_latest(registry) + (extra().encode() if extra else b"")
        headers = [("Content-Type", _CONTENT_TYPE), ("Content-Length", str(len(body)))]
        start_response("200 OK", headers)
        return [body]

    return app


class MetricsEndpoint:
    """A /metrics HTTP server for one registry (plus optional extra text), in a daemon thread."""

    def __init__(
        self,
        registry: CollectorRegistry,
        address: Address,
        *,
        extra: Callable[[], str] | None = None,
    ) -> None:
        app = metrics_app(registry, extra)
        self._server = make_server(
            address.host, address.port, app, ThreadingWSGIServer, handler_class=_QuietHandler
        )
        self._thread = Thread(
            target=self._server.serve_forever, name="runstream-metrics", daemon=True
        )
        self._thread.start()

    @property
    def host(self) -> str:
        """The bound host."""
        return str(self._server.server_address[0])

    @property
    def port(self) -> int:
        """The bound port (useful when 0 was asked)."""
        return int(self._server.server_port)

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5.0)
