"""Decoding alone: events per second from bytes to the records the consumers read.

    python benchmarks/bench_decode.py [--events 50000] [--values 10] [--repeat 5]

Encodes `--events` Metrics events of `--values` values each (the hot kind, read by the codec's own
reader) and as many of the other kinds (Heartbeat, Status, LogRecord, TableRow in turn, read
through fastavro), then times `EventCodec.decode` over each set, the best of `--repeat` rounds.
No services needed.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Callable
from typing import Any

from runstream.schemas import EventCodec, default_codec, kinds
from runstream.schemas._fast import MetricsWriter

PRODUCER = str(uuid.uuid4())
OTHER_BODIES: list[tuple[str, dict[str, Any]]] = [
    (kinds.HEARTBEAT, {"step": 12, "progress": True, "expect_next_in": 30.0}),
    (kinds.STATUS, {"state": "running", "reason": None, "exit_code": None, "source": "run"}),
    (kinds.LOG_RECORD, {"level": "INFO", "logger": "train", "message": "epoch 1 done"}),
    (kinds.TABLE_ROW, {"table": "fits", "columns": {"alpha": 0.5, "n": 10, "tag": "x"}}),
]


def metrics_events(codec: EventCodec, count: int, values: int) -> list[bytes]:
    """`count` encoded Metrics events of `values` values each."""
    writer = MetricsWriter(codec, "bench-run", "bench", 0, 1, PRODUCER)
    pairs = [(f"metric_{n}", n * 0.5) for n in range(values)]
    now = time.time_ns() // 1000
    return [writer.encode(seq, now + seq, seq, pairs) for seq in range(count)]


def other_events(codec: EventCodec, count: int) -> list[bytes]:
    """`count` encoded events of the other kinds, in turn."""
    now = time.time_ns() // 1000
    envelope = {"run_id": "bench-run", "experiment": "bench", "rank": 0, "world_size": 1}
    return [
        codec.encode(
            envelope
            | {"producer_id": PRODUCER, "seq": seq, "time": now + seq}
            | {"body": OTHER_BODIES[seq % len(OTHER_BODIES)]}
        )
        for seq in range(count)
    ]


def best_rate(decode: Callable[[bytes], object], messages: list[bytes], repeat: int) -> float:
    """Events per second of the fastest of `repeat` rounds over `messages`."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        for message in messages:
            decode(message)
        best = min(best, time.perf_counter() - started)
    return len(messages) / best


def main(args: argparse.Namespace) -> None:
    codec = default_codec()
    sets = {
        f"metrics ({args.values} values)": metrics_events(codec, args.events, args.values),
        "other kinds (fastavro)": other_events(codec, args.events),
    }
    for name, messages in sets.items():
        rate = best_rate(codec.decode, messages, args.repeat)
        print(f"decode {name}: {rate:,.0f} events/s ({1e6 / rate:.1f} µs each)")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=50_000)
    parser.add_argument("--values", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=5)
    main(parser.parse_args())
