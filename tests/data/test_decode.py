"""Odd images decode to the RGB the closed forms give: 16-bit and float greys, palettes, CMYK,
alpha, EXIF orientation, 1-bit; undecodable files are one line, or None with skip_bad."""

from __future__ import annotations

import io
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile

from umae_eval.data import load_dataset
from umae_eval.data.decode import decode_image
from umae_eval.errors import UmaeError

RAMP16 = np.arange(65536, dtype=np.uint16).reshape(256, 256)  # every 16-bit value once


def _saved(im: Image.Image, fmt: str, **kw: object) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **kw)
    return buf.getvalue()


def _png(a: np.ndarray, colour_type: int) -> bytes:
    """A 16-bit PNG written from the spec (filter 0 rows, big-endian samples), not by PIL."""
    h, w = a.shape[:2]
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in a)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


def _decode(data: bytes, name: str, size: int | None = None) -> np.ndarray:
    return decode_image(data, name, "src", size)


def _grey3(g: np.ndarray) -> np.ndarray:
    return np.repeat(g[:, :, None], 3, axis=2)


# --------------------------------------------------------------------------------------------
# 16-bit and float greys
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["png-spec", "png-pil", "tiff-I;16", "tiff-I;16B", "tiff-I"])
def test_16_bit_ramp_keeps_256_grey_levels(how: str) -> None:
    if how == "png-spec":
        data, name = _png(RAMP16, colour_type=0), "ramp.png"
    elif how == "png-pil":
        data, name = _saved(Image.fromarray(RAMP16), "PNG"), "ramp.png"
    elif how == "tiff-I;16":
        data, name = _saved(Image.fromarray(RAMP16), "TIFF"), "ramp.tif"
    elif how == "tiff-I;16B":
        data, name = _saved(Image.frombytes("I;16B", (256, 256), RAMP16.astype(">u2").tobytes()), "TIFF"), "ramp.tiff"
    else:
        data, name = _saved(Image.fromarray(RAMP16.astype(np.int32)), "TIFF"), "ramp.tif"
    assert Image.open(io.BytesIO(data)).mode == {"tiff-I": "I", "tiff-I;16B": "I;16B"}.get(how, "I;16")
    out = _decode(data, name)
    # the high byte: value v -> v // 256, so each of the 256 levels holds 256 consecutive values
    expected = _grey3((RAMP16 // 256).astype(np.uint8))
    np.testing.assert_array_equal(out, expected)
    assert len(np.unique(out)) == 256


def test_16_bit_grey_matches_pil_on_the_same_picture_as_16_bit_rgb() -> None:
    """PIL reads 16-bit RGB PNGs itself (keeping the high byte); the grey rule agrees with it."""
    rng = np.random.default_rng(0)
    grey = rng.integers(0, 65536, (20, 30), dtype=np.uint16)
    via_rgb = np.asarray(Image.open(io.BytesIO(_png(np.repeat(grey[:, :, None], 3, 2), colour_type=2))))
    np.testing.assert_array_equal(_decode(_png(grey, colour_type=0), "g.png"), via_rgb)


def test_8_bit_data_stored_as_16_bit_comes_back_exactly() -> None:
    levels = np.arange(256, dtype=np.uint16).reshape(16, 16)
    out = _decode(_png(levels * 257, colour_type=0), "x.png")  # how tools widen 8-bit data
    np.testing.assert_array_equal(out, _grey3(levels.astype(np.uint8)))


def test_mode_i_is_clipped_to_16_bits() -> None:
    a = np.array([[-5, 0, 256, 65535, 70000]], dtype=np.int32)
    out = _decode(_saved(Image.fromarray(a), "TIFF"), "i.tif")
    np.testing.assert_array_equal(out[0, :, 0], [0, 0, 1, 255, 255])


def test_float_images_in_unit_range_and_in_levels() -> None:
    unit = np.linspace(0, 1, 64, dtype=np.float32).reshape(8, 8)
    out = _decode(_saved(Image.fromarray(unit), "TIFF"), "f.tif")
    np.testing.assert_array_equal(out, _grey3(np.rint(unit.astype(np.float64) * 255).astype(np.uint8)))
    levels = np.array([[0.4, 1.6, 127.5, 254.4, 300.0, np.nan]], dtype=np.float32)
    out = _decode(_saved(Image.fromarray(levels), "TIFF"), "f.tif")
    np.testing.assert_array_equal(out[0, :, 0], [0, 2, 128, 254, 255, 0])


# --------------------------------------------------------------------------------------------
# Palette, alpha, CMYK, 1-bit
# --------------------------------------------------------------------------------------------


def _palette_image(transparency: int | None) -> tuple[Image.Image, np.ndarray]:
    rng = np.random.default_rng(1)
    palette = rng.integers(0, 256, (256, 3), dtype=np.uint8)
    index = rng.integers(0, 256, (12, 10), dtype=np.uint8)
    im = Image.frombytes("P", (10, 12), index.tobytes())
    im.putpalette(palette.reshape(-1).tolist())
    if transparency is not None:
        im.info["transparency"] = transparency
    return im, palette[index]


@pytest.mark.parametrize("transparency", [None, 7])
def test_palette_png_takes_the_palette_colours(transparency: int | None) -> None:
    im, expected = _palette_image(transparency)
    data = _saved(im, "PNG", transparency=transparency) if transparency is not None else _saved(im, "PNG")
    reopened = Image.open(io.BytesIO(data))
    assert reopened.mode == "P" and (("transparency" in reopened.info) == (transparency is not None))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL warns when a palette with transparency goes straight to RGB
        out = _decode(data, "p.png")
    np.testing.assert_array_equal(out, expected)


def test_gif_palette() -> None:
    im, expected = _palette_image(None)
    np.testing.assert_array_equal(_decode(_saved(im, "GIF"), "p.gif"), expected)


def test_alpha_is_dropped_not_composited() -> None:
    rng = np.random.default_rng(2)
    rgba = rng.integers(0, 256, (9, 7, 4), dtype=np.uint8)
    np.testing.assert_array_equal(_decode(_saved(Image.fromarray(rgba), "PNG"), "a.png"), rgba[..., :3])
    la = rgba[..., [0, 3]]
    out = _decode(_saved(Image.frombytes("LA", (7, 9), la.tobytes()), "PNG"), "la.png")
    np.testing.assert_array_equal(out, _grey3(la[..., 0]))


@pytest.mark.parametrize("cmyk", [(0, 0, 0, 0), (255, 0, 0, 0), (100, 50, 200, 30), (10, 240, 60, 128),
                                  (0, 0, 0, 255)])
def test_cmyk_jpeg_follows_the_closed_form(cmyk: tuple[int, int, int, int]) -> None:
    data = _saved(Image.new("CMYK", (16, 16), cmyk), "JPEG", quality=100)
    assert Image.open(io.BytesIO(data)).mode == "CMYK"
    c, m, y, k = (np.float64(v) for v in cmyk)
    expected = np.array([(255 - c) * (255 - k), (255 - m) * (255 - k), (255 - y) * (255 - k)]) / 255
    out = _decode(data, "cmyk.jpg").reshape(-1, 3).astype(np.float64)
    assert np.abs(out - expected).max() <= 2.0, (out.mean(0), expected)


def test_one_bit_image_is_black_and_white() -> None:
    bits = (np.indices((6, 8)).sum(0) % 2).astype(bool)
    im = Image.frombytes("1", (8, 6), np.packbits(bits, axis=1).tobytes())
    assert im.mode == "1"
    np.testing.assert_array_equal(_decode(_saved(im, "PNG"), "b.png"), _grey3(bits.astype(np.uint8) * 255))


# --------------------------------------------------------------------------------------------
# EXIF orientation
# --------------------------------------------------------------------------------------------

# What a viewer shows for each EXIF orientation, from the stored pixels (TIFF 6.0 / EXIF 2.3):
UPRIGHT = {
    1: lambda a: a,
    2: lambda a: a[:, ::-1],
    3: lambda a: a[::-1, ::-1],
    4: lambda a: a[::-1],
    5: lambda a: a.transpose(1, 0, 2),
    6: lambda a: np.rot90(a, -1),
    7: lambda a: a[::-1, ::-1].transpose(1, 0, 2),
    8: lambda a: np.rot90(a, 1),
}
BLOCK_COLOURS = np.array([[[230, 30, 30], [30, 230, 30], [30, 30, 230]],
                          [[230, 230, 30], [30, 230, 230], [230, 30, 230]]], dtype=np.uint8)


def _blocks(side: int) -> np.ndarray:
    """2 x 3 blocks of flat colour, each ``side`` px: (2 side, 3 side, 3)."""
    return np.repeat(np.repeat(BLOCK_COLOURS, side, 0), side, 1)


def _exif_jpeg(a: np.ndarray, orientation: int) -> bytes:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _saved(Image.fromarray(a), "JPEG", quality=95, subsampling=0, exif=exif.tobytes())


@pytest.mark.parametrize("orientation", range(1, 9))
def test_exif_orientation_is_applied(orientation: int) -> None:
    stored = _blocks(16)
    out = _decode(_exif_jpeg(stored, orientation), "photo.jpg").astype(int)
    expected = UPRIGHT[orientation](stored).astype(int)
    assert out.shape == expected.shape
    assert np.abs(out - expected).mean() < 3.0


def test_exif_orientation_with_draft_mode(monkeypatch: pytest.MonkeyPatch) -> None:
    """A 4x-too-large JPEG is decoded in draft mode, then turned upright, then cropped."""
    drafts: list[tuple[str | None, tuple[int, int] | None]] = []
    original = JpegImageFile.draft

    def spy(self: JpegImageFile, mode: str | None, size: tuple[int, int] | None) -> object:
        drafts.append((mode, size))
        return original(self, mode, size)

    monkeypatch.setattr(JpegImageFile, "draft", spy)
    stored = _blocks(32)  # 64 x 96 stored; orientation 6 shows it 96 x 64 (H x W)
    out = _decode(_exif_jpeg(stored, 6), "photo.jpg", size=16).astype(int)
    assert drafts == [("RGB", (16, 16))]
    shown = np.rot90(stored, -1)
    top = (96 - 64) // 2  # the centre square of the upright image, scaled 64 -> 16
    expected = shown[top:top + 64].reshape(16, 4, 16, 4, 3).mean((1, 3))
    # inside blocks, away from their edges, where bicubic resizing and JPEG blur
    for rows, cols in [(slice(2, 6), slice(2, 6)), (slice(10, 14), slice(10, 14)), (slice(2, 6), slice(10, 14))]:
        assert np.abs(out[rows, cols] - expected[rows, cols]).mean() < 6.0, (rows, cols)


def test_exif_without_orientation_and_plain_files_are_unchanged() -> None:
    stored = _blocks(8)
    exif = Image.Exif()
    exif[0x010F] = "camera maker"
    plain = _decode(_saved(Image.fromarray(stored), "PNG"), "p.png")
    np.testing.assert_array_equal(plain, stored)
    tagged = _decode(_saved(Image.fromarray(stored), "JPEG", quality=95, exif=exif.tobytes()), "p.jpg")
    assert tagged.shape == stored.shape


# --------------------------------------------------------------------------------------------
# Undecodable files
# --------------------------------------------------------------------------------------------


def test_undecodable_files_are_one_line_or_skipped() -> None:
    good = _saved(Image.fromarray(_blocks(8)), "JPEG", quality=90)
    for name, data, why in (("bad.jpg", b"\xff\xd8\xff\xe0 not really a jpeg", "OSError"),
                            ("cut.jpg", good[: len(good) - 40], "OSError: image file is truncated"),
                            ("noise.png", b"\x89PNG\r\n\x1a\n" + bytes(40), "")):
        with pytest.raises(UmaeError, match=rf"^src: cannot read image {name} \({why}.*\); replace or remove "
                                            r"that file$"):
            decode_image(data, name, "src", None)
        assert decode_image(data, name, "src", None, skip_bad=True) is None
    np.testing.assert_array_equal(decode_image(good, "ok.jpg", "src", 8, skip_bad=True),
                                  decode_image(good, "ok.jpg", "src", 8))


def test_imagefolder_of_16_bit_pngs_keeps_its_grey_levels(tmp_path: Path) -> None:
    """The measured bug: a 16-bit grayscale ImageFolder came out black and white."""
    root = tmp_path
    for rel, part in (("train/a/0.png", RAMP16[:128]), ("train/b/1.png", RAMP16[128:]), ("test/a/2.png", RAMP16[:128])):
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(_png(part, colour_type=0))
    ds = load_dataset(root)
    np.testing.assert_array_equal(ds.x_train[:, :, :, 0].reshape(-1), (RAMP16.reshape(-1) // 256).astype(np.uint8))
    assert len(np.unique(ds.x_train)) == 256
