"""The codec: every body round-trips; bad bytes become dead-letter reasons, never crashes."""

from __future__ import annotations

import io
import json
import math
import random
import uuid
from datetime import UTC, datetime
from importlib import resources
from typing import Any

import fastavro
import pytest

from runstream import DecodeError
from runstream.schemas import (
    HEADER_SIZE,
    Body,
    EventCodec,
    EventRecord,
    File,
    Heartbeat,
    LogRecord,
    Metrics,
    Params,
    RankFinished,
    RankStraggling,
    RunStarted,
    Status,
    TableRow,
    Tags,
    Text,
    check_event,
    default_codec,
    kinds,
    released_schema_files,
    schema_fingerprint,
)
from runstream.schemas._codec import record_from_avro
from runstream.schemas._fast import MetricsWriter
from runstream.schemas._fastread import MetricsReader
from runstream.schemas._rules import _good_run_id

PRODUCER = str(uuid.uuid4())

BODIES: dict[str, dict[str, Any]] = {
    kinds.RUN_STARTED: {
        "name": "baseline",
        "params": {"lr": "0.01"},
        "tags": {"team": "vision"},
        "host": "node-1",
        "pid": 4242,
        "command": "python train.py",
        "git_commit": "abc123",
    },
    kinds.METRICS: {
        "step": 7,
        "values": [{"name": "loss", "value": 0.25}, {"name": "acc", "value": 0.9}],
    },
    kinds.PARAMS: {"params": {"batch_size": "64"}},
    kinds.TAGS: {"tags": {"stage": "dev"}},
    kinds.TEXT: {"step": 0, "name": "note", "value": "warming up"},
    kinds.TABLE_ROW: {
        "table": "fits",
        "columns": {"alpha": 0.5, "mse": 3.25, "n": 10, "ok": True, "tag": "x", "gap": None},
    },
    kinds.FILE: {
        "name": "curve.png",
        "media_type": "image/png",
        "step": 3,
        "data": b"\x89PNG\r\n\x1a\n...",
    },
    kinds.LOG_RECORD: {"level": "INFO", "logger": "train", "message": "epoch 1 done"},
    kinds.HEARTBEAT: {"step": 12, "progress": True, "expect_next_in": 30.0},
    kinds.STATUS: {
        "state": "failed",
        "reason": "OOM",
        "exit_code": 137,
        "source": "launcher",
        "judged_through": None,
    },
    kinds.RANK_FINISHED: {"state": "completed", "reason": None, "exit_code": 0},
    kinds.RANK_STRAGGLING: {
        "straggling": True,
        "step": 10,
        "leader_step": 500,
        "judged_through": None,
    },
}


# The same bodies as the typed records a reader gets, written out field by field.
TYPED: dict[str, Body] = {
    kinds.RUN_STARTED: RunStarted(
        name="baseline",
        params={"lr": "0.01"},
        tags={"team": "vision"},
        host="node-1",
        pid=4242,
        command="python train.py",
        git_commit="abc123",
    ),
    kinds.METRICS: Metrics(step=7, values=[("loss", 0.25), ("acc", 0.9)]),
    kinds.PARAMS: Params(params={"batch_size": "64"}),
    kinds.TAGS: Tags(tags={"stage": "dev"}),
    kinds.TEXT: Text(step=0, name="note", value="warming up"),
    kinds.TABLE_ROW: TableRow(
        table="fits",
        columns={"alpha": 0.5, "mse": 3.25, "n": 10, "ok": True, "tag": "x", "gap": None},
    ),
    kinds.FILE: File(
        name="curve.png", media_type="image/png", step=3, data=b"\x89PNG\r\n\x1a\n..."
    ),
    kinds.LOG_RECORD: LogRecord(level="INFO", logger="train", message="epoch 1 done"),
    kinds.HEARTBEAT: Heartbeat(step=12, progress=True, expect_next_in=30.0),
    kinds.STATUS: Status(state="failed", reason="OOM", exit_code=137, source="launcher"),
    kinds.RANK_FINISHED: RankFinished(state="completed", reason=None, exit_code=0),
    kinds.RANK_STRAGGLING: RankStraggling(straggling=True, step=10, leader_step=500),
}


def typed_event(kind: str) -> EventRecord:
    """The record a reader gets for `make_event(kind, BODIES[kind])`, every field spelled out."""
    return EventRecord(
        run_id="run-1",
        experiment="exp",
        rank=1,
        world_size=2,
        producer_id=PRODUCER,
        seq=5,
        time_us=1_700_000_000_123_456,
        body=TYPED[kind],
    )


def make_event(kind: str, body: dict[str, Any], **envelope: Any) -> dict[str, Any]:
    event = {
        "run_id": "run-1",
        "experiment": "exp",
        "rank": 1,
        "world_size": 2,
        "producer_id": PRODUCER,
        "seq": 5,
        "time": 1_700_000_000_123_456,
        "body": (kind, body),
    }
    event.update(envelope)
    return event


def test_every_body_kind_is_covered() -> None:
    assert set(BODIES) == set(kinds.BODY_KINDS) == set(TYPED)
    assert all(kind == body.KIND for kind, body in TYPED.items())


@pytest.mark.parametrize("kind", kinds.BODY_KINDS)
def test_round_trip(kind: str) -> None:
    codec = default_codec()
    decoded = codec.decode(codec.encode(make_event(kind, BODIES[kind])))
    assert decoded == typed_event(kind)  # every field
    assert decoded.kind == kind
    assert decoded.time == datetime(2023, 11, 14, 22, 13, 20, 123456, tzinfo=UTC)
    assert codec.decode(codec.encode_record(decoded)) == decoded


def test_single_object_header() -> None:
    data = default_codec().encode(make_event(kinds.TAGS, BODIES[kinds.TAGS]))
    assert data[:2] == b"\xc3\x01"
    assert data[2:10] == default_codec().header[2:]


@pytest.mark.parametrize("schema_file", released_schema_files())
def test_samples_of_every_released_schema_decode(schema_file: str) -> None:
    text = resources.files("runstream.schemas").joinpath("avro", schema_file).read_text()
    old = fastavro.parse_schema(json.loads(text))
    for kind, body in BODIES.items():
        out = io.BytesIO()
        out.write(b"\xc3\x01" + schema_fingerprint(old))
        fastavro.schemaless_writer(out, old, make_event(kind, body))
        assert default_codec().decode(out.getvalue()) == typed_event(kind), kind  # every field


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "bad_magic"),
        (b"garbage that is not avro at all", "bad_magic"),
        (b"\xc3\x01" + b"\x00" * 8 + b"\x02", "unknown_fingerprint"),
    ],
)
def test_bad_frames(data: bytes, reason: str) -> None:
    with pytest.raises(DecodeError) as caught:
        default_codec().decode(data)
    assert caught.value.reason == reason


def test_truncated_and_trailing() -> None:
    codec = default_codec()
    good = codec.encode(make_event(kinds.METRICS, BODIES[kinds.METRICS]))
    with pytest.raises(DecodeError) as truncated:
        codec.decode(good[:-5])
    assert truncated.value.reason == "truncated"
    with pytest.raises(DecodeError) as trailing:
        codec.decode(good + b"junk")
    assert trailing.value.reason == "trailing_bytes"


@pytest.mark.parametrize(
    ("kind", "body", "envelope", "reason"),
    [
        (kinds.METRICS, {"step": -1, "values": []}, {}, "bad_step"),
        (kinds.METRICS, {"step": 1, "values": [{"name": "x" * 300, "value": 1.0}]}, {}, "bad_name"),
        (kinds.METRICS, {"step": 1, "values": [{"name": "a\nb", "value": 1.0}]}, {}, "bad_name"),
        (
            kinds.HEARTBEAT,
            {"step": 1, "progress": True, "expect_next_in": float("nan")},
            {},
            "non_finite",
        ),
        (kinds.TAGS, {"tags": {}}, {"rank": 3, "world_size": 2}, "bad_identity"),
        (kinds.TAGS, {"tags": {}}, {"run_id": "bad id/with slash"}, "bad_identity"),
        (
            kinds.FILE,
            {"name": "big", "media_type": "x", "step": None, "data": b"0" * (600 * 1024)},
            {},
            "oversize",
        ),
    ],
)
def test_rule_breaches_are_reasons(
    kind: str, body: dict[str, Any], envelope: dict[str, Any], reason: str
) -> None:
    codec = EventCodec()
    data = codec.encode(make_event(kind, body, **envelope))
    with pytest.raises(DecodeError) as caught:
        codec.decode(data)
    assert caught.value.reason == reason


def test_nan_metric_values_are_kept() -> None:
    codec = default_codec()
    body = {
        "step": 1,
        "values": [{"name": "loss", "value": float("nan")}, {"name": "g", "value": float("inf")}],
    }
    decoded = codec.decode(codec.encode(make_event(kinds.METRICS, body))).body
    assert isinstance(decoded, Metrics)
    assert decoded.values[0][1] != decoded.values[0][1]
    assert decoded.values[1] == ("g", float("inf"))


def test_fast_metrics_writer_matches_codec() -> None:
    codec = default_codec()
    writer = MetricsWriter(codec, "run-1", "exp", 1, 2, PRODUCER)
    rng = random.Random(7)
    times = [0, 1, 2**27, 2**28 - 1, 2**28, 1_700_000_000_123_456, 2**62]
    for _ in range(3000):
        seq = rng.choice([0, 1, 8191, 8192, rng.randrange(2**14), rng.randrange(2**40)])
        step = rng.choice([0, 1, 63, 64, 8191, 8192, rng.randrange(2**62)])
        time_us = rng.choice([*times, rng.randrange(2**62)])
        values = [
            (rng.choice(["loss", "acc", "é", "x" * 200]), rng.uniform(-1e9, 1e9))
            for _ in range(rng.randrange(4))
        ]
        body = {"step": step, "values": [{"name": n, "value": v} for n, v in values]}
        expected = codec.encode(make_event(kinds.METRICS, body, seq=seq, time=time_us))
        assert writer.encode(seq, time_us, step, values) == expected
        if len(values) == 1:
            assert writer.encode_one(seq, time_us, step, *values[0]) == expected


def _fastavro_reads(data: bytes) -> Any:
    """What the codec's fastavro path makes of a message of the current schema: the record, or
    the exception."""
    body = io.BytesIO(data[HEADER_SIZE:])
    try:
        event = fastavro.schemaless_reader(
            body, default_codec().schema, None, return_record_name=True
        )
    except Exception as exc:
        return exc
    assert isinstance(event, dict)
    return ValueError("trailing bytes") if body.read() else record_from_avro(event)


def _random_metrics_message(rng: random.Random) -> bytes:
    body = {
        "step": rng.choice([0, 1, 63, 64, rng.randrange(2**62)]),
        "values": [
            {"name": rng.choice(["loss", "acc", "é", "x" * 63, "y" * 64, "z" * 300]),
             "value": rng.choice([rng.uniform(-1e9, 1e9), float("nan"), -0.0])}
            for _ in range(rng.randrange(12))
        ],
    }  # fmt: skip
    event = make_event(kinds.METRICS, body, seq=rng.randrange(2**40))
    event["rank"], event["world_size"] = rng.choice([(0, 1), (3, 8), (-1, 2**31 - 1)])
    event["time"] = rng.choice([0, 1_700_000_000_123_456, rng.randrange(2**50)])
    return default_codec().encode(event)


def _mutated(rng: random.Random, data: bytes) -> bytes:
    cut = rng.randrange(HEADER_SIZE, len(data) + 1)
    match rng.randrange(4):
        case 0:  # truncated
            return data[:cut]
        case 1:  # junk after the event
            return data + rng.randbytes(rng.randrange(1, 5))
        case 2:  # one byte changed
            return data[:cut] + rng.randbytes(1) + data[cut + 1 :]
        case _:  # a body of another kind
            return data[:HEADER_SIZE] + rng.randbytes(rng.randrange(80))


def test_fast_metrics_reader_agrees_with_fastavro() -> None:
    """The hand-rolled Metrics reader returns the record of fastavro's event, and only for what
    fastavro reads."""
    rng = random.Random(11)
    reader = MetricsReader()
    accepted = 0
    for n in range(6000):
        data = _random_metrics_message(rng)
        if n % 2:
            data = _mutated(rng, data)
        fast = reader.read(data, HEADER_SIZE)
        if fast is None:
            continue
        accepted += 1
        expected = _fastavro_reads(data)
        assert not isinstance(expected, Exception), (data.hex(), expected)
        assert repr(fast) == repr(expected)  # repr: NaN values compare unequal
    assert accepted > 3000  # every unmutated message, and mutations that stay well-formed


def test_fast_metrics_reader_reads_repeated_shapes_only_when_every_name_is_there() -> None:
    """Events repeating a few arrays of names (what a training loop sends), some with one byte
    changed or a name swapped for another of the same length: the reader's remembered shapes give
    exactly fastavro's record, never one of a shape the event does not have."""
    rng = random.Random(12)
    shapes = [["loss", "acc", "lr"], ["loss", "acd", "lr"], ["loss", "é", "x" * 63], ["loss"]]
    reader, by_shape = MetricsReader(), 0
    for n in range(4000):
        names = rng.choice(shapes)
        values = [{"name": name, "value": rng.choice([rng.random(), math.nan])} for name in names]
        data = default_codec().encode(make_event(kinds.METRICS, {"step": n, "values": values}))
        if n % 3 == 0:
            cut = rng.randrange(len(data) - 40, len(data))
            data = data[:cut] + rng.randbytes(1) + data[cut + 1 :]
        expected = _fastavro_reads(data)
        fast = reader.read(data, HEADER_SIZE)
        if fast is None:
            continue
        by_shape += n % 3 != 0
        assert not isinstance(expected, Exception), (data.hex(), expected)
        assert repr(fast) == repr(expected)
    assert by_shape > 2600
    for names in shapes:  # the last of each shape seen now needs no block-by-block read
        values = [{"name": name, "value": 0.5} for name in names]
        data = default_codec().encode(make_event(kinds.METRICS, {"step": 1, "values": values}))
        assert reader.read(data, HEADER_SIZE) is not None
        blocks, reader._blocks = reader._blocks, None  # type: ignore[assignment,method-assign]
        assert repr(reader.read(data, HEADER_SIZE)) == repr(_fastavro_reads(data))
        reader._blocks = blocks  # type: ignore[method-assign]


def test_fast_metrics_reader_reads_blocks_with_sizes() -> None:
    """Avro lets a writer give an array block's byte size (a negative count); fastavro reads it."""
    body = {"step": 2, "values": [{"name": "loss", "value": 0.5}, {"name": "acc", "value": 1.0}]}
    plain = default_codec().encode(make_event(kinds.METRICS, body))
    array_start = plain.index(b"\x04\x08loss")  # count 2, then "loss"
    items = plain[array_start + 1 : -1]
    sized = plain[:array_start] + b"\x03" + bytes([len(items) * 2]) + items + b"\x00"
    event = MetricsReader().read(sized, HEADER_SIZE)
    assert event is not None
    assert event == _fastavro_reads(sized)
    assert event.body == Metrics(step=2, values=[("loss", 0.5), ("acc", 1.0)])


def test_codec_falls_back_to_fastavro_for_other_kinds_and_bad_metrics() -> None:
    codec = default_codec()
    text = codec.encode(make_event(kinds.TEXT, BODIES[kinds.TEXT]))
    assert MetricsReader().read(text, HEADER_SIZE) is None
    assert codec.decode(text) == typed_event(kinds.TEXT)
    metrics = codec.encode(make_event(kinds.METRICS, BODIES[kinds.METRICS]))
    with pytest.raises(DecodeError) as caught:
        codec.decode(metrics + b"\x00")
    assert caught.value.reason == "trailing_bytes"
    with pytest.raises(DecodeError) as caught:
        codec.decode(metrics[:-3])
    assert caught.value.reason == "truncated"


def test_what_the_decoder_remembers_stays_small_whatever_the_topic_carries() -> None:
    """Strings too long for any rule, and run ids over the limit, are not cached by the decoder."""
    reader = MetricsReader()
    body = {"step": 1, "values": [{"name": "n" * 5000, "value": 1.0}]}
    data = default_codec().encode(make_event(kinds.METRICS, body, run_id="r" * 3000))
    event = reader.read(data, HEADER_SIZE)
    assert event is not None
    assert isinstance(event.body, Metrics)
    assert event.body.values[0][0] == "n" * 5000
    assert max(map(len, reader._strings)) <= 1024
    _good_run_id.cache_clear()
    with pytest.raises(DecodeError):
        check_event(event)
    assert _good_run_id.cache_info().currsize == 0
