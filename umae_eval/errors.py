"""The user-facing error type, and the one place OS errors are turned into a line a user can act on.

The CLI prints a :class:`UmaeError` as one line and exits with its code. An ``OSError`` that
reaches the CLI (a read-only disk, a full disk, a symlink loop, too many open files, ...) is
explained by :func:`os_error_message`: the path, what went wrong, how to fix it; exit code 2.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable


class UmaeError(Exception):
    """A problem with the user's input or environment, explained in one line.

    The message should name the offending file or option and say how to fix it.
    ``exit_code`` is 2 for bad input (the CLI convention) unless stated otherwise.
    """

    def __init__(self, message: str, exit_code: int = 2) -> None:
        super().__init__(message)
        self.message = message
        self.exit_code = exit_code

    def __str__(self) -> str:
        return self.message


_WHERE = "(--out, or $UMAE_CACHE_DIR for the cache)"

#: errno -> (what happened, how to fix it).
_OS_ERRORS: dict[int, tuple[str, str]] = {
    errno.EACCES: ("permission denied", f"choose a folder you can write to {_WHERE} or change its permissions"),
    errno.EPERM: ("operation not permitted", f"choose a folder you can write to {_WHERE} or change its permissions"),
    errno.EROFS: ("read-only file system", f"write to a folder on a writable disk {_WHERE}"),
    errno.ENOSPC: ("no space left on the device", f"free some space, or write to another disk {_WHERE}"),
    errno.EDQUOT: ("disk quota exceeded", f"free some space, or write to another disk {_WHERE}"),
    errno.EFBIG: ("file too large for this file system", f"write to another disk {_WHERE}"),
    errno.ENOTDIR: ("a part of this path is a file, not a folder", "give a path whose parents are folders"),
    errno.EISDIR: ("this is a folder, a file was expected", "give the path of a file"),
    errno.ELOOP: ("too many levels of symbolic links (a symlink loop)", "remove or fix the looping symlink"),
    errno.EMFILE: ("too many open files", "raise the limit (e.g. `ulimit -n 4096`) or use fewer --workers"),
    errno.ENFILE: ("too many open files on this system", "close other programs or raise the system limit"),
    errno.ENAMETOOLONG: ("file name too long", "choose a shorter path"),
    errno.EEXIST: ("already exists", "remove it or choose another path"),
    errno.ENOENT: ("no such file or folder", "check the path"),
    errno.EIO: ("input/output error", "the disk reported an error: check it, or use another disk"),
}


def os_error_message(exc: OSError, path_for: Callable[[str], str] | None = None) -> str:
    """One line for an OS error: the path (or paths), what went wrong, how to fix it.

    ``path_for`` maps an internal path (e.g. a staged output folder) to the one the user gave.
    """
    names = [n for n in (exc.filename, exc.filename2) if n is not None]
    texts = [os.fsdecode(n) if isinstance(n, (str, bytes, os.PathLike)) else str(n) for n in names]
    shown = [path_for(t) if path_for else t for t in texts]
    where = " -> ".join(shown) if shown else "a file"
    known = _OS_ERRORS.get(exc.errno) if exc.errno is not None else None
    if known is None:
        what = exc.strerror or str(exc) or type(exc).__name__
        return f"{where}: {what}; check the path and the disk, or rerun with `umae --debug ...` for details"
    what, fix = known
    return f"{where}: {what}; {fix}"



_interrupt_hints: list[str] = []


def set_interrupt_hint(hint: str | None) -> None:
    """What the "interrupted" line should add if the command is stopped now (None: nothing).

    A training run sets "resume with ..." once its run folder holds a resumable checkpoint.
    """
    _interrupt_hints.clear()
    if hint:
        _interrupt_hints.append(hint)


def interrupt_hint() -> str | None:
    """The hint set by :func:`set_interrupt_hint`, if any."""
    return _interrupt_hints[0] if _interrupt_hints else None
