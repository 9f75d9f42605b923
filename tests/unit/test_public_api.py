"""The public surface: exported names are locked, every setting is documented."""

from __future__ import annotations

from pathlib import Path

import runstream
import runstream.compat.wandb
import runstream.consumers.read
import runstream.producer
import runstream.producer.logging
import runstream.schemas
from runstream._settings import Settings

README = Path(__file__).resolve().parents[2] / "README.md"


def test_runstream_exports() -> None:
    assert runstream.__all__ == [
        "AmbiguousRunError",
        "ClosedError",
        "ConfigError",
        "DecodeError",
        "NotFoundError",
        "RunstreamError",
        "TransportError",
        "ValidationError",
        "__version__",
    ]


def test_producer_exports() -> None:
    assert runstream.producer.__all__ == [
        "AsyncRun",
        "CloseReport",
        "Run",
        "RunContext",
        "get_run",
        "start_async_run",
        "start_run",
    ]
    assert runstream.producer.logging.__all__ == ["RunLogHandler"]


def test_read_api_exports() -> None:
    assert runstream.consumers.read.__all__ == [
        "FRAME_KINDS",
        "LIVE_STATES",
        "AmbiguousRunError",
        "AsyncClient",
        "Client",
        "FrameKind",
        "NotFoundError",
        "RunFilter",
    ]


def _isort_key(name: str) -> tuple[int, str]:
    """Constants, then classes, then functions: the order ruff keeps `__all__` in."""
    kind = 0 if name.isupper() else 1 if name[0].isupper() else 2
    return kind, name


def test_exports_are_sorted_and_resolve() -> None:
    modules = (
        runstream,
        runstream.producer,
        runstream.schemas,
        runstream.consumers.read,
        runstream.compat.wandb,
    )
    for module in modules:
        assert module.__all__ == sorted(module.__all__, key=_isort_key)
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_every_setting_is_in_the_readme() -> None:
    text = README.read_text()
    missing = [
        f"RUNSTREAM_{name.upper()}"
        for name in Settings.model_fields
        if f"`RUNSTREAM_{name.upper()}`" not in text
    ]
    assert missing == []


def test_error_tree_keeps_stdlib_meaning() -> None:
    assert issubclass(runstream.ValidationError, ValueError)
    assert issubclass(runstream.ConfigError, ValueError)
    assert issubclass(runstream.ClosedError, RuntimeError)
    assert issubclass(runstream.TransportError, OSError)
    for error in (runstream.ValidationError, runstream.DecodeError, runstream.TransportError):
        assert issubclass(error, runstream.RunstreamError)
