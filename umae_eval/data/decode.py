"""One image from bytes or a file to a uint8 RGB array; resizing by the one rule."""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from umae_eval.errors import UmaeError


def open_rgb(src: Path | bytes, name: str, source: str, size: int | None) -> Image.Image:
    """Open one image as RGB, using JPEG draft mode when it will be shrunk to ``size``."""
    hint = {".jpg": ("JPEG",), ".jpeg": ("JPEG",), ".png": ("PNG",)}.get(os.path.splitext(name)[1].lower())
    fh = io.BytesIO(src) if isinstance(src, bytes) else src
    try:
        try:
            im = Image.open(fh, formats=hint)
        except UnidentifiedImageError:
            if hint is None:
                raise
            if isinstance(fh, io.BytesIO):
                fh.seek(0)
            im = Image.open(fh)  # the suffix lied (e.g. a PNG named .jpg)
        if size is not None and im.format == "JPEG" and min(im.size) >= 2 * size:
            im.draft("RGB", (size, size))
        if im.mode == "P":
            im = im.convert("RGBA")
        if im.mode != "RGB":
            im = im.convert("RGB")
        im.load()
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise UmaeError(f"{source}: cannot read image {name} ({type(exc).__name__}: {exc}); "
                        "replace or remove that file") from None
    return im


def fit_square(im: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` (bicubic, antialiased) and take the centre square."""
    w, h = im.size
    if (w, h) == (size, size):
        return im
    m = min(w, h)
    left, top = (w - m) / 2, (h - m) / 2
    return im.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + m, top + m))


def decode_image(src: Path | bytes, name: str, source: str, size: int | None) -> np.ndarray:
    """One image as uint8 ``(H, W, 3)``; ``(size, size, 3)`` when ``size`` is given."""
    im = open_rgb(src, name, source, size)
    if size is not None:
        im = fit_square(im, size)
    return np.asarray(im)


def resize_array(x: np.ndarray, size: int) -> np.ndarray:
    """``(N, H, W, 3)`` uint8 -> ``(N, size, size, 3)`` with the same rule as decoding."""
    if x.shape[1:3] == (size, size):
        return x
    out = np.empty((len(x), size, size, 3), np.uint8)
    for i, img in enumerate(x):
        out[i] = np.asarray(fit_square(Image.fromarray(np.ascontiguousarray(img)), size))
    return out
