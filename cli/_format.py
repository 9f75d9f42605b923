"""How the CLI shows values: numbers, durations, ages, sparklines, statuses; JSON for scripts."""

from __future__ import annotations

import inspect
import json
import math
import uuid
from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from rich.markup import escape

SPARK_BARS = "▁▂▃▄▅▆▇█"
STATUS_STYLES = {
    "running": "cyan",
    "completed": "green",
    "failed": "red",
    "canceled": "yellow",
    "stalled": "magenta",
    "lost": "red",
}


def number(value: float | None) -> str:
    """A metric value in at most 6 significant digits; `-` when absent."""
    if value is None:
        return "-"
    if math.isnan(value):
        return "nan"
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return f"{value:.6g}"


def duration(seconds: float | None) -> str:
    """`45s`, `12m05s`, `3h02m`, `2d04h`; `-` when absent."""
    if seconds is None:
        return "-"
    whole = max(int(seconds), 0)
    minutes, secs = divmod(whole, 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    if seconds < 10:
        return f"{max(seconds, 0.0):.1f}s"
    return f"{secs}s"


def between(start: datetime | None, end: datetime | None) -> float | None:
    """Seconds from `start` to `end`, or None when either is unknown."""
    if start is None or end is None:
        return None
    return (end - start).total_seconds()


def age(then: datetime | None, now: datetime) -> str:
    """How long ago `then` was: `3.2s ago`; `never` when absent."""
    if then is None:
        return "never"
    return duration((now - then).total_seconds()) + " ago"


def sparkline(values: Sequence[float]) -> str:
    """One bar per value, scaled between the finite minimum and maximum; NaN and ±inf as `·`."""
    finite = [v for v in values if math.isfinite(v)]
    if not finite:
        return "·" * len(values)
    low, high = min(finite), max(finite)
    span = high - low
    top = len(SPARK_BARS) - 1
    bars = []
    for value in values:
        if not math.isfinite(value):
            bars.append("·")
        elif span == 0:
            bars.append(SPARK_BARS[top // 2])
        else:
            bars.append(SPARK_BARS[round((value - low) / span * top)])
    return "".join(bars)


def status_markup(status: str) -> str:
    """The status in its colour (rich markup)."""
    return f"[{STATUS_STYLES.get(status, 'white')}]{status}[/]"


_CONTROLS = [*range(0x20), 0x7F, *range(0x80, 0xA0)]
_BIDI = [*range(0x202A, 0x202F), *range(0x2066, 0x206A)]
_ESCAPES = {code: f"\\x{code:02x}" for code in _CONTROLS} | {
    code: f"\\u{code:04x}" for code in _BIDI
}


def terminal_safe(text: str) -> str:
    r"""`text` with every control character shown as a backslash escape (ESC as `\x1b`).

    C0 and C1 controls, DEL and the bidirectional overrides: user data (params, names, log
    messages) can then neither clear the screen, move the cursor, retitle the terminal nor
    reorder what follows it. Newlines and tabs are escaped too (`\x0a`, `\x09`): call
    `first_line` first where only one line is wanted.
    """
    return text.translate(_ESCAPES)


def shown(text: str) -> str:
    """User data as rich markup: control characters escaped (`terminal_safe`), then markup."""
    return escape(terminal_safe(text))


def first_line(text: str | None, width: int = 100) -> str:
    """The first line of `text`, cut to `width` characters."""
    if not text:
        return ""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= width else line[: width - 1] + "…"


def json_value(value: Any) -> Any:
    """A value JSON can carry: times as ISO 8601, non-finite numbers as strings."""
    if isinstance(value, dict):
        return {k: json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    for kind, convert in _JSON_CONVERSIONS:
        if isinstance(value, kind):
            return convert(value)
    return value


def _decimal(value: Decimal) -> int | float:
    return int(value) if value == value.to_integral_value() else float(value)


_JSON_CONVERSIONS: tuple[tuple[type[Any], Callable[[Any], Any]], ...] = (
    (datetime, datetime.isoformat),
    (timedelta, timedelta.total_seconds),
    (uuid.UUID, str),
    (Decimal, _decimal),
)


def dumps(value: Any, *, indent: int | None = 2) -> str:
    """Strict JSON (no NaN literals) for `--json` output."""
    return json.dumps(json_value(value), indent=indent, allow_nan=False, ensure_ascii=False)


def unwrap(doc: str | None) -> str:
    """A docstring as `--help` text: paragraphs kept, the line breaks inside them joined."""
    paragraphs = inspect.cleandoc(doc or "").split("\n\n")
    return "\n\n".join(" ".join(p.split()) for p in paragraphs)
