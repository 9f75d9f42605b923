"""What the compat APIs share: images as PNG bytes, and saying once what has no meaning here."""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import Any

from runstream._errors import ValidationError
from runstream.producer import Run

logger = logging.getLogger("runstream.compat")
_said: set[str] = set()


def say_once(api: str, call: str, what: str) -> None:
    """Tell (once per process and call, at WARNING) what a call without runstream meaning did."""
    if call not in _said:
        _said.add(call)
        logger.warning("runstream.compat.%s: %s %s", api, call, what)


class PngImage:
    """PNG bytes that `Run.log_image(plot=...)` takes as it takes a figure."""

    def __init__(self, data: bytes) -> None:
        self.data = data

    def savefig(self, buffer: io.BytesIO, format: str = "png") -> None:
        """Write the PNG bytes (the figure protocol `log_image` uses)."""
        buffer.write(self.data)


def png_bytes(name: str, image: Any) -> bytes:
    """PNG bytes of a path, a matplotlib figure, a PIL image or an array (HxW, HxWx3, HxWx4)."""
    if isinstance(image, str | os.PathLike):
        return Path(image).read_bytes()
    if callable(getattr(image, "savefig", None)):
        buffer = io.BytesIO()
        image.savefig(buffer, format="png")
        return buffer.getvalue()
    if not callable(getattr(image, "save", None)):
        image = _from_array(name, image)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def _from_array(name: str, array: Any) -> Any:
    try:
        import numpy as np  # noqa: PLC0415 - optional dependencies
        from PIL import Image  # noqa: PLC0415
    except ImportError as exc:
        hint = "pip install 'runstream[compat]'"
        raise ImportError(f"images from arrays need numpy and Pillow: {hint}") from exc
    values = np.asarray(array)
    if values.ndim not in (2, 3):
        raise ValidationError(name, values.shape, "an image array HxW, HxWx3 or HxWx4")
    if values.dtype != np.uint8:
        values = np.clip(values * 255 if values.max(initial=0) <= 1 else values, 0, 255)
        values = values.astype(np.uint8)
    return Image.fromarray(values)


def log_png(run: Run, name: str, data: bytes, step: int | None) -> None:
    """Log PNG bytes as the image `name` at `step`."""
    run.log_image(name, plot=PngImage(data), step=step)
