"""Where decoded images and features are cached: ``$UMAE_CACHE_DIR`` or ``~/.cache/umae``."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    """The cache folder (created on first use). Tests point ``UMAE_CACHE_DIR`` at a temp dir."""
    root = Path(os.environ.get("UMAE_CACHE_DIR") or Path.home() / ".cache" / "umae")
    root.mkdir(parents=True, exist_ok=True)
    return root
