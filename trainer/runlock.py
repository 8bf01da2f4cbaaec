"""One training process per run folder: an exclusive ``flock`` on the folder itself.

Two ``umae train --resume auto`` on one run folder used to both load ``last.pth``, both train and
both append to ``metrics.jsonl`` (duplicate epochs). The lock is taken on the folder's own file
descriptor, so no lock file is left behind, and the kernel drops it when the process ends
(a SIGKILL'ed run never leaves a stale lock). It is taken as soon as the folder exists: at the
start for a resumed run, right after ``mkdir`` (before ``config.json``) for a new one.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from umae_eval.errors import UmaeError

_held: dict[str, int] = {}


def hold_run_lock(run_dir: Path) -> None:
    """Take the lock on ``run_dir`` (an existing folder) for this process; no-op if held.

    Raises
    ------
    UmaeError
        Another process holds it: one line naming the folder.
    """
    key = os.path.realpath(run_dir)
    if key in _held:
        return
    fd = os.open(run_dir, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise UmaeError(f"--out {run_dir}: another umae process is training in this run folder; wait "
                        "for it to end (or stop it), then continue with --resume auto") from None
    except OSError:  # a file system without flock (some network mounts): run unlocked, as before
        os.close(fd)
        return
    _held[key] = fd


def release_run_lock(run_dir: Path) -> None:
    """Drop the lock taken by :func:`hold_run_lock` (nothing if none)."""
    fd = _held.pop(os.path.realpath(run_dir), None)
    if fd is not None:
        os.close(fd)  # closing the descriptor releases the flock
