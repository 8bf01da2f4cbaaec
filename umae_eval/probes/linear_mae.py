"""The official MAE linear-probe recipe: BatchNorm + Linear head, LARS, 90 epochs.

Split from :mod:`umae_eval.probes.linear`, whose docstring gives the recipe (He et al., CVPR
2022, appendix A.2 and ``main_linprobe.py``) and whose public
:func:`~umae_eval.probes.linear.linear_probe` checks the options and calls
:func:`mae_protocol` for ``protocol='mae'``.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from umae_eval.metrics._inputs import accuracy_percent
from umae_eval.probes.linear_lbfgs import PRED_KEY
from umae_eval.progress import ProgressFactory


def _mae_lr(step: int, steps_per_epoch: int, lr: float, epochs: int, warmup_epochs: int) -> float:
    """MAE's ``adjust_learning_rate``: linear warm-up, then half-cycle cosine to 0 (per step)."""
    epoch = step / steps_per_epoch
    if epoch < warmup_epochs:
        return lr * epoch / warmup_epochs
    return lr * 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup_epochs) / max(1e-12, epochs - warmup_epochs)))


def mae_protocol(xtr: torch.Tensor, ytr: np.ndarray, xte: torch.Tensor, yte: np.ndarray, c: int,
                 epochs: int, warmup_epochs: int, batch_size: int, base_lr: float, seed: int,
                 progress: ProgressFactory) -> tuple[float, dict[str, Any], dict[str, Any]]:
    """Train the head on ``xtr`` (N, D) with labels ``ytr`` (N,); score on ``xte`` (M, D).

    Returns the test accuracy (percent), the settings and the extras (``loss_by_epoch``,
    ``train_accuracy``, timings, the test predictions under ``PRED_KEY``).
    """
    from umae_eval.compat import ensure_timm_importable

    ensure_timm_importable()
    from timm.layers import trunc_normal_
    from timm.optim import Lars

    device = xtr.device
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)  # trunc_normal_ draws from the global generator
    bn = torch.nn.BatchNorm1d(xtr.shape[1], affine=False, eps=1e-6)
    fc = torch.nn.Linear(xtr.shape[1], c)
    trunc_normal_(fc.weight, std=0.01)
    torch.nn.init.zeros_(fc.bias)
    head = torch.nn.Sequential(bn, fc).to(device)
    lr = base_lr * batch_size / 256
    opt = Lars([{"params": [fc.weight], "always_adapt": True},
                {"params": [fc.bias], "always_adapt": False}],
               lr=lr, momentum=0.9, weight_decay=0.0, trust_coeff=0.001)
    n = xtr.shape[0]
    steps_per_epoch = max(1, n // batch_size)  # drop_last=True, as MAE's train loader
    y_all = torch.from_numpy(ytr).to(device)
    losses: list[float] = []
    step = 0
    with progress("linear probe (MAE recipe): epochs", total=epochs) as advance:
        for _ in range(epochs):
            head.train()
            order = torch.randperm(n, generator=gen).to(device)
            total = 0.0
            for s in range(steps_per_epoch):
                for group in opt.param_groups:
                    group["lr"] = _mae_lr(step, steps_per_epoch, lr, epochs, warmup_epochs)
                idx = order[s * batch_size:(s + 1) * batch_size]
                loss = F.cross_entropy(head(xtr[idx]), y_all[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                total += float(loss.detach())
                step += 1
            losses.append(total / steps_per_epoch)
            advance(1)
    head.eval()
    with torch.no_grad():
        pred_te = torch.cat([head(xte[i:i + 8192]).argmax(1) for i in range(0, xte.shape[0], 8192)]).cpu().numpy()
        pred_tr = torch.cat([head(xtr[i:i + 8192]).argmax(1) for i in range(0, n, 8192)]).cpu().numpy()
    settings = {"head": "BatchNorm1d(affine=False, eps=1e-6) + Linear (trunc-normal std 0.01, bias 0)",
                "optimizer": "timm.optim.Lars (momentum 0.9, weight decay 0, trust 0.001; bias not adapted)",
                "epochs": epochs, "warmup_epochs": warmup_epochs, "batch_size": batch_size,
                "base_lr": base_lr, "lr": lr, "lr_schedule": "linear warm-up, half-cycle cosine, per step",
                "steps_per_epoch": steps_per_epoch, "drop_last": True, "device": str(device)}
    extras = {"train_accuracy": accuracy_percent(pred_tr, ytr), "loss_by_epoch": losses, PRED_KEY: pred_te,
              "seconds": {"total": time.perf_counter() - t0}}
    return accuracy_percent(pred_te, yte), settings, extras
