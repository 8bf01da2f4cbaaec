"""Staged outputs: a command writes into a hidden folder beside ``--out``, moved into place on success.

A command that fails (bad data found late, a full disk, Ctrl-C) therefore never leaves half a
set of files (CSVs without ``results.json``, a report without its CSVs): ``--out`` is either
untouched or complete. Starting the stage is also the up-front check that ``--out`` can be
written, made before the long work begins::

    stage = begin_output(out_dir)              # refuses an unwritable --out now, not after an hour
    ...                                        # the work
    written = write_outputs(stage.path, ...)   # into .<name>.partial-<pid>-<random>/ beside out_dir
    written = stage.commit(written)            # renamed to out_dir (or merged into an existing one)

``umae_eval.cli.main`` discards every stage still open when a command fails
(:func:`discard_open_stages`), and a later stage of the same folder removes the hidden folders
of processes that no longer exist (a SIGKILL'ed run). A training run keeps its own rules
(atomic checkpoints, resumable), so it only uses :func:`check_writable`.
"""

from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Self

from umae_eval.errors import UmaeError, os_error_message

_PARTIAL = ".partial-"
_open: list[StagedOutput] = []


def _nearest_existing(path: Path) -> Path:
    """The deepest existing ancestor of ``path`` (``path`` itself if it exists).

    Raises OSError for an ancestor that is a symlink which cannot be followed (a loop: ELOOP;
    dangling: ENOENT), which would otherwise pass for a file.
    """
    p = path
    while not os.path.lexists(p):
        if p.parent == p:
            break
        p = p.parent
    if p.is_symlink():
        os.stat(p)  # raises for a loop or a dangling link, with the path
    return p


def check_writable(path: str | Path, option: str = "--out") -> None:
    """Refuse, before any work, a folder that cannot be created or written; leaves nothing behind.

    ``path`` may not exist yet: its nearest existing ancestor must then be a writable folder.

    Raises
    ------
    UmaeError
        ``path`` (or an ancestor) is a file.
    OSError
        The folder cannot be written (read-only disk, no permission, no space); with the path.
    """
    path = Path(path)
    try:
        base = _nearest_existing(path)
    except OSError as exc:
        raise _named(exc, path, option) from exc
    if base.is_file() or (os.path.lexists(base) and not base.is_dir()):
        what = "is an existing file" if base == path else f"lies under {base}, which is a file"
        raise UmaeError(f"{option} {path} {what}; give a folder")
    # Making (and removing) a folder and a file is the only check that sees read-only mounts,
    # ACLs and full disks alike (os.access does not, and root passes every mode check).
    try:
        probe = Path(tempfile.mkdtemp(prefix=".umae-write-check-", dir=base))
        try:
            _probe_write(probe)
        finally:
            shutil.rmtree(probe, ignore_errors=True)
    except OSError as exc:
        raise _named(exc, path, option) from exc


def _probe_write(folder: Path) -> None:
    """Write, fsync and remove a small file in ``folder`` (sees a full disk, which mkdir may not)."""
    probe = folder / ".umae-write-check"
    try:
        with open(probe, "wb") as fh:
            fh.write(b"umae" * 1024)
            fh.flush()
            os.fsync(fh.fileno())
    finally:
        if os.path.lexists(probe):
            os.unlink(probe)


def _named(exc: OSError, path: Path, option: str) -> UmaeError:
    """An OS error met while preparing ``--out``, told about ``--out`` (not a hidden helper path)."""
    if exc.errno is None:
        return UmaeError(f"{option} {path}: {exc}")
    return UmaeError(os_error_message(OSError(exc.errno, exc.strerror, f"{option} {path}")))


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(parent: Path, name: str) -> None:
    """Hidden stage folders of ``name`` left by processes that were killed."""
    prefix = f".{name}{_PARTIAL}"
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return
    for entry in entries:
        if not entry.name.startswith(prefix) or not entry.is_dir(follow_symlinks=False):
            continue
        pid_text = entry.name[len(prefix):].split("-", 1)[0]
        if pid_text.isdigit() and int(pid_text) != os.getpid() and not _pid_alive(int(pid_text)):
            shutil.rmtree(entry.path, ignore_errors=True)


class StagedOutput:
    """A hidden folder beside ``final`` that becomes ``final`` on :meth:`commit`.

    Attributes
    ----------
    final : Path
        Where the outputs belong (``--out``).
    path : Path
        Where to write them now.
    """

    def __init__(self, final: str | Path, option: str = "--out") -> None:
        self.final = Path(final)
        self.option = option
        self.path: Path | None = None
        self._created: list[Path] = []
        self._done = False
        target = Path(os.path.abspath(self.final))  # '.' and 'x/..' have a real name and parent
        self._target = target
        try:
            base = _nearest_existing(target)
        except OSError as exc:
            raise _named(exc, self.final, option) from exc
        if os.path.lexists(target) and not target.is_dir():
            raise UmaeError(f"{option} {self.final} is an existing file; give a folder")
        if not base.is_dir():
            raise UmaeError(f"{option} {self.final} lies under {base}, which is a file; give a folder")
        if target.is_dir():
            check_writable(target, option)  # files are moved into it at the end
        try:
            for parent in reversed(target.parents):
                if not os.path.lexists(parent):
                    parent.mkdir()
                    self._created.append(parent)
            _remove_stale(target.parent, target.name)
            self.path = Path(tempfile.mkdtemp(prefix=f".{target.name}{_PARTIAL}{os.getpid()}-",
                                              dir=target.parent))
            # mkdtemp makes 0700 folders; --out gets the permissions a plain mkdir would give
            umask = os.umask(0)
            os.umask(umask)
            os.chmod(self.path, 0o777 & ~umask)
            _probe_write(self.path)
        except OSError as exc:
            self.discard()
            raise _named(exc, self.final, option) from exc
        except BaseException:
            self.discard()
            raise
        _open.append(self)

    # ---- paths ----------------------------------------------------------------------------

    def final_path(self, path: str | Path) -> Path:
        """``path`` inside the stage as it will be (or is) inside ``final``; other paths unchanged."""
        p = Path(path)
        if self.path is None:
            return p
        for root in (self.path, Path(os.path.abspath(self.path))):
            try:
                return self.final / p.relative_to(root)
            except ValueError:
                continue
        return p

    # ---- ending ---------------------------------------------------------------------------

    def commit(self, written: Mapping[str, Path] | None = None) -> dict[str, Path]:
        """Move the staged files into ``final``; returns ``written`` with the final paths.

        A new ``final`` is one rename. An existing folder keeps its other files; each staged
        file replaces its namesake (one ``os.replace`` each).
        """
        if self._done or self.path is None:
            raise RuntimeError("stage already finished")
        if os.path.lexists(self._target):
            try:
                _check_merge(self.path, self._target, self.final, self.option)
            except BaseException:
                self.discard()
                raise
        try:
            if not os.path.lexists(self._target):
                os.rename(self.path, self._target)
            else:
                _merge(self.path, self._target)
                shutil.rmtree(self.path, ignore_errors=True)
        except OSError as exc:
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):  # another process made final meanwhile
                _merge(self.path, self._target)
                shutil.rmtree(self.path, ignore_errors=True)
            else:
                self.discard()
                raise
        self._finish()
        return {k: self.final_path(v) for k, v in (written or {}).items()}

    def discard(self) -> None:
        """Remove the stage and the parent folders it created (only those, only if empty)."""
        if self.path is not None and os.path.lexists(self.path):
            shutil.rmtree(self.path, ignore_errors=True)
        for parent in reversed(self._created):
            try:
                parent.rmdir()
            except OSError:
                break
        self._finish()

    def _finish(self) -> None:
        self._done = True
        if self in _open:
            _open.remove(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self._done:
            return
        if exc_type is None:
            self.commit()
        else:
            self.discard()


def _check_merge(src: Path, dst: Path, final: Path, option: str) -> None:
    """Refuse, before any file is moved, a merge that would stop halfway: a staged file whose
    namesake in ``dst`` is a folder, a staged folder whose namesake is a file or a symlink
    (umae never writes through a symlink into another folder).

    Raises
    ------
    UmaeError
        Naming the path inside ``--out`` as the user knows it, never the hidden stage.
    """
    for entry in os.scandir(src):
        target = dst / entry.name
        if not os.path.lexists(target):
            continue
        shown = final / os.path.relpath(target, dst)
        if entry.is_dir(follow_symlinks=False):
            if target.is_symlink():
                raise UmaeError(f"{option} {final}: {shown} is a symlink where umae writes a folder; "
                                "remove the link (or choose another --out); nothing was written")
            if not target.is_dir():
                raise UmaeError(f"{option} {final}: {shown} is a file where umae writes a folder; "
                                "remove or rename it (or choose another --out); nothing was written")
            _check_merge(Path(entry.path), target, final, option)
        elif target.is_dir() and not target.is_symlink():
            raise UmaeError(f"{option} {final}: {shown} is a folder where umae writes a file; "
                            "remove or rename it (or choose another --out); nothing was written")


def _merge(src: Path, dst: Path) -> None:
    for entry in os.scandir(src):
        target = dst / entry.name
        if entry.is_dir(follow_symlinks=False) and target.is_dir() and not target.is_symlink():
            _merge(Path(entry.path), target)
        else:
            os.replace(entry.path, target)


def begin_output(out: str | Path, option: str = "--out") -> StagedOutput:
    """Start a :class:`StagedOutput` for ``out`` (checks now that it can be written)."""
    return StagedOutput(out, option)


def discard_open_stages() -> None:
    """Remove the stages of commands that did not finish (called by the CLI on every failure)."""
    for stage in list(_open):
        stage.discard()


def user_path(path: str) -> str:
    """A path as the user knows it: a file inside an open stage is shown inside its ``--out``."""
    for stage in _open:
        mapped = stage.final_path(path)
        if mapped != Path(path):
            return str(mapped)
    return path
