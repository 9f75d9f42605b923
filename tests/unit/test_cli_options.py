"""`--param KEY=VALUE` and `--tag KEY=VALUE` parsing: what users type, and the errors they get."""

from __future__ import annotations

import pytest
import typer

from runstream.cli._options import parse_pairs


def test_pairs_become_a_string_mapping() -> None:
    pairs = parse_pairs("--param", ["lr=0.01", "layers=3", "note=a=b", "empty="])
    assert pairs == {"lr": "0.01", "layers": "3", "note": "a=b", "empty": ""}


def test_nothing_given_is_an_empty_mapping() -> None:
    assert parse_pairs("--tag", None) == {}
    assert parse_pairs("--tag", []) == {}


def test_spaces_around_the_key_are_dropped_but_the_value_is_kept_as_typed() -> None:
    assert parse_pairs("--tag", [" team = vision "]) == {"team": " vision "}


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ("lr", "'lr' is not KEY=VALUE"),
        ("=0.1", "'=0.1' is not KEY=VALUE"),
        ("x" * 251 + "=1", "1 to 250 characters"),
        ("bad\tkey=1", "no control characters"),
        ("big=" + "v" * 6001, "at most 6000 characters"),
    ],
)
def test_bad_pairs_name_the_option_and_what_is_expected(given: str, message: str) -> None:
    with pytest.raises(typer.BadParameter, match=message) as caught:
        parse_pairs("--param", [given])
    assert caught.value.param_hint == "--param"


def test_a_key_given_twice_is_refused() -> None:
    with pytest.raises(typer.BadParameter, match="'lr' is given twice"):
        parse_pairs("--param", ["lr=0.1", "lr=0.2"])
