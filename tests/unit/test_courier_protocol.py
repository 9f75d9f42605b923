"""The trainer-courier protocol: what one end writes, the other reads back."""

from __future__ import annotations

from pathlib import Path

import pytest

from runstream._config import KafkaConfig, ProducerConfig
from runstream.producer import _protocol as protocol
from runstream.producer._spool import SegmentCursor


def test_orders_round_trip() -> None:
    config = ProducerConfig(kafka=KafkaConfig(bootstrap_servers="127.0.0.1:1"), courier="process")
    line = protocol.orders(config, Path("/spool/session"))
    assert line.endswith(b"\n")
    assert line.count(b"\n") == 1
    assert protocol.read_orders(line.strip()) == (config, Path("/spool/session"))


def test_courier_lines_parse_back() -> None:
    assert protocol.parse(protocol.READY.strip()) is None
    assert protocol.parse(protocol.acknowledged(SegmentCursor(3, 1024)).strip()) == SegmentCursor(
        3, 1024
    )
    line = protocol.problem("kafka", "sending\tfailed", OSError("broker\naway"))
    assert line.count("\n") == 1
    assert protocol.parse(line.strip()) == protocol.Problem(
        "kafka", "sending failed", "broker away"
    )


def test_an_unknown_line_is_refused() -> None:
    with pytest.raises(ValueError, match="not a courier message"):
        protocol.parse("x 1 2")
