"""`runstream consume export` against real Kafka (and PostgreSQL for its rebuild)."""

from __future__ import annotations

import asyncio
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path

import httpx

from runstream.consumers._topics import delete_topics, ensure_topics
from runstream.deploy.local import StackEndpoints
from tests.harness import (
    EventFactory,
    Harness,
    Samples,
    produce,
    scrape_until,
    wait_until,
)


def series(page: Samples, name: str, **match: str) -> dict[tuple[str, ...], float]:
    """Samples of `name` whose labels include `match`, keyed by their other label values."""
    found = {}
    for labels, value in page.get(name, []):
        if all(labels.get(k) == v for k, v in match.items()):
            rest = tuple(v for k, v in sorted(labels.items()) if k not in match)
            found[rest] = value
    return found


async def test_exporter_shows_last_value_step_status_and_liveness_per_rank(
    harness: Harness,
) -> None:
    export = harness.service("export").start()
    ranks = [
        EventFactory(f"exp-{harness.suffix}", "vision", rank=r, world_size=2) for r in range(2)
    ]
    messages = [(ranks[0].key, ranks[0].run_started(name="resnet\nlarge"))]
    messages += [
        (r.key, r.metrics(step, {"loss": step + r.rank / 10, "lr": 0.1}))
        for step in range(50)
        for r in ranks
    ]
    await produce(harness.kafka, messages)

    def ready(page: Samples) -> bool:
        return series(page, "runstream_metric_step", metric="loss") == {
            ("vision", "0", ranks[0].run_id): 49.0,
            ("vision", "1", ranks[0].run_id): 49.0,
        }

    page = await scrape_until(export.metrics_url(), ready, within=60)
    assert series(page, "runstream_metric_value", metric="loss", rank="1") == {
        ("vision", ranks[0].run_id): 49.1
    }
    info = series(page, "runstream_run_info", run_id=ranks[0].run_id)
    assert info == {("vision", "resnet\ufffdlarge", "running"): 1.0}
    assert set(series(page, "runstream_run_step", run_id=ranks[0].run_id).values()) == {49.0}
    heartbeats = series(page, "runstream_run_last_heartbeat_timestamp_seconds")
    assert len(heartbeats) == 2
    events = {labels["kind"]: value for labels, value in page["runstream_consumer_events_total"]}
    assert events == {"run_started": 1.0, "metrics": 100.0}


async def test_finished_runs_leave_after_the_ttl(harness: Harness) -> None:
    ttl = 3.0
    export = harness.service("export", RUNSTREAM_FINISHED_RUN_TTL=str(ttl)).start()
    done, live = EventFactory(f"done-{harness.suffix}"), EventFactory(f"live-{harness.suffix}")
    url = export.metrics_url()

    def runs(page: Samples) -> dict[str, str]:
        info = page.get("runstream_run_info", [])
        return {labels["run_id"]: labels["status"] for labels, _ in info}

    await produce(harness.kafka, [(live.key, live.metrics(1, {"loss": 1.0}))])
    page = await scrape_until(url, lambda page: live.run_id in runs(page), within=60)
    assert runs(page) == {live.run_id: "running"}, "the exporter consumes before the run ends"

    before = time.time()
    finished = [(done.key, done.metrics(1, {"loss": 1.0})), (done.key, done.rank_finished())]
    await produce(harness.kafka, finished)
    after = time.time()
    both = {done.run_id: "completed", live.run_id: "running"}
    page = await scrape_until(url, lambda page: runs(page) == both, within=ttl)
    assert runs(page) == both, "a finished run is shown until its TTL"

    page = await scrape_until(url, lambda page: done.run_id not in runs(page), within=3 * ttl)
    gone = time.time()
    assert runs(page) == {live.run_id: "running"}
    assert {labels["run_id"] for labels, _ in page["runstream_metric_value"]} == {live.run_id}
    # It ended between `before` and `after`; it leaves at the first one-second eviction tick
    # past the TTL, seen within a scrape poll.
    assert before + ttl < gone < after + ttl + 1.0 + 0.5, (gone - before, after - before)


async def test_restarted_exporter_rebuilds_live_runs_from_postgres(harness: Harness) -> None:
    harness.service("persist").start()
    first = harness.service("export").start()
    run = EventFactory(f"rebuild-{harness.suffix}")
    await produce(harness.kafka, [(run.key, run.metrics(s, {"loss": s / 10})) for s in range(20)])
    await harness.wait_for_rows("SELECT step FROM metric_latest", 19, within=60)

    def shows_last_step(page: Samples) -> bool:
        return series(page, "runstream_metric_step", metric="loss") == {
            ("tests", "0", run.run_id): 19.0
        }

    assert shows_last_step(await scrape_until(first.metrics_url(), shows_last_step, within=60))
    first.stop()

    # The second exporter reads a topic that holds nothing: what it shows came from PostgreSQL.
    empty = replace(
        harness.kafka,
        topic=f"{harness.kafka.topic}.empty",
        dlq_topic=f"{harness.kafka.topic}.empty.dlq",
    )
    await ensure_topics(empty, partitions=1)
    try:
        second = harness.service(
            "export", RUNSTREAM_TOPIC=empty.topic, RUNSTREAM_DLQ_TOPIC=empty.dlq_topic
        ).start()
        page = await scrape_until(second.metrics_url(), shows_last_step, within=30)
        assert shows_last_step(page), second.log()[-3000:]
        assert series(page, "runstream_metric_value", metric="loss") == {
            ("tests", "0", run.run_id): 1.9
        }
        assert "rebuilt 1 runs from PostgreSQL" in second.log()
    finally:
        await delete_topics(empty, [empty.topic, empty.dlq_topic])


_TRAINING = """
import sys
from runstream.producer import start_run

for index, run_id in enumerate(sys.argv[1:]):
    with start_run(experiment="prometheus-e2e", run_id=run_id) as run:
        for step in range(100):
            run.log("loss", index + 1.0 / (step + 1), step=step)
"""


async def test_prometheus_scrapes_the_stack_exporter_for_every_run(
    stack: StackEndpoints, run_env: dict[str, str], tmp_path: Path
) -> None:
    run_ids = [f"prom-{uuid.uuid4().hex[:10]}-{n}" for n in range(2)]
    env = run_env | {"RUNSTREAM_SPOOL_DIR": str(tmp_path / "spool")}
    training = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _TRAINING, *run_ids, env=env
    )
    assert await training.wait() == 0
    query = f'runstream_metric_value{{metric="loss",run_id=~"{"|".join(run_ids)}"}}'

    async def answered() -> bool:
        async with httpx.AsyncClient(timeout=10) as client:
            response = await client.get(
                f"{stack.prometheus_url}/api/v1/query", params={"query": query}
            )
        found = {
            r["metric"]["run_id"]: float(r["value"][1]) for r in response.json()["data"]["result"]
        }
        return found == {run_id: n + 0.01 for n, run_id in enumerate(run_ids)}

    assert await wait_until(answered, within=90)


async def test_bad_input_is_counted_by_reason_and_the_exporter_keeps_going(
    harness: Harness,
) -> None:
    export = harness.service("export").start()
    run = EventFactory(f"bad-{harness.suffix}")
    garbage = [b"\x00garbage", b"\xc3\x01" + bytes(8) + b"body", b"\xc3\x01"]
    messages = [(run.key, run.metrics(1, {"loss": 1.0}))]
    messages += [(run.key, value) for value in garbage]
    messages += [(run.key, run.metrics(2, {"loss": 0.5}))]
    await produce(harness.kafka, messages)

    def past_the_garbage(page: Samples) -> bool:
        return series(page, "runstream_metric_step", metric="loss") == {
            ("tests", "0", run.run_id): 2.0
        }

    page = await scrape_until(export.metrics_url(), past_the_garbage, within=60)
    assert past_the_garbage(page), export.log()[-3000:]
    assert series(page, "runstream_metric_value", metric="loss") == {
        ("tests", "0", run.run_id): 0.5
    }
    letters = page["runstream_consumer_dead_letters_total"]
    reasons = {labels["reason"]: value for labels, value in letters if value}
    assert reasons == {"bad_magic": 2.0, "unknown_fingerprint": 1.0}
