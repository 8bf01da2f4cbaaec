"""WebDataset shards: ``train-{000000..000099}.tar`` with ``<key>.jpg|png`` and ``<key>.cls``.

Two ways to name them in ``--data``:

- a folder holding the shards, named ``train-NNNNNN.tar`` and ``val-NNNNNN.tar`` (or
  ``test-NNNNNN.tar``); ``train_*.tar`` / ``val_*.tar`` are also accepted;
- a brace pattern for the training shards, ``/data/in1k/train-{000000..000999}.tar``; the
  evaluation shards are the same pattern with ``train`` replaced by ``val`` (or ``test``),
  expanded with the same numbers wherever those files exist.

Samples are grouped exactly as the ``webdataset`` package groups them (its own
``base_plus_ext`` key rule: the key is the member name up to the first dot of its base name),
so a shard written by ``webdataset.TarWriter`` or ``ShardWriter`` reads back as written. Each
shard is indexed once (member offsets, cached; :mod:`umae_eval.data.tarindex`) so items can be
decoded at random, per item, in DataLoader workers. Labels are the integer text of ``.cls``;
class names come from ``classes.txt`` (one name per line, label order) beside the shards when
present, else the label numbers.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from umae_eval.data.formats import IMAGE_SUFFIXES, MAX_CLASSES, check_utf8_names
from umae_eval.errors import UmaeError
from umae_eval.progress import ProgressFactory, null_progress

_SHARD = re.compile(r"^(train|val|test)[-_]\d+\.tar$")
_IMAGE_EXTS = tuple(s.lstrip(".") for s in IMAGE_SUFFIXES)


def _expand(pattern: str) -> list[str]:
    from braceexpand import braceexpand

    return list(braceexpand(pattern))


def shard_splits(spec: str | Path) -> dict[str, list[Path]] | None:
    """``{'train': [...], 'test': [...]}`` shard paths if ``spec`` names WebDataset shards, else None.

    Raises
    ------
    UmaeError
        Shards for training but none for evaluation, or a pattern whose shards are missing.
    """
    text = str(spec)
    if "{" in text and ".." in text and text.endswith(".tar"):
        train = [Path(p) for p in _expand(text)]
        missing = [p for p in train if not p.is_file()]
        if missing:
            raise UmaeError(f"{text}: {len(missing)} of {len(train)} shards do not exist (first: {missing[0]}); "
                            "fix the brace pattern")
        name = Path(text).name
        if "train" not in name:
            raise UmaeError(f"{text}: the pattern must name the training shards (with 'train' in the "
                            "file name) so that the evaluation shards can be found beside them")
        for split in ("val", "test"):
            test = [p for p in (Path(s) for s in _expand(str(Path(text).parent / name.replace("train", split))))
                    if p.is_file()]
            if test:
                return {"train": train, "test": test}
        raise UmaeError(f"{text}: no evaluation shards beside the training shards; add "
                        f"{name.replace('train', 'val')} files")
    path = Path(text)
    if not path.is_dir():
        return None
    found: dict[str, list[Path]] = {}
    for p in sorted(path.iterdir()):
        m = _SHARD.match(p.name)
        if m and p.is_file():
            found.setdefault(m.group(1), []).append(p)
    if "train" not in found:
        return None
    test = found.get("val") or found.get("test")
    if not test:
        raise UmaeError(f"{path}: WebDataset training shards but no val-*.tar or test-*.tar shards; "
                        "add evaluation shards")
    return {"train": found["train"], "test": test}


def _base_plus_ext(name: str) -> tuple[str | None, str | None]:
    from webdataset.tariterators import base_plus_ext

    return base_plus_ext(name)


def index_shards(shards: list[Path], where: str, progress: ProgressFactory = null_progress,
                 cache: bool = True) -> tuple[list[str], np.ndarray, object]:
    """Names (``shard:key``), int64 labels and a picklable reader for the samples of ``shards``.

    Raises
    ------
    UmaeError
        A sample without an image or without a ``.cls``, or a ``.cls`` that is not an integer.
    """
    from umae_eval.data.tarindex import read_member, tar_index

    names: list[str] = []
    labels: list[int] = []
    paths: list[Path] = []
    shard_of: list[int] = []
    offsets: list[int] = []
    sizes: list[int] = []
    for s, shard in enumerate(shards):
        idx = tar_index(shard, cache=cache, progress=progress)
        paths.append(idx.path)
        samples: dict[str, dict[str, int]] = {}
        order: list[str] = []
        check_utf8_names(idx.names, str(shard))
        for m, member in enumerate(idx.names):
            key, ext = _base_plus_ext(member)
            if key is None or ext is None:
                continue
            if key not in samples:
                samples[key] = {}
                order.append(key)
            samples[key][ext.lower()] = m
        for key in order:
            parts = samples[key]
            image_ext = next((e for e in parts if e in _IMAGE_EXTS), None)
            if image_ext is None or "cls" not in parts:
                what = "an image (.jpg/.png/...)" if image_ext is None else "a .cls label"
                raise UmaeError(f"{shard}: sample {key!r} has no {what} (it has {', '.join(sorted(parts))}); "
                                "write each sample with an image and its integer .cls")
            c = parts["cls"]
            text = read_member(idx.path, int(idx.offsets[c]), int(idx.sizes[c])).decode("utf-8", "replace").strip()
            if not re.fullmatch(r"\d+", text):
                raise UmaeError(f"{shard}: {key}.cls holds {text[:20]!r}, not a class number; "
                                "write the label as its integer text")
            if len(text) > 9 or int(text) >= MAX_CLASSES:
                raise UmaeError(f"{shard}: {key}.cls holds label {text[:20]}, beyond the {MAX_CLASSES:,} "
                                "classes umae handles; labels are class numbers 0 .. classes - 1")
            i = parts[image_ext]
            names.append(f"{shard.name}:{key}.{image_ext}")
            labels.append(int(text))
            shard_of.append(s)
            offsets.append(int(idx.offsets[i]))
            sizes.append(int(idx.sizes[i]))
    if not names:
        raise UmaeError(f"{where}: the shards hold no samples; write them with webdataset.ShardWriter")
    reader = ShardReader(paths, np.asarray(shard_of, np.int32), np.asarray(offsets, np.int64),
                         np.asarray(sizes, np.int64))
    return names, np.asarray(labels, np.int64), reader


class ShardReader:
    """Item ``i``: ``sizes[i]`` bytes at ``offsets[i]`` of shard ``paths[shard_of[i]]``."""

    def __init__(self, paths: list[Path], shard_of: np.ndarray, offsets: np.ndarray, sizes: np.ndarray) -> None:
        self.paths, self.shard_of, self.offsets, self.sizes = paths, shard_of, offsets, sizes

    def __call__(self, i: int) -> bytes:
        from umae_eval.data.tarindex import read_member

        return read_member(self.paths[int(self.shard_of[i])], int(self.offsets[i]), int(self.sizes[i]))


def class_names_for(shards: list[Path], labels: list[np.ndarray]) -> tuple[list[str], list[str], list[str]]:
    """``(class_ids, class_names, notes)``: from ``classes.txt`` beside the shards, else the numbers."""
    top = max(int(y.max()) for y in labels if len(y)) + 1
    meta = shards[0].parent / "classes.txt"
    if meta.is_file():
        try:
            names = [ln.strip() for ln in meta.read_text("utf-8").splitlines() if ln.strip()]
        except UnicodeDecodeError as exc:
            raise UmaeError(f"{meta}: not UTF-8 text ({exc.reason} at byte {exc.start}); save it as UTF-8") from None
        if len(names) < top:  # checked before any list of `top` entries is built
            raise UmaeError(f"{meta}: lists {len(names)} class names but the shards use label {top - 1}; "
                            "give one name per line for every label")
        if len(names) > MAX_CLASSES:
            raise UmaeError(f"{meta}: lists {len(names):,} class names, more than the {MAX_CLASSES:,} umae handles")
        return [str(k) for k in range(len(names))], names, [f"class names from {meta.name}"]
    ids = [str(k) for k in range(top)]
    return ids, ids, ["no classes.txt beside the shards: classes are named by their label numbers"]
