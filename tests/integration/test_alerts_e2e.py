"""End to end: a real run stops progressing while it heartbeats; the stack's watchdog marks it
stalled, the exporter shows it, the real Prometheus evaluates deploy/prometheus rules, and the
real Alertmanager delivers RunStalled to a webhook in this test. A run that completes normally
alongside it produces no alert at all.

Bound: the run says `expect_next_in=3` s; the watchdog checks every RUNSTREAM_WATCHDOG_INTERVAL
(5 s), the stack scrapes and evaluates every 2 s, RunStalled needs `for: 30s` (held from one
evaluation to another, so one more), Alertmanager waits 1 s (group_wait) and flushes every 2 s
(group_interval). ALERT_BOUND is that sum plus one more watchdog interval for the status event's
way through Kafka and the exporter.

The webhook listens on the stack's own RUNSTREAM_STACK_ALERTMANAGER_WEBHOOK_PORT, the port the
stack wrote into Alertmanager's config, so stacks side by side never share one.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from runstream._config import KafkaConfig, ProducerConfig
from runstream._settings import Settings
from runstream.deploy.local import StackConfig, StackEndpoints
from runstream.producer import Run, start_run

EXPECT_NEXT_IN = 3.0
WATCHDOG_INTERVAL = Settings().watchdog_interval  # the stack's watchdog reads the same setting
SCRAPE = EVALUATE = 2.0  # deploy/local/templates/prometheus.yml
FOR = 30.0  # RunStalled's `for:` in deploy/prometheus/runs.rules.yml
GROUP_WAIT, GROUP_INTERVAL = 1.0, 2.0  # deploy/alertmanager/alertmanager.yml
ALERT_BOUND = (
    EXPECT_NEXT_IN
    + 2 * WATCHDOG_INTERVAL
    + SCRAPE
    + EVALUATE
    + FOR
    + EVALUATE
    + GROUP_WAIT
    + GROUP_INTERVAL
)
# The run completes: the exporter shows `completed` within a scrape, the rule stops within an
# evaluation, Alertmanager sends the resolution at its next group interval.
RESOLVE_BOUND = WATCHDOG_INTERVAL + SCRAPE + 2 * EVALUATE + 2 * GROUP_INTERVAL


@dataclass
class Webhook:
    """Every Alertmanager notification received, in order."""

    notifications: list[dict[str, Any]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def alerts(self, run_id: str) -> list[dict[str, Any]]:
        with self.changed:
            return [
                alert
                for note in self.notifications
                for alert in note["alerts"]
                if alert["labels"].get("run_id") == run_id
            ]

    def wait(
        self, found: Callable[[], list[dict[str, Any]]], timeout: float
    ) -> list[dict[str, Any]]:
        deadline = time.monotonic() + timeout
        with self.changed:
            while not (hits := found()) and time.monotonic() < deadline:
                self.changed.wait(max(0.0, deadline - time.monotonic()))
        return hits


@pytest.fixture
def webhook(stack_config: StackConfig) -> Iterator[Webhook]:
    state = Webhook()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            with state.changed:
                state.notifications.append(body)
                state.changed.notify_all()
            self.send_response(200)
            self.end_headers()

        def log_message(self, format: str, *args: object) -> None:
            """Quiet."""

    address = ("127.0.0.1", stack_config.webhook_port)
    try:
        server = ThreadingHTTPServer(address, Handler)
    except OSError as exc:
        pytest.fail(f"the stack's alert webhook port {address} is taken: {exc}")
    thread = threading.Thread(target=server.serve_forever, name="webhook", daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()
    thread.join(5)


def producer_config(stack: StackEndpoints, config: StackConfig, spool: Path) -> ProducerConfig:
    kafka = KafkaConfig(stack.bootstrap_servers, topic=config.topic, dlq_topic=config.dlq_topic)
    return ProducerConfig(kafka=kafka, spool_dir=spool, heartbeat_interval=1.0)


def train(run: Run, steps: int) -> None:
    for step in range(steps):
        run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        run.report_progress(expect_next_in=EXPECT_NEXT_IN)
        time.sleep(0.05)
    assert run.flush(30.0)


def firing(webhook: Webhook, run_id: str, name: str) -> Callable[[], list[dict[str, Any]]]:
    return lambda: [
        a
        for a in webhook.alerts(run_id)
        if a["labels"]["alertname"] == name and a["status"] == "firing"
    ]


def resolved(webhook: Webhook, run_id: str, name: str) -> Callable[[], list[dict[str, Any]]]:
    return lambda: [
        a
        for a in webhook.alerts(run_id)
        if a["labels"]["alertname"] == name and a["status"] == "resolved"
    ]


def prometheus_alerts(stack: StackEndpoints, run_id: str, since: float) -> list[dict[str, Any]]:
    query = f'ALERTS{{run_id="{run_id}"}}'
    params: dict[str, str | float] = {
        "query": query,
        "start": since,
        "end": time.time(),
        "step": "2s",
    }
    answer = httpx.get(f"{stack.prometheus_url}/api/v1/query_range", params=params, timeout=10)
    answer.raise_for_status()
    result: list[dict[str, Any]] = answer.json()["data"]["result"]
    return result


@pytest.fixture
def spool() -> Iterator[Path]:
    """A spool folder of its own (pytest's temp folders are pruned by concurrent sessions)."""
    with tempfile.TemporaryDirectory(prefix="runstream-alerts-") as folder:
        yield Path(folder)


def test_stalled_run_pages_and_completed_run_stays_quiet(
    stack: StackEndpoints, stack_config: StackConfig, webhook: Webhook, spool: Path
) -> None:
    config = producer_config(stack, stack_config, spool)
    experiment = f"alerts-e2e-{uuid.uuid4().hex[:8]}"
    started = time.time()
    stuck = start_run(experiment, name="stuck", config=config)
    quiet = start_run(experiment, name="quiet", config=config)
    try:
        train(stuck, 20)  # then it stops progressing; its heartbeats go on every second
        train(quiet, 20)
        quiet.complete(30.0)
        stalled_at = time.monotonic()

        hits = webhook.wait(firing(webhook, stuck.run_id, "RunStalled"), ALERT_BOUND)
        waited = time.monotonic() - stalled_at
        assert hits, (
            f"no RunStalled for {stuck.run_id} within {ALERT_BOUND:.0f}s; notifications: "
            f"{webhook.notifications}"
        )
        alert = hits[0]
        assert alert["labels"]["experiment"] == experiment
        assert alert["labels"]["run_name"] == "stuck"
        assert alert["labels"]["severity"] == "critical"
        assert alert["labels"]["detector"] == "watchdog"
        assert "runbook" in alert["annotations"]
        assert waited >= 30.0  # the rule's `for: 30s` held
        print(f"RunStalled delivered {waited:.1f}s after the run stopped progressing")

        stuck.complete(30.0)  # finished runs never alert: the alert resolves
        assert webhook.wait(resolved(webhook, stuck.run_id, "RunStalled"), RESOLVE_BOUND), (
            f"RunStalled for {stuck.run_id} did not resolve within {RESOLVE_BOUND:.0f}s"
        )
    finally:
        stuck.close(10.0)
        quiet.close(10.0)

    assert webhook.alerts(quiet.run_id) == []
    assert prometheus_alerts(stack, quiet.run_id, started) == []
