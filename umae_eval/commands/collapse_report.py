"""`umae collapse-report`: not implemented yet; owned by the analysis issue (spectra, effective rank, maps)."""

from __future__ import annotations

from umae_eval.errors import UmaeError


def collapse_report() -> None:
    """Not implemented yet.

    Example (once implemented):  umae collapse-report mae.pth umae.pth --data demo --random-init
    """
    raise UmaeError("`umae collapse-report` is not implemented yet in this version of umae", exit_code=3)
