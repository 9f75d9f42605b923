"""`runstream consume persist` against real Kafka and PostgreSQL, run as a real process."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys

from runstream.schemas import kinds
from tests.harness import (
    EventFactory,
    Harness,
    Samples,
    committed_offsets,
    end_offsets,
    produce,
    read_topic,
    reset_offsets,
    scrape_until,
    wait_until,
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


_TABLES = (
    "experiments",
    "runs",
    "run_ranks",
    "metrics",
    "metric_latest",
    "text_metrics",
    "table_rows",
    "files",
    "log_records",
    "status_events",
)


def every_kind(run: EventFactory) -> list[tuple[bytes, bytes]]:
    """One run's events touching every table, with two genuine logs of one name at one step."""
    events = [
        run.run_started(name="once", params={"lr": "0.1"}),
        run.metrics(0, {"loss": 1.0, "acc": 0.5}),
        run.metrics(0, {"loss": 0.9}),  # logged again at the same step: both are kept
        run.metrics(1, {"loss": 0.8}),
        run.event(kinds.TEXT, {"step": 1, "name": "note", "value": "warm"}),
        run.event(kinds.TABLE_ROW, {"table": "fits", "columns": {"alpha": 0.5, "ok": True}}),
        run.event(
            kinds.FILE, {"name": "notes", "media_type": "text/plain", "step": 1, "data": b"hi"}
        ),
        run.event(kinds.LOG_RECORD, {"level": "INFO", "logger": "train", "message": "epoch 1"}),
        run.heartbeat(1, progress=True, expect_next_in=30.0),
        run.event(kinds.PARAMS, {"params": {"batch": "64"}}),
        run.event(kinds.TAGS, {"tags": {"team": "vision"}}),
        run.rank_finished("completed"),
        run.event(
            kinds.STATUS,
            {"state": "completed", "reason": None, "exit_code": 0, "source": "launcher"},
        ),
    ]
    return [(run.key, event) for event in events]


async def snapshot(harness: Harness) -> dict[str, list[str]]:
    """Every row of every table as JSON text, sorted; `updated_at` (when a row was last written,
    not what it says) left out."""
    return {
        table: sorted(
            r["row"]
            for r in await harness.fetch(
                f"SELECT (to_jsonb(t) - 'updated_at')::text AS row FROM {table} t"
            )
        )
        for table in _TABLES
    }


async def rolled_back(harness: Harness) -> int:
    """Transactions rolled back in this test's database (a COPY that met stored rows is one)."""
    query = "SELECT xact_rollback FROM pg_stat_database WHERE datname = $1"
    return int(await harness.fetchval(query, harness.database))


async def consumed_all(harness: Harness) -> None:
    """Wait until persist's group has committed the topic's end offsets."""
    group = harness.env()["RUNSTREAM_PERSIST_GROUP"]
    ends = {
        p: end for p, end in (await end_offsets(harness.kafka, harness.kafka.topic)).items() if end
    }

    async def caught_up() -> bool:
        return await committed_offsets(harness.kafka, group) == ends

    assert await wait_until(caught_up, within=60), ends


async def test_replayed_bytes_and_reset_offsets_store_nothing_twice(harness: Harness) -> None:
    """Guarantee 3: the same bytes produced again (with one new event in the same batch), then
    the group's offsets reset to the start, store nothing twice in any table. The replayed
    metrics are at or below their session's mark, so they are looked up among the stored chunks
    and only the new value is written, in the batch's one transaction (none is rolled back)."""
    run = EventFactory(f"once-{harness.suffix}")
    messages = every_kind(run)
    await produce(harness.kafka, messages)
    persist = harness.service("persist").start()
    await consumed_all(harness)
    first = await snapshot(harness)
    assert {t: len(rows) for t, rows in first.items()} == {
        "experiments": 1,
        "runs": 1,
        "run_ranks": 1,
        "metrics": 4,
        "metric_latest": 2,
        "text_metrics": 1,
        "table_rows": 1,
        "files": 1,
        "log_records": 1,
        "status_events": 2,
    }
    losses = "SELECT step, value FROM metrics WHERE name = 'loss' ORDER BY step, value"
    assert [tuple(r) for r in await harness.fetch(losses)] == [(0, 0.9), (0, 1.0), (1, 0.8)]
    rollbacks = await rolled_back(harness)

    # Identical bytes (the same event identities), and one event never seen, in one batch.
    await produce(harness.kafka, [*messages, (run.key, run.metrics(2, {"acc": 0.7}))])
    await consumed_all(harness)
    second = await snapshot(harness)
    assert [tuple(r) for r in await harness.fetch(losses)] == [(0, 0.9), (0, 1.0), (1, 0.8)]
    acc = "SELECT step, value FROM metrics WHERE name = 'acc' ORDER BY step"
    assert [tuple(r) for r in await harness.fetch(acc)] == [(0, 0.5), (2, 0.7)]
    counts = "SELECT name, step, count FROM metric_latest ORDER BY name"
    assert [tuple(r) for r in await harness.fetch(counts)] == [("acc", 2, 2), ("loss", 1, 3)]
    # The new event is progress: the run's and rank's liveness move, nothing else.
    unchanged = set(_TABLES) - {"metrics", "metric_latest", "runs", "run_ranks"}
    assert {t: second[t] for t in unchanged} == {t: first[t] for t in unchanged}

    assert await rolled_back(harness) == rollbacks, "a replayed batch was written twice over"

    assert persist.stop() == 0
    group = harness.env()["RUNSTREAM_PERSIST_GROUP"]
    ends = await end_offsets(harness.kafka, harness.kafka.topic)
    used = [p for p, end in ends.items() if end]
    await reset_offsets(harness.kafka, group, dict.fromkeys(used, 0))
    assert await committed_offsets(harness.kafka, group) == dict.fromkeys(used, 0)
    harness.service("persist").start()
    await consumed_all(harness)
    assert await snapshot(harness) == second, "the whole topic again changes nothing"
    dead_letters = await end_offsets(harness.kafka, harness.kafka.dlq_topic)
    assert dead_letters == {0: 0}, "a replayed event is not refused either"
