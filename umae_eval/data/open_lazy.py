"""Open a file-based dataset lazily: list it (no decoding) and return a :class:`LazyImageSet`.

Sources: an ImageFolder folder, an ImageFolder ``.tar`` / ``.tar.gz`` (indexed once, see
:mod:`umae_eval.data.tarindex`), WebDataset shards (:mod:`umae_eval.data.wds`). The layouts
(plain ImageFolder, Tiny ImageNet, ImageNet's Kaggle layout, ...) are the same as the in-memory
path's, found from the list of file names.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from umae_eval.data.fingerprint import METHOD, file_states, lazy_fingerprint
from umae_eval.data.lazy import FolderReader, LazyImageSet, LazySplit, OffsetReader
from umae_eval.errors import UmaeError
from umae_eval.progress import ProgressFactory, null_progress


def _labels(entries: list) -> np.ndarray:
    return np.asarray([e[1] for e in entries], dtype=np.int64)


def open_folder(root: Path, source: str, skip_bad: bool = False) -> LazyImageSet:
    """An ImageFolder folder in any layout of :mod:`umae_eval.data.layouts` (one stat per file)."""
    from umae_eval.data.layouts import find_listing, wanted_dir
    from umae_eval.data.walk import walk_tree

    walk = walk_tree(root, descend=wanted_dir)
    listing = find_listing(walk.files, lambda name: (root / name).read_text("utf-8-sig"), where=source,
                           dirs=walk.dirs)
    splits = []
    for entries in (listing.train, listing.test):
        names = [e[0] for e in entries]
        splits.append((names, _labels(entries), file_states(root, names), FolderReader(root, names)))
    fp = lazy_fingerprint(listing.layout, listing.class_ids, listing.class_names, splits,
                          extra=[str(root.resolve())])
    (trn, ytr, _, rtr), (tst, yte, _, rte) = splits
    return LazyImageSet(LazySplit(trn, ytr, rtr), LazySplit(tst, yte, rte), list(listing.class_names),
                        list(listing.class_ids), source, "imagefolder", fp, METHOD, listing.layout,
                        [*walk.notes, *listing.notes], skip_bad)


def open_tar(path: Path, source: str, skip_bad: bool = False, cache: bool = True,
             progress: ProgressFactory = null_progress) -> LazyImageSet:
    """An ImageFolder packed as a tar archive, read by member offset."""
    from umae_eval.data.layouts import find_listing
    from umae_eval.data.tarindex import read_member, tar_index

    idx = tar_index(path, cache=cache, progress=progress)
    pos = idx.position()

    def read_text(name: str) -> str:
        if name not in pos:
            raise UmaeError(f"{source}: the archive has no {name}")
        i = pos[name]
        return read_member(idx.path, int(idx.offsets[i]), int(idx.sizes[i])).decode("utf-8", "replace")

    listing = find_listing(idx.names, read_text, where=source, dirs=idx.dirs, archive=True)
    splits = []
    for entries in (listing.train, listing.test):
        names = [e[0] for e in entries]
        rows = np.asarray([pos[n] for n in names], dtype=np.int64)
        offsets, sizes = idx.offsets[rows], idx.sizes[rows]
        splits.append((names, _labels(entries), sizes.tolist(), OffsetReader(idx.path, offsets, sizes)))
    st = path.stat()
    fp = lazy_fingerprint(listing.layout, listing.class_ids, listing.class_names, splits,
                          extra=[st.st_size, st.st_mtime_ns])
    (trn, ytr, _, rtr), (tst, yte, _, rte) = splits
    return LazyImageSet(LazySplit(trn, ytr, rtr), LazySplit(tst, yte, rte), list(listing.class_names),
                        list(listing.class_ids), source, "imagefolder-tar", fp, METHOD, listing.layout,
                        list(listing.notes), skip_bad)


def open_shards(shards: dict[str, list[Path]], source: str, skip_bad: bool = False, cache: bool = True,
                progress: ProgressFactory = null_progress) -> LazyImageSet:
    """WebDataset shards, ``{'train': [...], 'test': [...]}`` (see :mod:`umae_eval.data.wds`)."""
    from umae_eval.data.wds import class_names_for, index_shards

    parts = {}
    for split in ("train", "test"):
        parts[split] = index_shards(shards[split], source, progress, cache)
    ids, names, notes = class_names_for(shards["train"], [parts["train"][1], parts["test"][1]])
    for split, (_, labels, _) in parts.items():
        if len(labels) and int(labels.max()) >= len(ids):
            raise UmaeError(f"{source}: {split} label {int(labels.max())} but only {len(ids)} classes")
    splits = [(n, y, r.sizes.tolist(), r) for n, y, r in (parts["train"], parts["test"])]  # type: ignore[attr-defined]
    extra = [f"{p.name}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for s in ("train", "test") for p in shards[s]]
    fp = lazy_fingerprint("webdataset", ids, names, splits, extra=extra)
    (trn, ytr, rtr), (tst, yte, rte) = parts["train"], parts["test"]
    return LazyImageSet(LazySplit(trn, ytr, rtr), LazySplit(tst, yte, rte), names, ids, source, "webdataset",
                        fp, METHOD, "webdataset", notes, skip_bad)
