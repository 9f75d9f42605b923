"""Soak: healthy runs through pipeline trouble get no verdict; injected faults are all detected.

    eval "$(runstream stack env)"
    python benchmarks/soak_watchdog.py [--minutes 20] [--healthy 4] [--ranks 3]

Runs against the local stack as it is (its topic, database, persist, export, watchdog,
Prometheus and Alertmanager, with the watchdog's default thresholds). It starts `--healthy` runs
of `--ranks` real training processes each (step times from 0.05 s to 1 s, each run saying
`expect_next_in=60`), and four fault runs that start healthy too: `hang` (every rank stops
stepping, heartbeats go on), `sigkill` (every rank SIGKILLed), `slow` (rank 2 at 40 % of the
others' step rate from then on), `unheard` (world size 3; rank 2 is SIGKILLed before its first
event, ranks 0 and 1 complete). Meanwhile it SIGKILLs and restarts persist, restarts PostgreSQL,
stops the broker for 30 s and restarts the watchdog. It reads the watchdog's verdicts from their
topic (RUNSTREAM_VERDICT_TOPIC) and listens on the stack's Alertmanager webhook
(StackConfig.webhook_port), then prints a confusion table: per run what was injected, what the
watchdog said and how fast, and alerts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from aiokafka import AIOKafkaConsumer

from runstream._settings import Settings
from runstream.deploy.local import StackConfig
from runstream.deploy.local import _process as process
from runstream.deploy.local import restart as stack_restart
from runstream.deploy.local import up as stack_up
from runstream.schemas import Body, RankStraggling, Status, default_codec

_RANK = """
import os, sys, time
from runstream.producer import start_run

step_time, mode = float(sys.argv[1]), sys.argv[2]
fault_at, until = float(sys.argv[3]), float(sys.argv[4])
run = start_run(experiment="soak")
run.report_progress(expect_next_in=60)
rank, step = int(os.environ.get("RANK", "0")), 0
while time.time() < until:
    faulty = time.time() >= fault_at
    if faulty and mode == "hang":
        time.sleep(0.5)
        continue
    run.log("loss", 1.0 / (step + 1), step=step)
    step += 1
    time.sleep(step_time / (0.4 if faulty and mode == "slow" and rank == 2 else 1.0))
run.complete(120)
"""


class AlertWebhook:
    """Firing alerts received: (run_id or job, alertname) -> first arrival (Unix seconds)."""

    def __init__(self, instances: frozenset[str] = frozenset()) -> None:
        self.instances = instances  # this stack's services: other stacks alert to the same port
        self.firing: dict[tuple[str, str], float] = {}
        self.available = True
        self._lock = threading.Lock()

    def received(self, note: dict[str, Any]) -> None:
        """One Alertmanager notification."""
        now = time.time()
        with self._lock:
            for alert in note.get("alerts", []):
                labels = alert.get("labels", {})
                ours = "run_id" in labels or labels.get("instance") in self.instances
                if alert.get("status") == "firing" and ours:
                    key = (labels.get("run_id") or labels.get("job", ""), labels["alertname"])
                    self.firing.setdefault(key, now)

    def first_firing(self, run_id: str) -> list[tuple[str, float]]:
        """(alert name, first arrival) of every alert about `run_id`."""
        with self._lock:
            return sorted((name, at) for (rid, name), at in self.firing.items() if rid == run_id)

    def pipeline_alerts(self) -> list[str]:
        """Names of alerts about services rather than runs."""
        with self._lock:
            return sorted({name for (rid, name) in self.firing if rid.startswith("runstream-")})

    @classmethod
    @contextmanager
    def listening(cls, port: int, instances: frozenset[str]) -> Iterator[AlertWebhook]:
        """Serve the webhook while inside (available=False when another process holds it)."""
        webhook = cls(instances)

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                webhook.received(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                """Quiet."""

        try:
            server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        except OSError:
            webhook.available = False
            yield webhook
            return
        thread = threading.Thread(target=server.serve_forever, name="alert-webhook", daemon=True)
        thread.start()
        try:
            yield webhook
        finally:
            server.shutdown()
            server.server_close()


@dataclass
class SoakRun:
    """One run of the soak: its processes, what is injected into it and when."""

    run_id: str
    world_size: int
    step_time: float
    fault: str = "none"  # none | hang | sigkill | slow | unheard
    fault_at: float = 0.0
    processes: list[asyncio.subprocess.Process] = field(default_factory=list)
    verdicts: list[tuple[float, str, int]] = field(default_factory=list)

    @property
    def expected(self) -> str | None:
        """The verdict the fault must bring."""
        return {"hang": "stalled", "sigkill": "lost", "slow": "straggling", "unheard": "lost"}.get(
            self.fault
        )


async def start_ranks(run: SoakRun, until: float) -> None:
    """One training process per rank (rank 2 of `unheard` never gets to log)."""
    for rank in range(run.world_size):
        env = {
            **os.environ,
            "RUNSTREAM_RUN_ID": run.run_id,
            "RANK": str(rank),
            "WORLD_SIZE": str(run.world_size),
        }
        code = "import time; time.sleep(3600)" if run.fault == "unheard" and rank == 2 else _RANK
        mode = "none" if run.fault == "unheard" else run.fault
        argv = [str(run.step_time), mode, str(run.fault_at), str(until)]
        proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, *argv, env=env)
        run.processes.append(proc)


async def watch_verdicts(runs: dict[str, SoakRun], stop: asyncio.Event) -> None:
    """Record each watchdog verdict about a soak run with the time it reached the topic."""
    settings = Settings()
    consumer = AIOKafkaConsumer(settings.verdict_topic, **settings.kafka().client_options())
    await consumer.start()
    codec = default_codec()
    try:
        while not stop.is_set():
            batches = await consumer.getmany(timeout_ms=500)
            for record in (r for rs in batches.values() for r in rs):
                event = codec.decode(record.value)
                run = runs.get(event.run_id)
                outcome = verdict_outcome(event.body)
                if run is not None and outcome is not None:
                    run.verdicts.append((record.timestamp / 1000, outcome, event.rank))
    finally:
        await consumer.stop()


def verdict_outcome(body: Body) -> str | None:
    """`lost`, `stalled`, `straggling` or `caught_up` for a watchdog event's body; None
    otherwise."""
    if isinstance(body, Status) and body.source == "watchdog":
        return body.state
    if isinstance(body, RankStraggling) and not body.straggling:
        return "caught_up"
    if isinstance(body, RankStraggling):
        gap = body.leader_step - body.step > Settings().straggler_steps
        return "straggling (gap)" if gap else "straggling (rate)"
    return None


async def disrupt(config: StackConfig, minutes: float, t0: float) -> list[str]:
    """Persist SIGKILLed, PostgreSQL restarted, the broker stopped 30 s, the watchdog restarted."""
    plan = [
        (0.15, "persist SIGKILLed and restarted", _kill_persist),
        (0.30, "PostgreSQL restarted", lambda c: stack_restart(c, ["postgres"])),
        (0.45, "broker stopped for 30 s", _stop_broker),
        (0.60, "watchdog restarted", lambda c: stack_restart(c, ["watchdog"])),
    ]
    done = []
    for fraction, what, act in plan:
        await asyncio.sleep(max(0.0, t0 + fraction * minutes * 60 - time.time()))
        started = time.time() - t0
        await act(config)
        done.append(f"{started:7.1f}s  {what}")
    return done


async def _kill_persist(config: StackConfig) -> None:
    pid_file = config.state_dir / "persist" / "persist.pid"
    await asyncio.to_thread(process.stop, pid_file, first_signal=signal.SIGKILL)
    await stack_up(config)


async def _stop_broker(config: StackConfig) -> None:
    await asyncio.to_thread(process.stop, config.state_dir / "kafka" / "kafka.pid")
    await asyncio.sleep(30)
    await stack_up(config)


async def inject(runs: list[SoakRun], until: float) -> None:
    """SIGKILL what the faults call for, at their time (hang and slow act by themselves).

    `unheard` starts then: rank 2 is killed at once, ranks 0 and 1 complete 30 s later.
    """
    for run in sorted((r for r in runs if r.fault != "none"), key=lambda r: r.fault_at):
        await asyncio.sleep(max(0.0, run.fault_at - time.time()))
        if run.fault == "sigkill":
            for proc in run.processes:
                proc.kill()
        if run.fault == "unheard":
            await start_ranks(run, min(until, time.time() + 30))
            run.processes[2].kill()


def plan_runs(args: argparse.Namespace, t0: float) -> list[SoakRun]:
    """The healthy runs and the four fault runs, their faults spread over the soak."""
    tag = uuid.uuid4().hex[:6]
    times = [0.05 + (1.0 - 0.05) * n / max(1, args.healthy - 1) for n in range(args.healthy)]
    runs = [SoakRun(f"soak-{tag}-ok-{n}", args.ranks, t) for n, t in enumerate(times)]
    length = args.minutes * 60
    faults = [
        ("hang", 0.20, 2, 0.2),
        ("sigkill", 0.35, 2, 0.2),
        ("slow", 0.50, 3, 1.0),  # slow steps: the rate rule sees it before the 100-step gap
        ("unheard", 0.70, 3, 0.2),
    ]
    for name, fraction, world, step_time in faults:
        run = SoakRun(f"soak-{tag}-{name}", world, step_time, name, t0 + fraction * length)
        runs.append(run)
    return runs


def detection(run: SoakRun) -> tuple[str, str]:
    """(what the watchdog said, after how long) for one run."""
    said = [o for _, o, _ in run.verdicts if o != "caught_up"]
    if run.expected is None:
        return (", ".join(said) or "none"), "-"
    hits = [(at, o) for at, o, _ in run.verdicts if o.startswith(run.expected)]
    if not hits:
        return (", ".join(said) or "none"), "MISSED"
    return hits[0][1], f"{hits[0][0] - run.fault_at:6.1f}s"


def report(runs: list[SoakRun], webhook: AlertWebhook, disruptions: list[str], t0: float) -> None:
    """The confusion table."""
    print("pipeline disruptions:")
    for line in disruptions:
        print("  " + line)
    print(
        f"\n{'run':<26} {'ranks':>5} {'step s':>6} {'injected':<10} {'verdicts':<22} "
        f"{'detected':>9}  alerts (webhook, after the fault)"
    )
    false_verdicts = missed = 0
    for run in runs:
        said, after = detection(run)
        alerts = webhook.first_firing(run.run_id)
        shown = ", ".join(f"{name} {at - (run.fault_at or t0):.0f}s" for name, at in alerts)
        unexpected = [o for _, o, _ in run.verdicts if o != "caught_up"]
        unexpected = [o for o in unexpected if not o.startswith(run.expected or "-")]
        false_verdicts += len(unexpected)
        missed += after == "MISSED"
        print(
            f"{run.run_id:<26} {run.world_size:>5} {run.step_time:>6.2f} {run.fault:<10} "
            f"{said:<22} {after:>9}  {shown or '-'}"
        )
    if not webhook.available:
        print("(the webhook port was taken by another process: no alerts recorded)")
    healthy_alerts = sum(len(webhook.first_firing(r.run_id)) for r in runs if r.fault == "none")
    print(
        f"\nfalse verdicts: {false_verdicts}   missed faults: {missed}   "
        f"alerts for healthy runs: {healthy_alerts}   "
        f"pipeline alerts: {', '.join(webhook.pipeline_alerts()) or 'none'}"
    )


async def soak(args: argparse.Namespace) -> None:
    config = StackConfig.from_settings(Settings())
    await stack_up(config)
    t0 = time.time()
    until = t0 + args.minutes * 60
    runs = plan_runs(args, t0)
    by_id = {run.run_id: run for run in runs}
    stop = asyncio.Event()
    settings = Settings()
    ours = (
        settings.exporter_address,
        settings.persist_health_address,
        settings.watchdog_health_address,
    )
    with AlertWebhook.listening(config.webhook_port, frozenset(ours)) as webhook:
        watcher = asyncio.create_task(watch_verdicts(by_id, stop))
        try:
            for run in runs:
                if run.fault != "unheard":
                    await start_ranks(run, until)
            disruptions, _ = await asyncio.gather(
                disrupt(config, args.minutes, t0), inject(runs, until)
            )
            await asyncio.sleep(max(0.0, until - time.time()))
            await finish(runs)
            await asyncio.sleep(args.settle)
        finally:
            await finish(runs, grace=0)
            stop.set()
            await watcher
        report(runs, webhook, disruptions, t0)


async def finish(runs: list[SoakRun], grace: float = 180) -> None:
    """Wait for every training process to end (they complete at the deadline); kill the rest."""
    for run in runs:
        for proc in run.processes:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), grace)
            if proc.returncode is None:
                proc.kill()
                await proc.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=20.0)
    parser.add_argument("--healthy", type=int, default=4)
    parser.add_argument("--ranks", type=int, default=3)
    parser.add_argument("--settle", type=float, default=60.0, help="seconds to wait for alerts")
    asyncio.run(soak(parser.parse_args()))


if __name__ == "__main__":
    main()
