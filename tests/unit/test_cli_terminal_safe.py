"""User data cannot drive the terminal: control characters are shown as escapes."""

from __future__ import annotations

from runstream.cli._format import shown, terminal_safe


def test_escape_sequences_and_controls_are_shown_not_sent() -> None:
    assert terminal_safe("a\x1b[2Jb") == "a\\x1b[2Jb"
    assert terminal_safe("title\x1b]0;pwned\x07") == "title\\x1b]0;pwned\\x07"
    assert terminal_safe("\x9b2J\x7f") == "\\x9b2J\\x7f"
    assert terminal_safe("right\u202eleft") == "right\\u202eleft"
    assert terminal_safe("one\ntwo\tthree") == "one\\x0atwo\\x09three"


def test_ordinary_text_is_left_alone() -> None:
    text = "loss 0.5 · épsilon ✓ 日本"
    assert terminal_safe(text) == text


def test_shown_also_escapes_rich_markup() -> None:
    assert shown("[red]x\x1b[0m") == "\\[red]x\\x1b[0m"
