"""The optimiser and its learning-rate schedule, as in the official MAE pre-training recipe.

- AdamW; no weight decay on biases, norm weights (every parameter with ``ndim <= 1``), position
  embeddings and special tokens (``cls_token``, ``mask_token``, ``pos_embed``,
  ``decoder_pos_embed``) -- the parameters timm's ``param_groups_weight_decay`` also exempts.
- ``lr = blr * effective_batch / 256`` (Goyal et al. 2017 linear scaling, MAE's rule).
- Per-step linear warm-up from 0, then a half-cycle cosine to ``min_lr`` (He et al. 2022).

Example
-------
>>> sched = CosineSchedule(base_lr=2.4e-3, warmup_steps=10, total_steps=100)
>>> sched(0), sched(10), round(sched(100), 12)
(0.0, 0.0024, 0.0)
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from umae_eval.errors import UmaeError

#: Parameter names (last dotted component) that never get weight decay.
NO_DECAY_NAMES: frozenset[str] = frozenset({"cls_token", "mask_token", "pos_embed", "decoder_pos_embed"})


def scaled_lr(blr: float, batch_size: int) -> float:
    """The absolute learning rate ``blr * batch_size / 256``.

    Parameters
    ----------
    blr : float
        Base learning rate (per 256 images).
    batch_size : int
        Effective batch of one optimiser step, summed over ranks and accumulation steps.
    """
    return blr * batch_size / 256


@dataclass(frozen=True)
class CosineSchedule:
    """Linear warm-up then half-cycle cosine, evaluated per optimiser step.

    ``lr(s) = base_lr * s / warmup_steps`` for ``s < warmup_steps``, then
    ``min_lr + (base_lr - min_lr) * 0.5 * (1 + cos(pi * (s - warmup_steps) / (total_steps - warmup_steps)))``.

    Attributes
    ----------
    base_lr : float
        Peak learning rate, reached at the end of warm-up.
    warmup_steps : int
        Optimiser steps of linear warm-up (0 = none).
    total_steps : int
        Steps of the whole run; ``lr(total_steps) == min_lr``.
    min_lr : float
        Floor of the cosine (0 in the MAE recipe).
    """

    base_lr: float
    warmup_steps: int
    total_steps: int
    min_lr: float = 0.0

    def __post_init__(self) -> None:
        if self.total_steps <= 0:
            raise UmaeError(f"the schedule needs at least one step, got total_steps={self.total_steps}")
        if not 0 <= self.warmup_steps <= self.total_steps:
            raise UmaeError(
                f"warm-up of {self.warmup_steps} steps does not fit in {self.total_steps} steps; "
                "lower the warm-up epochs or raise --epochs"
            )
        if self.min_lr < 0 or self.min_lr > self.base_lr:
            raise UmaeError(f"min lr {self.min_lr} must be in [0, lr={self.base_lr}]")

    def __call__(self, step: int) -> float:
        """Learning rate for optimiser step ``step`` (0-based; clamped to ``total_steps``)."""
        step = min(max(step, 0), self.total_steps)
        if step < self.warmup_steps:
            return self.base_lr * step / self.warmup_steps
        span = self.total_steps - self.warmup_steps
        progress = (step - self.warmup_steps) / span if span else 1.0
        return self.min_lr + (self.base_lr - self.min_lr) * 0.5 * (1.0 + math.cos(math.pi * progress))


def param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Split trainable parameters into a decayed and a non-decayed AdamW group.

    Parameters
    ----------
    model : nn.Module
        Parameters with ``requires_grad=False`` (e.g. fixed sin-cos positions) are left out.
    weight_decay : float
        Decay of the first group; the second group gets 0.

    Returns
    -------
    list of dict
        ``[{'params': [...], 'weight_decay': weight_decay, 'names': [...]},
        {'params': [...], 'weight_decay': 0.0, 'names': [...]}]`` (``names`` is informative;
        torch ignores unknown keys but keeps them in the optimiser state, so they are JSON-safe).
    """
    decay: list[nn.Parameter] = []
    no_decay: list[nn.Parameter] = []
    decay_names: list[str] = []
    no_decay_names: list[str] = []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        leaf = name.rsplit(".", 1)[-1]
        if param.ndim <= 1 or name.endswith(".bias") or leaf in NO_DECAY_NAMES:
            no_decay.append(param)
            no_decay_names.append(name)
        else:
            decay.append(param)
            decay_names.append(name)
    return [
        {"params": decay, "weight_decay": weight_decay, "names": decay_names},
        {"params": no_decay, "weight_decay": 0.0, "names": no_decay_names},
    ]


def build_optimizer(
    model: nn.Module,
    lr: float,
    betas: tuple[float, float],
    weight_decay: float,
    device: torch.device,
    fast: bool = True,
) -> torch.optim.AdamW:
    """AdamW over :func:`param_groups`, fused on CUDA, multi-tensor (foreach) elsewhere.

    Parameters
    ----------
    model : nn.Module
        The (unwrapped) model.
    lr : float
        Initial learning rate (the schedule overwrites it each step).
    betas : tuple of float
        AdamW betas, (0.9, 0.95) in MAE.
    weight_decay : float
        Decay of weight matrices; biases, norms, positions and tokens get none.
    device : torch.device
        Where the parameters live; picks the implementation.
    fast : bool
        False gives the plain single-tensor loop (``foreach=False``), the baseline of the
        throughput benchmark.
    """
    groups = param_groups(model, weight_decay)
    kwargs: dict[str, Any] = {}
    if fast and device.type == "cuda":
        kwargs["fused"] = True
    else:
        kwargs["foreach"] = fast
    return torch.optim.AdamW(groups, lr=lr, betas=betas, weight_decay=weight_decay, **kwargs)


def set_lr(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Write ``lr`` into every parameter group."""
    for group in optimizer.param_groups:
        group["lr"] = lr
