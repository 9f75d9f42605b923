"""Option values the CLI parses itself: `--param KEY=VALUE`, `--tag KEY=VALUE`."""

from __future__ import annotations

from collections.abc import Sequence

import typer

from runstream import ValidationError
from runstream.schemas import check_name, check_text


def parse_pairs(option: str, values: Sequence[str] | None) -> dict[str, str]:
    """`["lr=0.1", "note=a=b"]` → `{"lr": "0.1", "note": "a=b"}`; a clear usage error otherwise.

    The value is everything after the first `=` and may be empty (`--tag baseline=`); a key may
    be given once.
    """
    pairs: dict[str, str] = {}
    for text in values or ():
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not key:
            raise typer.BadParameter(
                f"{text!r} is not KEY=VALUE (e.g. {option} lr=0.01)", param_hint=option
            )
        if key in pairs:
            raise typer.BadParameter(f"{key!r} is given twice", param_hint=option)
        try:
            check_name(f"{option} key", key)
            check_text(f"{option} {key}", value)
        except ValidationError as exc:
            raise typer.BadParameter(str(exc), param_hint=option) from None
        pairs[key] = value
    return pairs
