"""`runstream consume` commands: the long-running services."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from prometheus_client import CollectorRegistry

from runstream._settings import Settings

if TYPE_CHECKING:
    from runstream.consumers import Service

# The services' modules (aiokafka, asyncpg) are imported by the commands that run them, so that
# every other `runstream` command starts fast.

app = typer.Typer(help="The consumers: persist, export and watchdog.", no_args_is_help=True)
log = logging.getLogger("runstream.consumers")

AddressFile = Annotated[
    Path | None,
    typer.Option(
        "--address-file",
        help="Once /metrics listens, write its host:port and a newline to this file (atomically)",
        dir_okay=False,
    ),
]


def write_address(path: Path, host: str, port: int) -> None:
    """Write `host:port` and a newline to `path` atomically: no file, or the whole line."""
    partial = path.with_name(f".{path.name}.{os.getpid()}")
    partial.write_text(f"{host}:{port}\n")
    partial.replace(path)


def _serve(
    service: Service,
    registry: CollectorRegistry,
    address: str,
    variable: str,
    address_file: Path | None,
    extra: Callable[[], str] | None = None,
) -> None:
    """Serve `registry` on `address`, run `service` until SIGTERM/SIGINT, then stop serving.

    A configuration that cannot work (a refused login or right, a missing topic or database) is
    logged and ends the process with exit status 78, which the stack's supervisor does not retry.
    """
    from runstream.consumers import (  # noqa: PLC0415
        EXIT_CONFIG,
        Address,
        MetricsEndpoint,
        ServiceMisconfigured,
        run_until_signalled,
    )
    from runstream.consumers._gc import settle_collector  # noqa: PLC0415

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    endpoint = MetricsEndpoint(registry, Address.parse(address, variable), extra=extra)
    log.info("serving /metrics on http://%s:%d", endpoint.host, endpoint.port)
    if address_file is not None:
        write_address(address_file, endpoint.host, endpoint.port)
    settle_collector()
    try:
        asyncio.run(run_until_signalled(service, Settings().shutdown_timeout))
    except ServiceMisconfigured as exc:
        log.error("cannot run: %s", exc)  # noqa: TRY400 - the message is the whole story
        raise typer.Exit(EXIT_CONFIG) from None
    finally:
        endpoint.close()


@app.command("persist")
def persist_command(address_file: AddressFile = None) -> None:
    """Store every event in PostgreSQL (group runstream-persist); health on its own /metrics."""
    from runstream.consumers import LoopOptions, PersistService  # noqa: PLC0415

    settings = Settings()
    registry = CollectorRegistry()
    options = LoopOptions.persist(settings.persist_group)
    service = PersistService(
        settings.kafka(),
        settings.database(),
        registry=registry,
        options=options,
        storage=settings.storage(),
    )
    address = settings.persist_health_address
    _serve(service.run, registry, address, "RUNSTREAM_PERSIST_HEALTH_ADDRESS", address_file)


@app.command("export")
def export_command(address_file: AddressFile = None) -> None:
    """Serve live run state as Prometheus series on RUNSTREAM_EXPORTER_ADDRESS (/metrics)."""
    from runstream.consumers import ExportService, LoopOptions  # noqa: PLC0415

    settings = Settings()
    registry = CollectorRegistry()
    options = LoopOptions.export(settings.export_group)
    service = ExportService(
        settings.kafka(),
        settings.database(read_only=True),
        registry=registry,
        config=settings.export(),
        options=options,
    )
    address = settings.exporter_address
    render = service.collector.render
    _serve(service.run, registry, address, "RUNSTREAM_EXPORTER_ADDRESS", address_file, render)


@app.command("watchdog")
def watchdog_command(address_file: AddressFile = None) -> None:
    """Mark runs stalled or lost and ranks straggling (group runstream-watchdog), on the verdict
    topic.
    """
    from runstream.consumers import LoopOptions, RunWatchdog, WatchPolicy  # noqa: PLC0415

    settings = Settings()
    registry = CollectorRegistry()
    policy = WatchPolicy(
        stall_after=settings.stall_after,
        lost_after=settings.lost_after,
        straggler_steps=settings.straggler_steps,
        straggler_window=settings.straggler_window,
        straggler_rate=settings.straggler_rate,
    )
    options = LoopOptions.watchdog(settings.watchdog_group)
    service = RunWatchdog(
        settings.kafka(),
        settings.database(read_only=True),
        registry=registry,
        policy=policy,
        interval=settings.watchdog_interval,
        options=options,
    )
    address = settings.watchdog_health_address
    _serve(service.run, registry, address, "RUNSTREAM_WATCHDOG_HEALTH_ADDRESS", address_file)
