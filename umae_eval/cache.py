"""Where decoded images and features are cached: ``$UMAE_CACHE_DIR`` or ``~/.cache/umae``."""

from __future__ import annotations

import errno
import os
from pathlib import Path


def cache_root() -> Path:
    """The cache folder (created on first use). Tests point ``UMAE_CACHE_DIR`` at a temp dir."""
    root = Path(os.environ.get("UMAE_CACHE_DIR") or Path.home() / ".cache" / "umae")
    root.mkdir(parents=True, exist_ok=True)
    return root


def cache_unwritable_message(where: str | Path, exc: OSError) -> str:
    """The one-line warning when a cache cannot be written (disk full, read-only, permission).

    Caches are an optimisation: callers warn with this and go on without them.
    """
    # numpy reports a short write ("12288 requested and 4064 written") without an errno.
    reason = exc.strerror or f"{exc} (is the disk full?)"
    full = exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) or exc.strerror is None
    fix = "free space there, or set UMAE_CACHE_DIR to a writable folder" if full else \
        "set UMAE_CACHE_DIR to a writable folder"  # a read-only disk or a file in the way: space is not it
    return f"feature cache not written to {where}: {reason}; going on without it ({fix})"
