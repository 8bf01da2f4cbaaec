r"""The 'fast' linear probe out of core: same objective and grid, train features read in row blocks.

For feature sets whose in-memory probe would not fit (ImageNet-1k: 1.28M x 768 float16 is
2 GB on disk, but the in-memory probe holds a float32 copy three times over and 1.28M x 1000
logits, about 30 GB). Nothing of size ``N x D`` in float32 or ``N x C`` is held:

1. one streamed pass for the standardisation statistics (float64 mean and population std,
   merged per block);
2. the weight decay is chosen on a **class-balanced subset** of train (at most
   ``ceil(select_rows / C)`` rows of each class, seeded; all of train when it is smaller than
   ``select_rows``), held in memory and split, fitted and scored exactly as the in-memory
   probe does with all of train (:func:`~umae_eval.probes.linear_lbfgs.walk_grid`); the
   covariance preconditioner comes from the same subset;
3. **one refit on all rows** at the chosen weight decay, warm-started from the subset's fit:
   subset-corrected steps (:mod:`umae_eval.probes.linear_refit`: each solves the in-memory subset
   objective corrected to the full gradient, loosely, and mixes it with the last steps; then one
   pass measures the full objective and gradient, two ``B x D x C`` products per block), falling back to the same
   covariance-preconditioned L-BFGS on the streamed objective if a step does not lower it;
   stopped by the same gradient tolerance or after ``refit_max_iter`` steps (default 100;
   ``extras['refit_converged']`` says which, ``extras['refit_steps']`` lists the steps);
4. test predictions in blocks; the train accuracy comes from the refit's last pass.

The optimum of step 3 is the in-memory probe's refit optimum at the same weight decay (same
strictly convex objective over all rows), so the two paths differ only where the subset
chooses another weight decay than the in-memory probe's 90% fit split would.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import torch

from umae_eval.metrics._inputs import ArrayLike, accuracy_percent
from umae_eval.probes.blocks import column_stats, gather_rows, iter_blocks
from umae_eval.probes.linear_lbfgs import (
    PRED_KEY,
    SOLVER,
    STD_FLOOR,
    _Preconditioner,
    _standardize,
    walk_grid,
)
from umae_eval.probes.linear_refit import FORCING, HISTORY, refit_corrected
from umae_eval.progress import ProgressFactory

#: Default size of the class-balanced subset the weight decay is chosen on.
DEFAULT_SELECT_ROWS = 65536

#: Default cap on the refit's steps (each one pass over all rows). A safety net, not a budget:
#: a refit stopped by it is not the in-memory probe's optimum (``extras['refit_converged']``
#: is then false). At 1.28M x 768 x 1000 (wd 0.01, tol 1e-4) the corrected steps converged in 3
#: passes; at 131,072 x 768 x 1000, wd 1e-5 and the 1000-class tolerance 1e-6 the refit took 42
#: (one corrected step rejected, then L-BFGS; measured before the class-curvature
#: preconditioner), which the old cap of 8 cut 4.5 points of test accuracy short of the
#: in-memory path.
DEFAULT_REFIT_MAX_ITER = 100


def balanced_subset(labels: np.ndarray, num_classes: int, select_rows: int, seed: int) -> np.ndarray:
    """Sorted row indices: at most ``ceil(select_rows / C)`` seeded rows of each class.

    All rows when ``len(labels) <= select_rows`` (then the blocked probe chooses the weight
    decay exactly as the in-memory probe does).
    """
    n = len(labels)
    if n <= select_rows:
        return np.arange(n)
    per_class = max(2, math.ceil(select_rows / num_classes))
    rng = np.random.default_rng(seed)
    order = np.argsort(labels, kind="stable")
    bounds = np.searchsorted(labels[order], np.arange(num_classes + 1))
    rows = []
    for c in range(num_classes):
        idx = order[bounds[c]:bounds[c + 1]]
        if len(idx) > per_class:
            idx = idx[rng.permutation(len(idx))[:per_class]]
        rows.append(idx)
    return np.sort(np.concatenate(rows))


class _StreamedObjective:
    """``mean CE + wd/2 ||W||^2`` and its gradient, accumulated over row blocks of the train features.

    Also counts the passes (evaluations) and remembers the train accuracy at the last point
    evaluated, so the refit's final pass doubles as the train-accuracy pass.
    """

    def __init__(self, x: ArrayLike, y: torch.Tensor, mean: torch.Tensor, std: torch.Tensor,
                 weight_decay: float, block_rows: int, device: torch.device) -> None:
        self.x, self.y, self.mean, self.std = x, y, mean, std
        self.wd, self.block_rows, self.device = weight_decay, block_rows, device
        self.passes = 0
        self.last: tuple[torch.Tensor, torch.Tensor, int] | None = None

    def __call__(self, w: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        n = int(self.x.shape[0])
        gw = torch.zeros_like(w)
        gb = torch.zeros_like(b)
        loss = torch.zeros((), dtype=torch.float64, device=self.device)  # sum of CE_i
        correct = 0
        for start, blk in iter_blocks(self.x, self.block_rows, self.device):
            z = _standardize(blk, self.mean, self.std)
            yb = self.y[start:start + z.shape[0]]
            # softmax in place on the logits buffer, one exp per entry (log_softmax + exp took two):
            # CE_i = log sum_c exp(l_ic - m_i) - (l_iy - m_i), with m_i the row max (its argmax
            # gives the train accuracy for free)
            logits = torch.addmm(b, z, w.T)
            top, arg = logits.max(dim=1)
            correct += int((arg == yb).sum())
            picked = logits.gather(1, yb[:, None])[:, 0] - top
            g = logits.sub_(top[:, None]).exp_()
            total = g.sum(dim=1)
            loss += (total.log() - picked).sum().to(torch.float64)
            g.div_(total[:, None])
            g[torch.arange(len(yb), device=self.device), yb] -= 1.0
            gw.addmm_(g.T, z)
            gb += g.sum(dim=0)
        self.passes += 1
        self.last = (w, b, correct)
        value = loss / n + 0.5 * self.wd * w.square().sum(dtype=torch.float64)  # float64, as in memory
        return value, gw.div_(n).add_(w, alpha=self.wd), gb.div_(n)


def _predict_blocks(x: ArrayLike, mean: torch.Tensor, std: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
                    block_rows: int, device: torch.device) -> np.ndarray:
    out = []
    with torch.no_grad():
        for _, blk in iter_blocks(x, block_rows, device):
            out.append(torch.addmm(b, _standardize(blk, mean, std), w.T).argmax(dim=1).cpu())
    return torch.cat(out).numpy()


def fast_blocked(xtr: ArrayLike, ytr: np.ndarray, xte: ArrayLike, yte: np.ndarray, c: int, grid: list[float],
                 val_fraction: float, seed: int, max_iter: int, tol: float, device: torch.device,
                 block_rows: int, select_rows: int, refit_max_iter: int,
                 progress: ProgressFactory) -> tuple[float, dict[str, Any], dict[str, Any], dict[str, Any]]:
    """The 'fast' protocol over row blocks (see the module docstring).

    ``xtr`` (N, D) and ``xte`` (M, D): ndarrays (a float16 ``np.memmap`` included) or tensors,
    never copied whole. Returns ``(accuracy, settings, extras, split_settings)``.
    """
    from umae_eval.probes.linear import stratified_split

    t0 = time.perf_counter()
    n = int(xtr.shape[0])
    mean64, std64 = column_stats(xtr, block_rows, device)
    mean = mean64.to(torch.float32)
    std = std64.clamp_min(STD_FLOOR).to(torch.float32)
    t_stats = time.perf_counter() - t0
    # also with one weight decay (nothing to choose): the subset is the refit's in-memory model
    sub = balanced_subset(ytr, c, select_rows, seed)
    z_sub = _standardize(gather_rows(xtr, sub, device), mean, std)
    y_sub = ytr[sub]
    y_sub_t = torch.from_numpy(y_sub).to(device)  # the walk and the refit's subset model share it
    fit_idx, val_idx = (stratified_split(y_sub, val_fraction, seed) if len(grid) > 1
                        else (np.arange(len(sub)), np.arange(0)))
    pre = _Preconditioner(z_sub, c)
    w = torch.zeros(c, z_sub.shape[1], dtype=torch.float32, device=device)
    b = torch.zeros(c, dtype=torch.float32, device=device)
    with progress("linear probe (blocked): weight-decay grid on a class-balanced subset + refit on all rows",
                  total=len(grid) + 1) as advance:
        t1 = time.perf_counter()
        curve, chosen, (w, b) = walk_grid(z_sub, y_sub_t, y_sub, grid, fit_idx, val_idx, pre, w, b, max_iter,
                                          tol, advance)
        t_select = time.perf_counter() - t1
        t1 = time.perf_counter()
        objective = _StreamedObjective(xtr, torch.from_numpy(ytr).to(device), mean, std, chosen, block_rows, device)
        # with every row in memory the corrected objective is the objective itself: one exact solve
        # ends the refit, where loose solves and mixing would spend passes (5 instead of 1 at 16k rows)
        whole = len(sub) == n
        refit = refit_corrected(objective, z_sub, y_sub_t, chosen, pre, w, b, min(max_iter, refit_max_iter), tol,
                                forcing=0.0 if whole else FORCING, history=0 if whole else HISTORY)
        w, b = refit.w, refit.b
        del z_sub
        advance(1)
    t_refit = time.perf_counter() - t1
    assert objective.last is not None
    lw, lb, correct = objective.last
    if not (torch.equal(lw, w) and torch.equal(lb, b)):  # the last pass was a rejected trial step
        correct = int((_predict_blocks(xtr, mean, std, w, b, block_rows, device) == ytr).sum())
    pred_te = _predict_blocks(xte, mean, std, w, b, block_rows, device)
    acc = accuracy_percent(pred_te, yte)
    extras = {"chosen_weight_decay": chosen, "val_curve": curve, PRED_KEY: pred_te,
              "train_accuracy": 100.0 * correct / n, "refit_iterations": refit.iterations, "refit_loss": refit.loss,
              "refit_passes": objective.passes, "refit_converged": refit.converged, "refit_steps": refit.steps,
              "refit_inner_iterations": refit.inner_iterations,
              "seconds": {"preprocess": t_stats, "select": t_select, "refit": t_refit,
                          "total": time.perf_counter() - t0}}
    settings = {"solver": SOLVER + f"; refit on all rows by subset-corrected steps (DANE, eta 1, mu 0; each subset "
                          f"solve to {FORCING} x the full gradient), Anderson-mixed over the last {HISTORY} (a "
                          "point kept only if the full objective falls, or stays within float32 rounding while "
                          "the gradient falls; else the plain corrected point, else L-BFGS); loss and gradient "
                          "accumulated over row blocks",
                "dtype": "float32 per block (stored " + str(getattr(xtr, "dtype", "?")).replace("torch.", "") + ")",
                "device": str(device), "block_rows": block_rows, "select_rows": select_rows,
                "refit_max_iter": refit_max_iter,
                "selection": "max validation accuracy on a class-balanced subset of train "
                             "(ceil(select_rows / classes) rows per class, seeded), ties -> larger weight decay; "
                             "then one refit on all train rows"}
    split = {"num_select": int(len(sub)), "num_fit": int(len(fit_idx)), "num_val": int(len(val_idx))}
    return acc, settings, extras, split
