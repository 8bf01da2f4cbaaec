"""Fingerprints of lazy datasets, without reading every pixel on every command.

The in-memory :class:`~umae_eval.data.imageset.ImageSet` hashes its pixels (0.1 s for CIFAR).
A lazy set of a million files cannot, so :func:`lazy_fingerprint` hashes

- the layout, class ids and class names;
- per split: every item's name, label and stored size (and, for files in a folder, the
  modification time; for an archive or shard, the archive's size and mtime);
- the full bytes of a seeded sample of ``SAMPLE`` items per split.

Renaming, relabelling, adding, removing, resizing or touching a file changes it; editing the
pixels of a file in place with its size and mtime kept is only caught if the file is in the
sample. :data:`METHOD` says this in results.json.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

#: Items per split whose bytes are hashed in full.
SAMPLE = 32

#: What results.json says about how a lazy fingerprint was made.
METHOD = (f"sha256 of the file list (names, labels, sizes, mtimes) plus the bytes of a seeded "
          f"sample of {SAMPLE} files per split; not of every pixel")


def lazy_fingerprint(layout: str, class_ids: Sequence[str], class_names: Sequence[str],
                     splits: Sequence[tuple[Sequence[str], np.ndarray, Sequence[int], object]],
                     extra: Sequence[object] = (), seed: int = 0) -> str:
    """Hex sha256 of a lazy dataset (see the module docstring).

    Parameters
    ----------
    layout : str
    class_ids, class_names : sequence of str
    splits : sequence of (names, labels (N,), sizes, reader)
        Per split: item names, int64 labels, each item's stored size in bytes (or any int
        that changes when the item does, e.g. size * 2**40 + mtime), and the reader whose
        ``reader(i)`` gives bytes or a path.
    extra : sequence
        More things that identify the source (an archive's size and mtime, shard names).
    seed : int
        Seeds the sample.
    """
    h = hashlib.sha256(b"umae-lazy-v1\n")
    h.update(f"{layout}\n{list(class_ids)}\n{list(class_names)}\n{list(map(str, extra))}\n".encode())
    for s, (names, labels, sizes, reader) in enumerate(splits):
        h.update(f"split{s}:{len(names)}\n".encode())
        for name, label, size in zip(names, np.asarray(labels).tolist(), sizes):
            h.update(f"{name}\t{label}\t{size}\n".encode())
        rng = np.random.default_rng([seed, s])
        for i in np.sort(rng.permutation(len(names))[:SAMPLE]).tolist():
            src = reader(i)  # type: ignore[operator]
            h.update(src.read_bytes() if isinstance(src, Path) else src)
    return h.hexdigest()


def file_states(root: Path, names: Sequence[str]) -> list[int]:
    """``size * 2**40 + (mtime_ns // 1000 mod 2**40)`` of each file ``root / name`` (one stat each)."""
    out = []
    for n in names:
        st = os.stat(root / n)
        out.append(int(st.st_size) * (1 << 40) + (st.st_mtime_ns // 1000) % (1 << 40))
    return out
