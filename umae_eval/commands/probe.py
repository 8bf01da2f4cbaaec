"""`umae probe`: not implemented yet; owned by the analysis issue (mean classifier, linear probe, kNN)."""

from __future__ import annotations

from umae_eval.errors import UmaeError


def probe() -> None:
    """Not implemented yet.

    Example (once implemented):  umae probe mae.pth --data ../shared/data/cifar10-jpeg.tar.gz
    """
    raise UmaeError("`umae probe` is not implemented yet in this version of umae", exit_code=3)
