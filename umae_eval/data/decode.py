"""One image from bytes or a file to a uint8 RGB array; resizing by the one rule.

Every mode PIL opens ends as 8-bit RGB (:func:`to_rgb`):

* 16-bit grayscale (``I;16``, ``I;16B``, ``I;16L``, ``I;16N``; ``I`` as 16-bit samples, clipped to
  0..65535): ``v >> 8``. PIL's own ``convert`` clips such values at 255, which leaves a 16-bit
  image black and white. The high byte is what Pillow and libpng (``png_set_strip_16``) keep
  for 16-bit RGB PNGs, so a grey 16-bit file decodes to the same levels as the same picture
  saved as 16-bit RGB; each of the 256 levels gets an equal 256-value bin; and it undoes the
  ``v * 257`` that tools write 8-bit data to 16 bits with, exactly.
* 32-bit float ``F``: values in [0, 1] are scaled by 255 (the convention of float images and
  of umae's ``.npz`` reader), others are taken as 0..255 levels (PIL's own ``F`` convention);
  then rounded and clipped. NaN becomes 0.
* palette ``P`` / ``PA`` (with or without transparency), ``LA``, ``RGBA``: PIL's conversion to
  RGB; alpha is dropped, not composited, as torchvision's loader does.
* ``CMYK`` (CMYK JPEGs, Adobe-inverted ones included): PIL's conversion,
  ``R = (255 - C)(255 - K) / 255`` per channel.
* ``1``, ``L`` and everything else: PIL's conversion to RGB.

EXIF orientation is applied (``ImageOps.exif_transpose``): a phone photo tagged "rotate 90"
is decoded the way viewers show it. torchvision's default loader ignores the tag; ImageNet
and CIFAR files carry none, so they decode as before.
"""

from __future__ import annotations

import io
import os
import struct
from pathlib import Path
from typing import Literal, overload

import numpy as np
from PIL import ExifTags, Image, ImageOps, UnidentifiedImageError

from umae_eval.errors import UmaeError

_DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, struct.error, IndexError,
                  Image.DecompressionBombError)


@overload
def open_rgb(src: Path | bytes, name: str, source: str, size: int | None,
             *, skip_bad: Literal[False] = False) -> Image.Image: ...
@overload
def open_rgb(src: Path | bytes, name: str, source: str, size: int | None,
             *, skip_bad: bool) -> Image.Image | None: ...
def open_rgb(src: Path | bytes, name: str, source: str, size: int | None,
             *, skip_bad: bool = False) -> Image.Image | None:
    """Open one image as upright 8-bit RGB, in JPEG draft mode when it will be shrunk to ``size``.

    Parameters
    ----------
    src : Path or bytes
        The file, or its bytes.
    name, source : str
        The file's name and the dataset it belongs to, for the error message.
    size : int or None
        The side it will be resized to; a JPEG at least twice as large is decoded at a
        reduced scale (1/2, 1/4 or 1/8), which is several times faster.
    skip_bad : bool
        Return None for an undecodable file instead of raising (callers count the skips).

    Raises
    ------
    UmaeError
        ``<source>: cannot read image <name> (<why>); replace or remove that file``.
    """
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
        im.load()
        im = upright(im)
        im = to_rgb(im)
    except _DECODE_ERRORS as exc:
        if skip_bad:
            return None
        raise UmaeError(f"{source}: cannot read image {name} ({type(exc).__name__}: {exc}); "
                        "replace or remove that file") from None
    return im


def upright(im: Image.Image) -> Image.Image:
    """Apply the EXIF orientation tag (2..8), so the image is as viewers show it."""
    try:
        orientation = im.getexif().get(ExifTags.Base.Orientation, 1)
    except _DECODE_ERRORS:
        return im  # a damaged EXIF block says nothing about the pixels, which decoded fine
    if orientation in (2, 3, 4, 5, 6, 7, 8):
        return ImageOps.exif_transpose(im)
    return im  # no copy when there is nothing to turn


def to_rgb(im: Image.Image) -> Image.Image:
    """Any PIL mode -> 8-bit ``RGB`` by the rules in the module docstring."""
    mode = im.mode
    if mode == "RGB":
        return im
    if mode.startswith("I;16") or mode == "I":
        a = np.asarray(im)
        if mode == "I":
            a = np.clip(a, 0, 65535)
        return _grey(np.right_shift(a.astype(np.uint32), 8).astype(np.uint8))
    if mode == "F":
        a = np.nan_to_num(np.asarray(im, dtype=np.float32), nan=0.0, posinf=255.0, neginf=0.0)
        if a.size and a.min() >= 0.0 and a.max() <= 1.0:
            a = a * 255.0
        return _grey(np.clip(np.rint(a), 0, 255).astype(np.uint8))
    if mode in ("P", "PA"):
        im = im.convert("RGBA")  # also the route PIL asks for palettes with transparency
    return im.convert("RGB")


def _grey(g: np.ndarray) -> Image.Image:
    return Image.fromarray(np.repeat(g[:, :, None], 3, axis=2))


def fit_square(im: Image.Image, size: int) -> Image.Image:
    """Resize the shorter side to ``size`` (bicubic, antialiased) and take the centre square."""
    w, h = im.size
    if (w, h) == (size, size):
        return im
    m = min(w, h)
    left, top = (w - m) / 2, (h - m) / 2
    return im.resize((size, size), Image.Resampling.BICUBIC, box=(left, top, left + m, top + m))


@overload
def decode_image(src: Path | bytes, name: str, source: str, size: int | None,
                 *, skip_bad: Literal[False] = False) -> np.ndarray: ...
@overload
def decode_image(src: Path | bytes, name: str, source: str, size: int | None,
                 *, skip_bad: bool) -> np.ndarray | None: ...
def decode_image(src: Path | bytes, name: str, source: str, size: int | None,
                 *, skip_bad: bool = False) -> np.ndarray | None:
    """One image as uint8 ``(H, W, 3)``; ``(size, size, 3)`` when ``size`` is given.

    With ``skip_bad`` an undecodable file gives None instead of the UmaeError of
    :func:`open_rgb`.
    """
    im = open_rgb(src, name, source, size, skip_bad=skip_bad)
    if im is None:
        return None
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
