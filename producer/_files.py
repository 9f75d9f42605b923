"""Images and files attached to a run: read, checked and size-limited in the caller."""

from __future__ import annotations

import io
import mimetypes
import os
from pathlib import Path
from typing import Any

from runstream._errors import ValidationError
from runstream.schemas import FILE_MAX

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def _read_limited(field: str, path: str | os.PathLike[str]) -> bytes:
    file = Path(path)
    try:
        size = file.stat().st_size
    except OSError as exc:
        raise ValidationError(
            field, str(path), f"a readable file ({exc.strerror})", rule="bad_value"
        ) from exc
    if size > FILE_MAX:
        raise ValidationError(field, f"{size} bytes", f"at most {FILE_MAX} bytes", rule="oversize")
    return file.read_bytes()


def image_bytes(name: str, path: str | os.PathLike[str] | None, plot: Any) -> bytes:
    """PNG bytes of an image given as a file path or a matplotlib figure (exactly one of them)."""
    if (path is None) == (plot is None):
        raise ValidationError(name, (path, plot), "either path= or plot=", rule="bad_value")
    if plot is not None:
        if not callable(getattr(plot, "savefig", None)):
            raise ValidationError(name, plot, "a matplotlib figure or pyplot", rule="bad_value")
        buffer = io.BytesIO()
        plot.savefig(buffer, format="png")
        data = buffer.getvalue()
    else:
        data = _read_limited(name, path)  # type: ignore[arg-type]
    if not data.startswith(PNG_SIGNATURE):
        raise ValidationError(name, data[:8], "a PNG image", rule="bad_value")
    if len(data) > FILE_MAX:
        raise ValidationError(
            name, f"{len(data)} bytes", f"at most {FILE_MAX} bytes", rule="oversize"
        )
    return data


def file_bytes(name: str, path: str | os.PathLike[str]) -> tuple[str, bytes]:
    """(media type, bytes) of a small file."""
    media_type = mimetypes.guess_type(str(path))[0] or "application/octet-stream"
    return media_type, _read_limited(name, path)
