"""Where the labelled train and evaluation images of a downloaded dataset are, from its file names.

:func:`find_listing` works on a plain list of paths (a folder walk, a tar's member names,
anything), so every source format shares one set of layout rules:

``imagefolder``
    ``train/<class>/**/<image>`` and ``test/<class>/...`` (or ``val/<class>/...``), as
    torchvision's ImageFolder reads them; also ImageNet's val already sorted into wnid
    folders. Inside an archive the tree may sit in one common top-level folder.
``tiny-imagenet``
    Tiny ImageNet-200 as distributed: ``train/<wnid>/images/*.JPEG`` (+ ``<wnid>_boxes.txt``),
    ``val/images/*.JPEG`` labelled by ``val/val_annotations.txt`` (file TAB wnid TAB box),
    an unlabelled ``test/images/``, ``wnids.txt`` and ``words.txt`` (wnid TAB synonyms).
``imagenet-kaggle``
    ``ILSVRC/Data/CLS-LOC/{train/<wnid>/*.JPEG, val/*.JPEG, test/*.JPEG}`` with
    ``LOC_val_solution.csv`` (``ImageId,PredictionString``; the first token of the prediction
    string is the wnid) and ``LOC_synset_mapping.txt`` (``n01440764 tench, Tinca tinca``).

The evaluation split is ``test/`` when it is labelled (class folders, or a ``test_annotations.txt``),
else ``val/``; an unlabelled split (no class folders; images directly in it or in its
``images/``) is skipped with a note and never evaluated on. Class ids are the train folder
names, sorted as ImageFolder sorts them (label ``k`` is ``class_ids[k]``); class names are the
first synonym in the nearest ``LOC_synset_mapping.txt`` / ``words.txt`` at or above the
layout, else the id.
"""

from __future__ import annotations

import posixpath
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from umae_eval.data.formats import ACCEPTED, IMAGE_SUFFIXES, TEST_SPLITS, check_utf8_names
from umae_eval.data.layout_labels import (
    KAGGLE_VAL_LABELS,
    check_wnids,
    class_names,
    flat_labels,
    is_metadata_name,
)
from umae_eval.errors import UmaeError

__all__ = ["KAGGLE_DATA", "SPLITS", "Listing", "NoLayout", "find_listing", "is_image_name", "is_metadata_name",
           "wanted_dir"]

SPLITS = ("train", *TEST_SPLITS)
#: Where Kaggle's ImageNet keeps its split folders, below the folder that holds LOC_*.csv.
KAGGLE_DATA = "ILSVRC/Data/CLS-LOC"


@dataclass(frozen=True)
class Listing:
    """The labelled images of one dataset layout.

    Attributes
    ----------
    layout : str
        ``'imagefolder'``, ``'tiny-imagenet'`` or ``'imagenet-kaggle'``.
    root : str
        Posix prefix inside the source where the layout starts (``''``, ``'tiny-imagenet-200'``;
        for Kaggle the folder that holds ``ILSVRC/`` and ``LOC_*.csv``).
    class_ids : list[str]
        Train folder names (wnids), sorted; label ``k`` is ``class_ids[k]``.
    class_names : list[str]
        Human names, ``class_names[k]`` for ``class_ids[k]``; a name that several ids share
        gets its id appended, ``'crane (n02012849)'``.
    train, test : list[tuple[str, int]]
        ``(name as given in files, label)``, ordered by label, then name.
    test_split : str
        ``'test'`` or ``'val'``: the folder the evaluation images come from.
    notes : list[str]
        One line each: what was skipped, where labels and names came from.
    """

    layout: str
    root: str
    class_ids: list[str]
    class_names: list[str]
    train: list[tuple[str, int]]
    test: list[tuple[str, int]]
    test_split: str
    notes: list[str] = field(default_factory=list)


class NoLayout(UmaeError):
    """No ``train/``, ``test/`` or ``val/`` tree at all (an archive may still hold CIFAR pickles)."""


def is_image_name(name: str) -> bool:
    base = name.rsplit("/", 1)[-1]
    return not base.startswith(".") and posixpath.splitext(base)[1].lower() in IMAGE_SUFFIXES


def _visible(name: str) -> bool:
    return not any(p.startswith(".") or p == "__MACOSX" for p in name.split("/"))


def wanted_dir(rel: str) -> bool:
    """Whether a folder walk must enter ``rel`` to see every layout (split folders, Kaggle's tree)."""
    parts = rel.split("/")
    kaggle = KAGGLE_DATA.split("/")
    return parts[0] in SPLITS or parts[:len(kaggle)] == kaggle[:len(parts)]


@dataclass
class _Split:
    present: bool = False
    classes: dict[str, list[str]] = field(default_factory=dict)  # class folder -> images at any depth
    loose: list[str] = field(default_factory=list)  # images directly in the split folder


def _utf8_text(read_text: Callable[[str], str], where: str) -> Callable[[str], str]:
    """``read_text`` refusing a metadata file that is not UTF-8 in one line (not an internal error)."""
    def read(name: str) -> str:
        try:
            return read_text(name)
        except UnicodeDecodeError as exc:
            raise UmaeError(f"{where}/{name}: not UTF-8 text ({exc.reason} at byte {exc.start}); "
                            "save it as UTF-8") from None
    return read


def find_listing(files: Sequence[str], read_text: Callable[[str], str], *, where: str,
                 dirs: Sequence[str] = (), archive: bool = False) -> Listing:
    """Find the labelled train and evaluation images among ``files``.

    Parameters
    ----------
    files : sequence of str
        Every regular file's posix path relative to the source root (a tar's member names
        with ``./`` stripped), in the source's order.
    read_text : callable
        ``read_text(name)`` -> the text of one small metadata file from ``files``
        (``val_annotations.txt``, ``words.txt``, ``wnids.txt``, ``LOC_val_solution.csv``,
        ``LOC_synset_mapping.txt``).
    where : str
        The source as the user named it; error messages start with it.
    dirs : sequence of str
        Directory paths (empty class folders count as classes, as ImageFolder counts them).
    archive : bool
        Word the messages for an archive ("pack ...") rather than a folder.

    Returns
    -------
    Listing

    Raises
    ------
    NoLayout
        Nothing looks like a train/test/val tree.
    UmaeError
        One line naming the file and the fix for a malformed layout: no classes, an empty
        class, test classes that train lacks, an unlabelled evaluation split, a val image
        missing from its annotations, an annotation naming a wnid train lacks, ...
    """
    visible = [f for f in files if _visible(f)]
    vdirs = [d.rstrip("/") for d in dirs if _visible(d.rstrip("/"))]
    check_utf8_names(visible, where)
    check_utf8_names(vdirs, where)
    read_text = _utf8_text(read_text, where)
    base = _find_base(files, visible, vdirs, where, archive)
    loc = f"{where}/{base}" if base else where
    splits = _collect(base, visible, vdirs)
    fileset = set(visible)
    notes: list[str] = []
    train = _train_classes(splits, loc, archive, notes)
    classes = sorted(train)
    index = {c: k for k, c in enumerate(classes)}
    kaggle = base == KAGGLE_DATA or base.endswith("/" + KAGGLE_DATA)
    test, test_split, labelled_by = _evaluation_split(splits, index, base, fileset, read_text, where, loc, notes)
    layout = "imagenet-kaggle" if kaggle else labelled_by
    check_wnids(classes, base, fileset, read_text, where, notes)
    names = class_names(classes, base, fileset, read_text, where, notes)
    # (label, name) order, as ImageFolder lists its files; a flat val gets the order of the same
    # val sorted into class folders, so both give the same arrays and fingerprint
    return Listing(layout=layout, root=base[:-len(KAGGLE_DATA)].rstrip("/") if kaggle else base,
                   class_ids=classes, class_names=names,
                   train=sorted(((name, index[c]) for c in classes for name in train[c]), key=_by_label),
                   test=sorted(test, key=_by_label), test_split=test_split, notes=notes)


def _train_classes(splits: dict[str, _Split], loc: str, archive: bool, notes: list[str]) -> dict[str, list[str]]:
    """train/'s class folders and their images, after the checks ImageFolder users know."""
    if not splits["train"].present:
        raise UmaeError(f"{loc}: the archive has no train/<class>/<image> files; "
                        "an ImageFolder needs train/ and test/ (or val/)" if archive else
                        f"{loc}: no train/ folder; an ImageFolder needs train/<class>/<image> and test/ (or val/)")
    if not any(splits[s].present for s in TEST_SPLITS):
        raise UmaeError(f"{loc}: the archive has train/ but no test/ or val/ images; add test/<class>/<image> files"
                        if archive else f"{loc}: ImageFolder has train/ but no test/ or val/ folder; "
                        "add test/<class>/<image> files")
    train = splits["train"].classes
    if not train:
        raise UmaeError(f"{loc}/train has no class folders; put images in {loc}/train/<class>/<image>.jpg")
    empty = [c for c in sorted(train) if not train[c]]
    if empty:
        raise UmaeError(f"{loc}/train/{empty[0]} holds no images ({', '.join(sorted(IMAGE_SUFFIXES))}); "
                        "add images or remove the folder")
    if splits["train"].loose:
        notes.append(f"ignored {len(splits['train'].loose)} images directly in train/ (not in a class folder)")
    return train


def _evaluation_split(splits: dict[str, _Split], index: dict[str, int], base: str, fileset: set[str],
                      read_text: Callable[[str], str], where: str, loc: str,
                      notes: list[str]) -> tuple[list[tuple[str, int]], str, str]:
    """The first labelled split of test/, val/: ``(entries, split, layout its labels imply)``."""
    refusal = ""
    for split in (s for s in TEST_SPLITS if splits[s].present):
        sp = splits[split]
        flat = _flat_images(sp, index)
        if flat is None:  # class folders: plain ImageFolder
            extra = sorted(set(sp.classes) - set(index))
            if extra:
                raise UmaeError(f"{loc}/{split} has classes that train/ lacks: {', '.join(extra)}; "
                                "test classes must also be train classes (rename or remove them)")
            if not any(sp.classes.values()):
                raise UmaeError(f"{loc}/{split} holds no images; put images in {loc}/{split}/<class>/<image>.jpg")
            if sp.loose:
                notes.append(f"ignored {len(sp.loose)} images directly in {split}/ (not in a class folder)")
            return [(name, index[c]) for c in sp.classes for name in sp.classes[c]], split, "imagefolder"
        # the last split's refusal is reported: val is the one that should have had labels
        if not flat:
            notes.append(f"skipped {split}/: it holds no images")
            refusal = f"{loc}/{split} holds no images; put images in {loc}/{split}/<class>/<image>.jpg"
            continue
        labelled = flat_labels(split, flat, base, fileset, read_text, where, loc, index, notes)
        if labelled is not None:
            return labelled[0], split, labelled[1]
        kaggle = f", no {KAGGLE_VAL_LABELS}" if split == "val" else ""
        notes.append(f"skipped the unlabeled {split}/ ({len(flat)} images): no class folders and no "
                     f"{split}/{split}_annotations.txt{kaggle}")
        refusal = (f"{loc}/{split} holds {len(flat)} images but no labels (no class folders, no "
                   f"{split}/{split}_annotations.txt{kaggle + ' above it' if kaggle else ''}); sort them into "
                   f"{split}/<class>/ folders, or point umae at the folder that also holds the labels")
    raise UmaeError(refusal)


def _by_label(entry: tuple[str, int]) -> tuple[int, str]:
    return entry[1], entry[0]


# --------------------------------------------------------------------------------------------
# Finding the tree
# --------------------------------------------------------------------------------------------


def _split_at(parts: list[str], last: int) -> int | None:
    return next((i for i, p in enumerate(parts[:last]) if p in SPLITS), None)


def _find_base(files: Sequence[str], visible: list[str], dirs: list[str], where: str, archive: bool) -> str:
    """The folder that holds train/ and test/ or val/: the prefix before the first split name."""
    bases: dict[str, None] = {}
    for name in visible:
        if is_image_name(name):
            parts = name.split("/")
            i = _split_at(parts, len(parts) - 1)
            if i is not None:
                bases.setdefault("/".join(parts[:i]))
    if not bases:  # folders without images still say where the tree is (and what is wrong with it)
        for d in dirs:
            parts = d.split("/")
            i = _split_at(parts, len(parts))
            if i is not None:
                bases.setdefault("/".join(parts[:i]))
    if not bases:
        shown = ", ".join(files[:8]) if files else "no files"
        raise NoLayout(f"{where}: the {'archive' if archive else 'folder'} holds no train/<class>/<image> files "
                       f"(first entries: {shown}); {ACCEPTED}")
    if len(bases) > 1:
        tops = ", ".join(b + "/" if b else f"({'archive' if archive else 'folder'} root)" for b in sorted(bases))
        raise UmaeError(f"{where}: the {'archive' if archive else 'folder'} holds images under several folders "
                        f"({tops}); {'pack' if archive else 'keep'} a single ImageFolder per "
                        f"{'archive' if archive else 'folder'}")
    return next(iter(bases))


def _collect(base: str, files: list[str], dirs: list[str]) -> dict[str, _Split]:
    splits = {s: _Split() for s in SPLITS}
    cut = len(base) + 1 if base else 0
    for d in dirs:
        if base and not d.startswith(base + "/"):
            continue
        parts = d[cut:].split("/")
        if parts[0] in splits:
            splits[parts[0]].present = True
            if len(parts) >= 2:
                splits[parts[0]].classes.setdefault(parts[1], [])
    for name in files:
        if base and not name.startswith(base + "/"):
            continue
        parts = name[cut:].split("/")
        if parts[0] not in splits or len(parts) < 2:
            continue
        sp = splits[parts[0]]
        sp.present = True
        if len(parts) == 2:
            if is_image_name(name):
                sp.loose.append(name)
            continue
        images = sp.classes.setdefault(parts[1], [])  # any file proves its folder exists
        if is_image_name(name):
            images.append(name)
    return splits


def _flat_images(sp: _Split, train_index: dict[str, int]) -> list[str] | None:
    """The images of an evaluation split without class folders, or None if it has class folders.

    ``images/`` is Tiny ImageNet's container, not a class, unless train has a class of that name.
    """
    folders = set(sp.classes)
    if folders == {"images"} and "images" not in train_index:
        return sp.loose + sp.classes["images"]
    if folders and any(sp.classes.values()):
        return None
    if sp.loose:
        return sp.loose
    return None if folders else []
