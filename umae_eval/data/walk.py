"""List a folder's files and directories, following symlinks, without looping on a symlink cycle."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from umae_eval.errors import UmaeError


@dataclass(frozen=True)
class Walk:
    """What :func:`walk_tree` found below a root.

    Attributes
    ----------
    files : list[str]
        Every non-directory entry (regular files, and broken symlinks, so that reading one later
        names it), as posix paths relative to the root, in sorted walk order.
    dirs : list[str]
        Every directory entry below the root (not the root itself), posix and relative.
    notes : list[str]
        One line per symlink skipped because it leads back into a folder above it.
    """

    files: list[str] = field(default_factory=list)
    dirs: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def walk_tree(root: Path, descend: Callable[[str], bool] | None = None) -> Walk:
    """Walk ``root`` depth-first in name order, following symlinked folders.

    Symlinked class folders are common (``train/dog -> /big/disk/dogs``), so links are
    followed as ``os.walk(followlinks=True)`` does; but a link back to a folder *above* it
    (``train/a/up -> ..``) would be walked until the OS gives up with ELOOP, "Too many levels of
    symbolic links". Each folder's (st_dev, st_ino) is compared with those of the folders on
    the current path, and a folder already on it is skipped with a note. The same real folder
    reached by two routes that do not loop (two links to one target) is walked both times, as
    torchvision's ImageFolder does.

    Parameters
    ----------
    root : Path
        The folder to walk.
    descend : callable, optional
        ``descend(rel)`` -> whether to enter the folder at posix path ``rel`` (relative to
        ``root``); it is listed in ``dirs`` either way. By default every folder is entered.
        Hidden folders (``.name``) are never entered.

    Raises
    ------
    UmaeError
        If a folder cannot be listed (permissions), naming it.
    """
    out = Walk()
    top = os.stat(root)
    _walk(Path(root), "", [(top.st_dev, top.st_ino)], descend, out)
    return out


def _walk(path: Path, rel: str, ancestors: list[tuple[int, int]],
          descend: Callable[[str], bool] | None, out: Walk) -> None:
    try:
        with os.scandir(path) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as exc:
        raise UmaeError(f"{path}: cannot list this folder ({type(exc).__name__}: {exc.strerror or exc}); "
                        "fix its permissions or remove it") from None
    for entry in entries:
        child = f"{rel}/{entry.name}" if rel else entry.name
        try:
            is_dir = entry.is_dir()  # follows symlinks
        except OSError:
            is_dir = False
        if not is_dir:
            out.files.append(child)
            continue
        if entry.name.startswith("."):
            continue
        try:
            st = os.stat(entry.path)
        except OSError:  # ELOOP on a link chain that loops on itself: not a folder one can walk
            out.notes.append(f"skipped {child}: a symlink that cannot be resolved")
            continue
        key = (st.st_dev, st.st_ino)
        if key in ancestors:
            target = os.readlink(entry.path) if entry.is_symlink() else "?"
            out.notes.append(f"skipped {child}: a symlink (-> {target}) back to a folder above it, "
                             "which would loop forever")
            continue
        out.dirs.append(child)
        if descend is None or descend(child):
            ancestors.append(key)
            _walk(Path(entry.path), child, ancestors, descend, out)
            ancestors.pop()
