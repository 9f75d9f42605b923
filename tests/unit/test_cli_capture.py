"""Cutting a command's output into the lines that become log records."""

from __future__ import annotations

from runstream.cli._capture import LineSplitter, visible


def test_lines_come_out_when_they_end() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b"one\ntw") == ["one"]
    assert splitter.feed(b"o\nthree") == ["two"]
    assert splitter.finish() == ["three"]
    assert splitter.finish() == []


def test_utf8_split_across_reads_is_decoded_whole() -> None:
    splitter = LineSplitter()
    data = "étape 1 ✓\n".encode()
    assert splitter.feed(data[:2]) == []
    assert splitter.feed(data[2:]) == ["étape 1 ✓"]


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert LineSplitter().feed(b"bad \xff byte\n") == ["bad \ufffd byte"]


def test_carriage_returns_keep_what_a_terminal_shows() -> None:
    splitter = LineSplitter()
    assert splitter.feed(b" 10%|#  |\r 50%|## |\r100%|###|\n") == ["100%|###|"]
    assert splitter.feed(b"windows line\r\n") == ["windows line"]
    assert visible("\r\r") == ""


def test_a_progress_bar_without_newline_does_not_grow_without_bound() -> None:
    splitter = LineSplitter()
    for percent in range(10_000):
        assert splitter.feed(f"\r{percent % 100:3d}%".encode()) == []
    assert splitter.finish() == [" 99%"]


def test_an_endless_line_is_cut_at_the_limit() -> None:
    splitter = LineSplitter(limit=10)
    assert splitter.feed(b"x" * 25) == ["x" * 10, "x" * 10]
    assert splitter.finish() == ["x" * 5]
