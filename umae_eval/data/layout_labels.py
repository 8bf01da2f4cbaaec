"""The label and class-name files of downloaded layouts: Tiny ImageNet's ``val_annotations.txt``,
``wnids.txt`` and ``words.txt``; Kaggle ImageNet's ``LOC_val_solution.csv`` and
``LOC_synset_mapping.txt``. Each is looked for in the layout's folder, then in the folders above it."""

from __future__ import annotations

import csv
import io
import posixpath
from collections import Counter
from collections.abc import Callable

from umae_eval.errors import UmaeError

#: Class-name files, nearest first within one folder.
NAME_FILES = ("LOC_synset_mapping.txt", "words.txt")
KAGGLE_VAL_LABELS = "LOC_val_solution.csv"
#: The small text files a layout is read from (besides ``<split>_annotations.txt``).
METADATA_FILES = frozenset({"wnids.txt", KAGGLE_VAL_LABELS, *NAME_FILES})

ReadText = Callable[[str], str]
Labels = dict[str, tuple[str, int]]  # image key -> (wnid, line number in the label file)


def is_metadata_name(name: str) -> bool:
    """Whether ``read_text`` may be asked for this file (so a streaming reader keeps its bytes)."""
    base = name.rsplit("/", 1)[-1]
    return base in METADATA_FILES or base.endswith("_annotations.txt")


def ancestors(base: str) -> list[str]:
    """``'a/b'`` -> ``['a/b', 'a', '']``."""
    out = [base]
    while out[-1]:
        out.append(posixpath.dirname(out[-1]))
    return out


def nearest(base: str, filename: str, fileset: set[str]) -> str | None:
    """The path of ``filename`` in ``base`` or the nearest folder above it, or None."""
    for folder in ancestors(base):
        name = f"{folder}/{filename}" if folder else filename
        if name in fileset:
            return name
    return None


def read_meta(read_text: ReadText, name: str, where: str) -> str:
    try:
        return read_text(name)
    except (OSError, KeyError, ValueError) as exc:  # UnicodeDecodeError is a ValueError
        raise UmaeError(f"{where}/{name}: cannot read it ({type(exc).__name__}: {exc}); "
                        "replace it with the file from the original download") from None


def flat_labels(split: str, flat: list[str], base: str, fileset: set[str], read_text: ReadText,
                where: str, loc: str, index: dict[str, int],
                notes: list[str]) -> tuple[list[tuple[str, int]], str] | None:
    """Label the images of a split without class folders.

    From ``<split>/<split>_annotations.txt`` (Tiny ImageNet; matched by file name) or, for
    ``val``, the nearest ``LOC_val_solution.csv`` (Kaggle; matched by ImageId, the file name
    without suffix). Returns ``([(name, label)], layout)``, or None when neither file exists.
    """
    prefix = f"{base}/{split}" if base else split
    tiny = f"{prefix}/{split}_annotations.txt"
    kaggle = nearest(base, KAGGLE_VAL_LABELS, fileset) if split == "val" else None
    key: Callable[[str], str]
    if tiny in fileset:
        labels = tiny_annotations(read_meta(read_text, tiny, where), f"{where}/{tiny}")
        key, layout, label_file = (lambda n: n.rsplit("/", 1)[-1]), "tiny-imagenet", tiny
    elif kaggle is not None:
        labels = kaggle_solution(read_meta(read_text, kaggle, where), f"{where}/{kaggle}")
        key, layout, label_file = (lambda n: posixpath.splitext(n.rsplit("/", 1)[-1])[0]), "imagenet-kaggle", kaggle
    else:
        return None
    out = []
    for name in flat:
        k = key(name)
        if k not in labels:
            raise UmaeError(f"{where}/{name} has no line in {where}/{label_file}; add its line "
                            "(from the original download) or remove the image")
        wnid, line = labels[k]
        if wnid not in index:
            raise UmaeError(f"{where}/{label_file} line {line} labels {k} as {wnid}, a class {loc}/train lacks; "
                            f"add {loc}/train/{wnid}/ or remove that image")
        out.append((name, index[wnid]))
    absent = len(labels) - len(out)  # a partial download: the images that are there are still labelled
    notes.append(f"{split} labels from {label_file} ({len(out)} images"
                 + (f"; {absent} listed images are absent" if absent > 0 else "") + ")")
    return out, layout


def tiny_annotations(text: str, shown: str) -> Labels:
    """``val_0.JPEG<TAB>n03444034<TAB>0<TAB>32<TAB>44<TAB>62`` lines -> {file: (wnid, line)}."""
    out: Labels = {}
    for n, line in enumerate(text.splitlines(), 1):
        fields = line.split()
        if not fields:
            continue
        if len(fields) < 2:
            raise UmaeError(f"{shown} line {n} is {line.strip()!r}, not 'file<TAB>wnid<TAB>x0<TAB>y0<TAB>x1<TAB>y1'; "
                            "replace the file with the one from the original download")
        _put(out, fields[0], fields[1], n, shown)
    return out


def kaggle_solution(text: str, shown: str) -> Labels:
    """``ImageId,PredictionString`` rows -> {ImageId: (first token of PredictionString, line)}.

    The prediction string lists ``wnid x0 y0 x1 y1`` per box; every box of a val image has the
    image's class, so the first token is the label.
    """
    rows = csv.reader(io.StringIO(text))
    header = next(rows, [])
    cols = [h.strip() for h in header]
    if "ImageId" not in cols or "PredictionString" not in cols:
        raise UmaeError(f"{shown}: the first line is {','.join(header)!r}, not 'ImageId,PredictionString'; "
                        "replace the file with the one from the Kaggle download")
    i, j = cols.index("ImageId"), cols.index("PredictionString")
    out: Labels = {}
    for n, row in enumerate(rows, 2):
        if not row:
            continue
        tokens = row[j].split() if len(row) > max(i, j) else []
        if not tokens:
            raise UmaeError(f"{shown} line {n} has no wnid in PredictionString ({','.join(row)!r}); "
                            "replace the file with the one from the Kaggle download")
        _put(out, row[i].strip(), tokens[0], n, shown)
    return out


def _put(out: Labels, key: str, wnid: str, line: int, shown: str) -> None:
    if key in out and out[key][0] != wnid:
        raise UmaeError(f"{shown} labels {key} twice, as {out[key][0]} (line {out[key][1]}) and {wnid} "
                        f"(line {line}); keep one line per image")
    out.setdefault(key, (wnid, line))


def check_wnids(classes: list[str], base: str, fileset: set[str], read_text: ReadText, where: str,
                notes: list[str]) -> None:
    """A note when ``wnids.txt`` lists other classes than train/ has (a partial download)."""
    ids_file = nearest(base, "wnids.txt", fileset)
    if ids_file is None:
        return
    listed = set(read_meta(read_text, ids_file, where).split())
    if listed and listed != set(classes):
        missing = sorted(listed - set(classes))
        lacks = f" (train/ lacks {', '.join(missing[:3])}{', ...' if len(missing) > 3 else ''})" if missing else ""
        notes.append(f"train/ has {len(classes)} classes but {ids_file} lists {len(listed)}{lacks}")


def class_names(classes: list[str], base: str, fileset: set[str], read_text: ReadText,
                where: str, notes: list[str]) -> list[str]:
    """The first synonym of each id in the nearest name file(s), the id where none names it.

    ``words.txt`` lines are ``wnid<TAB>syn, syn, ...``, ``LOC_synset_mapping.txt`` lines
    ``wnid syn, syn, ...``. Names that several ids share (ImageNet has two "crane"s and two
    "maillot"s) get the id appended, so that no two classes look alike in a report.
    """
    wanted = set(classes)
    found: dict[str, str] = {}
    sources = []
    for folder in ancestors(base):
        for filename in NAME_FILES:
            name = f"{folder}/{filename}" if folder else filename
            if name not in fileset:
                continue
            before = len(found)
            for line in read_meta(read_text, name, where).splitlines():
                fields = line.strip().split(None, 1)
                if len(fields) == 2 and fields[0] in wanted and fields[0] not in found:
                    first = fields[1].split(",")[0].strip()
                    if first:
                        found[fields[0]] = first
            if len(found) > before:
                sources.append(name)
    names = [found.get(c, c) for c in classes]
    if sources:
        notes.append(f"class names from {' and '.join(sources)} ({len(found)} of {len(classes)} classes)")
    shared = {n for n, k in Counter(names).items() if k > 1}
    if shared:
        notes.append(f"{len(shared)} class names are shared by several ids ({', '.join(sorted(shared)[:3])}"
                     f"{', ...' if len(shared) > 3 else ''}); the id is appended to tell them apart")
        names = [f"{n} ({c})" if n in shared and c in found else n for n, c in zip(names, classes)]
    return names
