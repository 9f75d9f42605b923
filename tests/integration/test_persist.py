"""`runstream consume persist` against real Kafka and PostgreSQL, run as a real process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

from tests.harness import (
    EventFactory,
    Harness,
    Samples,
    committed_offsets,
    end_offsets,
    produce,
    read_topic,
    scrape_until,
)

_TRAINING = """
import sys
from runstream.producer import start_run

for index, run_id in enumerate(sys.argv[1:]):
    with start_run(experiment="e2e", name=f"run-{index}", run_id=run_id) as run:
        for step in range(5000):
            run.log("loss", index + 1.0 / (step + 1), step=step)
"""


async def test_ten_thousand_metrics_from_a_training_process_are_stored_exactly(
    harness: Harness,
) -> None:
    harness.service("persist").start()
    export = harness.service("export").start()
    run_ids = [f"e2e-{harness.suffix}-{n}" for n in range(2)]
    training = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-c", _TRAINING, *run_ids],
        env={**os.environ, **harness.env()},
        capture_output=True,
        timeout=240,
        check=False,
    )
    assert training.returncode == 0, training.stderr.decode()[-3000:]

    count = await harness.wait_for_rows("SELECT count(*) FROM metrics", 10_000, within=120)
    assert count == 10_000
    for index, run_id in enumerate(run_ids):
        rows = await harness.fetch(
            "SELECT step, value FROM metrics WHERE run_id = $1 AND name = 'loss' ORDER BY step",
            run_id,
        )
        assert [(r["step"], r["value"]) for r in rows] == [
            (step, index + 1.0 / (step + 1)) for step in range(5000)
        ]
    statuses = await harness.wait_for_rows(
        "SELECT string_agg(status, ',' ORDER BY run_id) FROM runs", "completed,completed", within=60
    )
    assert statuses == "completed,completed"

    def shows_completed(page: Samples) -> bool:
        statuses = [s[0]["status"] for s in page.get("runstream_run_info", [])]
        return statuses == ["completed", "completed"]

    page = await scrape_until(export.metrics_url(), shows_completed, within=60)
    last = {
        s[0]["run_id"]: s[1] for s in page["runstream_metric_value"] if s[0]["metric"] == "loss"
    }
    assert last == {run_id: index + 1.0 / 5000 for index, run_id in enumerate(run_ids)}
    info = {s[0]["run_id"]: s[0]["status"] for s in page["runstream_run_info"]}
    assert info == dict.fromkeys(run_ids, "completed")


async def _stream_metrics(harness: Harness, runs: list[EventFactory], steps: int) -> None:
    """Produce `steps` Metrics events per run, paced over about eight seconds."""
    for start in range(0, steps, 125):
        batch = [
            (run.key, run.metrics(step, {"loss": float(step), "acc": step / steps}))
            for step in range(start, min(start + 125, steps))
            for run in runs
        ]
        await produce(harness.kafka, batch)
        await asyncio.sleep(0.3)


async def test_persist_killed_mid_stream_and_restarted_stores_every_row_once(
    harness: Harness,
) -> None:
    runs = [EventFactory(f"kill-{harness.suffix}-{n}") for n in range(2)]
    persist = harness.service("persist").start()
    stream = asyncio.create_task(_stream_metrics(harness, runs, 2500))
    seen = await harness.wait_for_rows(
        "SELECT count(*) > 1000 FROM metrics", expected=True, within=60
    )
    assert seen, persist.log()[-3000:]
    assert not stream.done(), "killed while events still flow"
    persist.kill()
    await stream
    harness.service("persist").start()

    count = await harness.wait_for_rows("SELECT count(*) FROM metrics", 10_000, within=120)
    assert count == 10_000
    latest = await harness.fetch("SELECT run_id, name, step, count FROM metric_latest")
    assert sorted((r["name"], r["step"], r["count"]) for r in latest) == [
        ("acc", 2499, 2500),
        ("acc", 2499, 2500),
        ("loss", 2499, 2500),
        ("loss", 2499, 2500),
    ]


async def test_garbage_on_the_topic_does_not_stop_persist(harness: Harness) -> None:
    run = EventFactory(f"garbage-{harness.suffix}")
    garbage = [b"", b"\x00garbage", b"\xc3\x01" + bytes(8) + b"body", b"\xc3" + bytes(63)]
    before = [(run.key, run.metrics(step, {"loss": 1.0})) for step in range(10)]
    after = [(run.key, run.metrics(step, {"loss": 2.0})) for step in range(10, 20)]
    await produce(harness.kafka, [*before, *[(run.key, g) for g in garbage], *after])
    persist = harness.service("persist").start()

    count = await harness.wait_for_rows("SELECT count(*) FROM metrics", 20, within=60)
    assert count == 20, persist.log()[-3000:]
    letters = await read_topic(harness.kafka, harness.kafka.dlq_topic, count=4, within=30)
    assert [r.value for r in letters] == garbage
    headers = [dict(r.headers) for r in letters]
    assert [h["reason"] for h in headers] == [
        b"bad_magic",
        b"bad_magic",
        b"unknown_fingerprint",
        b"bad_magic",
    ]
    assert [int(h["source_offset"]) for h in headers] == [10, 11, 12, 13]
    assert all(h["source_topic"] == harness.kafka.topic.encode() for h in headers)


async def test_sigterm_commits_and_leaves_promptly(harness: Harness) -> None:
    run = EventFactory(f"term-{harness.suffix}")
    await produce(harness.kafka, [(run.key, run.metrics(s, {"x": 1.0})) for s in range(100)])
    persist = harness.service("persist").start()
    await harness.wait_for_rows("SELECT count(*) FROM metrics", 100, within=60)
    persist.signal(signal.SIGTERM)
    shutdown_timeout = float(harness.env()["RUNSTREAM_SHUTDOWN_TIMEOUT"])
    assert await asyncio.to_thread(persist.wait, shutdown_timeout) == 0
    assert "LeaveGroup request succeeded" in persist.log()
    ends = await end_offsets(harness.kafka, harness.kafka.topic)
    assert sum(ends.values()) == 100
    group = harness.env()["RUNSTREAM_PERSIST_GROUP"]
    committed = await committed_offsets(harness.kafka, group)
    assert committed == {p: end for p, end in ends.items() if end}, "every stored event committed"
