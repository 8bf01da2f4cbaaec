"""`umae compare`: not implemented yet; owned by the analysis issue (probe + collapse per checkpoint, one report)."""

from __future__ import annotations

from umae_eval.errors import UmaeError


def compare() -> None:
    """Not implemented yet.

    Example (once implemented):  umae compare mae.pth umae.pth --data demo
    """
    raise UmaeError("`umae compare` is not implemented yet in this version of umae", exit_code=3)
