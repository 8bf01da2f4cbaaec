"""`umae demo`: the main job on the embedded CIFAR-10 sample (wired up last)."""

from __future__ import annotations

from umae_eval.errors import UmaeError


def demo() -> None:
    """Train a small MAE and U-MAE on the embedded CIFAR-10 sample and compare them.

    Example:  umae demo
    """
    raise UmaeError("`umae demo` is not implemented yet in this version of umae", exit_code=3)
