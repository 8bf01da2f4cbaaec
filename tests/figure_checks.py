"""Checks that a written figure file really holds a drawing (opened with pypdf / an XML parser)."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from pathlib import Path

#: PDF operators that construct a path, and those that paint one (PDF 1.7, Table 59 / 60).
PATH_OPS = {b"m", b"l", b"c", b"v", b"y", b"re"}
PAINT_OPS = {b"S", b"s", b"f", b"F", b"f*", b"B", b"B*", b"b", b"b*"}


def pdf_operators(path: Path) -> Counter:
    """Operator counts of every page's content stream, plus ``pages`` and the metadata."""
    from pypdf import PdfReader
    from pypdf.generic import ContentStream

    reader = PdfReader(str(path))
    ops: Counter = Counter()
    for page in reader.pages:
        ops.update(op for _, op in ContentStream(page.get_contents(), reader).operations)
    ops["pages"] = len(reader.pages)
    return ops


def assert_pdf_draws(path: Path, min_paths: int = 20, text: bool = True) -> dict:
    """One page, at least ``min_paths`` path segments (or stamped markers) painted, some text (unless
    ``text`` is False: a map of many classes has no key, and its title is the caption's); returns
    the metadata."""
    from pypdf import PdfReader

    ops = pdf_operators(path)
    assert ops["pages"] == 1, f"{path.name}: {ops['pages']} pages"
    # scatter markers are one path stored once and stamped with ``Do`` at every point
    n_paths = sum(ops[o] for o in PATH_OPS) + ops[b"Do"]
    n_paint = sum(ops[o] for o in PAINT_OPS) + ops[b"Do"]  # a stamped marker is painted where it lands
    assert n_paths >= min_paths and n_paint >= 3, f"{path.name}: {n_paths} path segments/stamps, {n_paint} paints"
    assert not text or ops[b"Tj"] + ops[b"TJ"] > 0, f"{path.name}: no text (axis labels, legend)"
    return dict(PdfReader(str(path)).metadata or {})


def assert_svg_draws(path: Path, min_paths: int = 5, text: bool = True) -> None:
    """A parseable SVG with at least ``min_paths`` drawn elements and some text (unless ``text`` is False)."""
    root = ET.parse(path).getroot()
    tags = Counter(el.tag.rsplit("}", 1)[-1] for el in root.iter())
    assert tags["path"] + tags["use"] + tags["rect"] >= min_paths, f"{path.name}: {dict(tags)}"
    assert not text or tags["text"] > 0, f"{path.name}: no text"
