"""`umae train`: not implemented yet; owned by the trainer issue (MAE / U-MAE pre-training)."""

from __future__ import annotations

from umae_eval.errors import UmaeError


def train() -> None:
    """Not implemented yet.

    Example (once implemented):  umae train --data demo --preset tiny-test --epochs 2
    """
    raise UmaeError("`umae train` is not implemented yet in this version of umae", exit_code=3)
