"""The whole local stack: install, up (idempotent, waits for health), down, status, purge.

`up` brings Kafka, PostgreSQL, Prometheus and Alertmanager up side by side, then runs the
database migrations, then the runstream services whose commands exist. A service this stack
already runs and that answers is left alone. `down` stops, by the pids in their pid files, only
processes this stack started, the services before what they depend on.
"""

from __future__ import annotations

import asyncio
import fcntl
import os
import shutil
import subprocess
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from runstream.deploy.local import _commands, _install, _process
from runstream.deploy.local._alertmanager import AlertmanagerServer
from runstream.deploy.local._config import StackConfig
from runstream.deploy.local._consumers import (
    ConsumerService,
    ExportService,
    PersistService,
    WatchdogService,
)
from runstream.deploy.local._kafka import KafkaBroker
from runstream.deploy.local._postgres import PostgresServer
from runstream.deploy.local._prometheus import PrometheusServer
from runstream.deploy.local._service import Progress, Service, ServiceStatus, StackError, Step

_MARKER = ".runstream-stack"


def core_services(config: StackConfig) -> list[Service]:
    """Kafka (each node), PostgreSQL, Prometheus and Alertmanager."""
    brokers: list[Service] = [KafkaBroker(config, node) for node in config.kafka_nodes()]
    kinds: list[type[Service]] = [PostgresServer, PrometheusServer, AlertmanagerServer]
    return [*brokers, *(kind(config) for kind in kinds)]


def consumer_services(config: StackConfig) -> list[ConsumerService]:
    """The runstream services, in start order."""
    return [PersistService(config), ExportService(config), WatchdogService(config)]


async def install(config: StackConfig, progress: Progress | None = None) -> None:
    """Install what is missing: Debian packages (apt-get), the Kafka jars (Maven)."""
    report = progress or _quiet
    log_file = config.state_dir / "install.log"
    missing = _install.missing_packages()
    if missing:
        report("install", f"apt-get install {' '.join(missing)}", "working")
        await asyncio.to_thread(_install.install_packages, missing, log_file)
    libs = KafkaBroker(config).libs
    if not _install.kafka_jars_present(libs):
        report("install", "resolving the Kafka jars with Maven", "working")
        await asyncio.to_thread(_install.install_kafka_jars, libs, log_file)
    report("install", "everything installed", "done")


async def up(config: StackConfig, progress: Progress | None = None) -> list[str]:
    """Bring the stack up and wait until every service answers; return what was started.

    Raises `StackError` (with the failing service's log tail) when a service does not come up.
    """
    report = progress or _quiet
    async with _locked(config, report):
        await install(config, report)
        discovery = asyncio.create_task(asyncio.to_thread(_commands.available_commands))
        try:
            started = await _ensure_all(core_services(config), report)
        finally:
            available = await discovery
        await _migrate(config, available, report)
        started += await _ensure_consumers(consumer_services(config), available, report)
    return started


async def start(
    config: StackConfig, names: Sequence[str], progress: Progress | None = None
) -> list[str]:
    """Make only the named core services run and answer (no install, migrations or consumers).

    For a partial stack (a Kafka cluster of its own in a test) and for bringing one stopped or
    killed node back; return what was started.
    """
    services = _named(core_services(config), names)
    async with _locked(config, progress or _quiet):
        return await _ensure_all(services, progress or _quiet)


async def stop(
    config: StackConfig, names: Sequence[str], progress: Progress | None = None
) -> list[tuple[str, int]]:
    """Stop only the named services (by their pid files); return `(name, pid)` stopped."""
    services = _named([*core_services(config), *consumer_services(config)], names)
    report = progress or _quiet
    async with _locked(config, report):
        pids = [await _stop(service, report) for service in services]
    return [(s.name, pid) for s, pid in zip(services, pids, strict=True) if pid]


def _named(services: Sequence[Service], names: Sequence[str]) -> list[Service]:
    unknown = sorted(set(names) - {service.name for service in services})
    if unknown:
        raise StackError("stack", f"no such service: {', '.join(unknown)}")
    return [service for service in services if service.name in names]


async def down(config: StackConfig, progress: Progress | None = None) -> list[tuple[str, int]]:
    """Stop every process this stack started, services first; return `(name, pid)` stopped."""
    report = progress or _quiet
    if not config.state_dir.exists():
        return []
    core = {service.name: service for service in core_services(config)}
    brokers = [s for s in core.values() if isinstance(s, KafkaBroker)]
    tiers: list[Sequence[Service]] = [
        list(reversed(consumer_services(config))),
        [core["prometheus"], core["alertmanager"]],
        [core["postgres"], *brokers],
    ]
    stopped: list[tuple[str, int]] = []
    async with _locked(config, report):
        for tier in tiers:
            pids = await asyncio.gather(*(_stop(service, report) for service in tier))
            stopped += [(s.name, pid) for s, pid in zip(tier, pids, strict=True) if pid]
    return stopped


async def restart(
    config: StackConfig, names: Sequence[str] = (), progress: Progress | None = None
) -> list[str]:
    """Stop the named services (every service if none is named), then `up`.

    For a service whose code or config changed; return what `up` started.
    """
    services = [*core_services(config), *consumer_services(config)]
    chosen = _named(services, names) if names else services
    report = progress or _quiet
    async with _locked(config, report):
        for service in reversed(chosen):
            await _stop(service, report)
    return await up(config, progress)


async def purge(config: StackConfig, progress: Progress | None = None) -> None:
    """`down`, then delete the state folder (only if it is a stack's state folder)."""
    await down(config, progress)
    state = config.state_dir
    if not state.exists():
        return
    ours = {s.name for s in [*core_services(config), *consumer_services(config)]}
    ours |= {_MARKER, "stack.lock", "install.log", "migrations.log", "secure"}
    strangers = sorted(p.name for p in state.iterdir() if p.name not in ours)
    if not (state / _MARKER).exists() or strangers:
        raise StackError("stack", f"not deleting {state}: not only a stack's state {strangers}")
    await asyncio.to_thread(PostgresServer(config).remove_outside_home)
    await asyncio.to_thread(shutil.rmtree, state)
    (progress or _quiet)("stack", f"deleted {state}", "done")


async def status(config: StackConfig) -> list[ServiceStatus]:
    """Health, address and pid of every service."""
    services = [*core_services(config), *consumer_services(config)]
    return list(await asyncio.gather(*(service.status() for service in services)))


def log_tails(config: StackConfig, lines: int = 40) -> dict[str, str]:
    """The end of every service's log (for failure reports)."""
    services = [*core_services(config), *consumer_services(config)]
    tails = {service.name: service.log_tail(lines) for service in services}
    tails["install"] = _process.tail(config.state_dir / "install.log", lines)
    tails["migrations"] = _process.tail(config.state_dir / "migrations.log", lines)
    return {name: text for name, text in tails.items() if text}


async def _ensure_all(services: Sequence[Service], report: Progress) -> list[str]:
    results = await asyncio.gather(
        *(_ensure(service, report) for service in services), return_exceptions=True
    )
    failures = [result for result in results if isinstance(result, BaseException)]
    stack_errors = [failure for failure in failures if isinstance(failure, StackError)]
    if len(stack_errors) < len(failures):  # a bug, not a service that failed: show it first
        raise next(f for f in failures if not isinstance(f, StackError))
    if len(stack_errors) > 1:  # one node waiting for another that failed: say both
        first = stack_errors[0]
        message = "; ".join(str(failure) for failure in stack_errors)
        raise StackError(first.service, message, log_tail=first.log_tail) from first
    if failures:
        raise failures[0]
    return [service.name for service, new in zip(services, results, strict=True) if new]


async def _ensure(service: Service, report: Progress) -> bool:
    """Make `service` run and answer; True if this call started it."""
    try:
        pid = service.pid()
        started = pid is None
        if pid is None:
            pid = await _start(service, report)
        report(service.name, f"waiting for {service.address}", "working")
        await service.wait_ready(pid)
        await service.configure()
    except StackError as exc:
        report(service.name, exc.reason, "failed")
        raise
    verb = "started" if started else "already running"
    report(service.name, f"{verb} · {service.address} · pid {pid}", "done")
    return started


async def _ensure_consumers(
    services: Sequence[ConsumerService], available: frozenset[str], report: Progress
) -> list[str]:
    runnable = [s for s in services if s.command in available or s.pid() is not None]
    for service in services:
        if service not in runnable:
            service.mark_skipped()
            message = f"skipped: `runstream {service.command}` not there yet"
            report(service.name, message, "skipped")
    return await _ensure_all(runnable, report)


async def _start(service: Service, report: Progress) -> int:
    taken = await service.port_taken()
    if taken is not None:
        raise service.fail(f"port {taken} is taken by a process this stack did not start")
    try:
        report(service.name, "preparing", "working")
        await asyncio.to_thread(service.prepare)
        report(service.name, "starting", "working")
        pid = await asyncio.to_thread(service.launch)
        _process.write_pid_file(service.pid_file, pid)
    except (OSError, subprocess.SubprocessError) as exc:
        raise service.fail(f"could not start: {exc}") from exc
    return pid


async def _migrate(config: StackConfig, available: frozenset[str], report: Progress) -> None:
    if "db upgrade" not in available:
        report("migrations", "skipped: `runstream db upgrade` not there yet", "skipped")
        return
    report("migrations", "runstream db upgrade", "working")
    output = await asyncio.to_thread(_commands.run_migrations, config)
    last_line = output.splitlines()[-1] if output else "done"
    report("migrations", last_line, "done")


async def _stop(service: Service, report: Progress) -> int | None:
    report(service.name, "stopping", "working")
    pid = await asyncio.to_thread(
        _process.stop, service.pid_file, first_signal=service.stop_signal, grace=service.stop_grace
    )
    report(service.name, f"stopped pid {pid}" if pid else "not running", "done")
    return pid


@asynccontextmanager
async def _locked(config: StackConfig, report: Progress) -> AsyncIterator[None]:
    """One `up`, `down` or `restart` at a time per state folder (across processes).

    A state folder made here is 0700: it holds event data, logs and (secure stack) secrets.
    """
    if not config.state_dir.exists():
        config.state_dir.mkdir(parents=True, mode=0o700)
        config.state_dir.chmod(0o700)
    (config.state_dir / _MARKER).touch()
    descriptor = os.open(config.state_dir / "stack.lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        await _acquire(descriptor, report)
        yield
    finally:
        os.close(descriptor)


async def _acquire(descriptor: int, report: Progress) -> None:
    waited = False
    while True:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            if not waited:
                report("stack", "waiting for another up/down of this stack", "working")
                waited = True
            await asyncio.sleep(0.2)
        else:
            break
    if waited:
        report("stack", "the other up/down is done", "done")


def _quiet(service: str, message: str, step: Step) -> None:
    """A progress callback that ignores everything."""
