"""A corpus of bad input: every record reaches the dead-letter topic with its reason and source,
and the good events around it are all stored."""

from __future__ import annotations

import math
import random

from runstream.schemas import FILE_MAX, kinds
from tests.harness import EventFactory, Harness, produce, read_topic, scrape


def corpus(run: EventFactory) -> list[tuple[bytes, str]]:
    """(bytes, expected reason) for each kind of bad input."""
    good = run.metrics(1, {"loss": 1.0})
    noise = random.Random(7).randbytes(200)
    heartbeat = {"step": None, "progress": False, "expect_next_in": math.nan}
    return [
        (b"\x00" + noise, "bad_magic"),
        (b"", "bad_magic"),
        (b"\xc3\x02" + good[2:], "bad_magic"),
        (good[:2] + bytes(8) + good[10:], "unknown_fingerprint"),
        (good[: len(good) - 5], "truncated"),
        (good + b"\x00junk", "trailing_bytes"),
        (run.event(kinds.METRICS, {"step": -5, "values": []}), "bad_step"),
        (run.event(kinds.HEARTBEAT, heartbeat), "non_finite"),
        (run.metrics(2, {"x" * 251: 1.0}), "bad_name"),
        (run.event(kinds.TEXT, {"step": 1, "name": "bad\nname", "value": "v"}), "bad_name"),
        (run.event(kinds.FILE, _file(FILE_MAX + 1)), "oversize"),
    ]


def _file(size: int) -> dict[str, object]:
    return {
        "name": "big.bin",
        "media_type": "application/octet-stream",
        "step": None,
        "data": bytes(size),
    }


async def test_bad_input_is_dead_lettered_with_reasons_and_good_events_around_it_are_stored(
    harness: Harness,
) -> None:
    run = EventFactory(f"dlq-{harness.suffix}")
    bad = corpus(run)
    messages: list[tuple[bytes | None, bytes]] = []
    for step, (value, _reason) in enumerate(bad):
        messages.append((run.key, run.metrics(100 + step, {"good": float(step)})))
        messages.append((run.key, value))
    messages.append(
        (
            run.key,
            run.event(kinds.LOG_RECORD, {"level": "INFO", "logger": "t", "message": "nul\x00here"}),
        )
    )
    messages.append(
        (
            run.key,
            run.event(kinds.TABLE_ROW, {"table": "t", "columns": {"loss": math.nan, "s": "a\x00"}}),
        )
    )
    await produce(harness.kafka, messages)
    persist = harness.service("persist").start()

    stored = await harness.wait_for_rows("SELECT count(*) FROM metrics", len(bad), within=60)
    assert stored == len(bad), persist.log()[-3000:]
    assert await harness.wait_for_rows("SELECT count(*) FROM table_rows", 1, within=30) == 1
    assert await harness.fetchval("SELECT message FROM log_records") == "nul\ufffdhere"
    assert await harness.fetchval("SELECT row_data->>'loss' FROM table_rows") == "NaN"

    letters = await read_topic(harness.kafka, harness.kafka.dlq_topic, count=len(bad), within=30)
    got = [
        (r.value, dict(r.headers)["reason"].decode(), int(dict(r.headers)["source_offset"]))
        for r in letters
    ]
    assert got == [(value, reason, 2 * i + 1) for i, (value, reason) in enumerate(bad)]
    assert all(dict(r.headers)["source_topic"] == harness.kafka.topic.encode() for r in letters)

    page = scrape(persist.metrics_url())
    counted = {
        labels["reason"]: value for labels, value in page["runstream_consumer_dead_letters_total"]
    }
    expected: dict[str, float] = {}
    for _value, reason in bad:
        expected[reason] = expected.get(reason, 0) + 1
    assert counted == expected
