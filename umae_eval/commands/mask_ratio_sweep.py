"""`umae mask-ratio-sweep`: not implemented yet; owned by the mask-ratio issue (intra/inter distances vs mask ratio)."""

from __future__ import annotations

from umae_eval.errors import UmaeError


def mask_ratio_sweep() -> None:
    """Not implemented yet.

    Example (once implemented):  umae mask-ratio-sweep --data demo
    """
    raise UmaeError("`umae mask-ratio-sweep` is not implemented yet in this version of umae", exit_code=3)
