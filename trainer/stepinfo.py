"""What the training loop reports after each optimiser step, for progress displays.

Its own module so that a display (:mod:`umae_eval.progress`) can name the type without importing
the loop, which imports the display (no import circle).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class StepInfo:
    """What the loop reports after each optimiser step (for progress displays).

    Attributes
    ----------
    epoch, epochs : int
        Current epoch (1-based) and total epochs.
    step, total_steps : int
        Optimiser steps done (global) and in the whole run.
    step_in_epoch, steps_per_epoch : int
        Steps done in this epoch and per epoch.
    loss, loss_recon, loss_unif : float
        This step's loss terms (mean over micro-batches and ranks).
    lr : float
        Learning rate used by this step.
    img_per_s : float
        Images per second over the last step (all ranks).
    note : str or None
        A warning to show once (``--unif-form paper``: the measured ratio to the 'code' form).
    """

    epoch: int
    epochs: int
    step: int
    total_steps: int
    step_in_epoch: int
    steps_per_epoch: int
    loss: float
    loss_recon: float
    loss_unif: float
    lr: float
    img_per_s: float
    note: str | None = None
