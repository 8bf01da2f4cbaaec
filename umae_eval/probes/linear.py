r"""Linear probe on frozen features: a fast full-batch L-BFGS solver and the official MAE recipe.

Two protocols, one result type (:class:`~umae_eval.probes.result.ProbeResult`):

``protocol='fast'`` (default)
    Multinomial logistic regression with an L2 penalty on standardised features,

    .. math::
        \min_{W, b}\; \frac{1}{n}\sum_{i=1}^{n} \mathrm{CE}\big(W^\top \tilde x_i + b,\, y_i\big)
            + \frac{\lambda}{2} \lVert W \rVert_F^2,
        \qquad \tilde x = (x - \mu_{train}) / \sigma_{train}

    the objective of scikit-learn's ``LogisticRegression`` with ``C = 1 / (lambda * n)`` (its
    ``C * sum_i CE_i + ||W||^2 / 2``, divided by ``C n``; the bias is not penalised in either).
    The weight decay ``lambda`` is chosen on a stratified, seeded validation split carved from
    train (``val_fraction``), then the probe is refitted on all of train and scored on test.

    The torch backend solves it with full-batch L-BFGS (history 20, backtracking from unit
    steps, float32 with the objective's value summed in float64, gradients written out rather
    than autograd) over ``(U, beta)`` with ``W = U P`` and ``b = beta / sqrt(h)``,
    ``P = V diag((h l_k + lambda)^{-1/2}) V^T`` from the eigen-decomposition ``V diag(l) V^T``
    of the standardised train covariance (estimated on at most 8,192 rows) and
    ``h = (1 - 1/C) / C``, the softmax curvature per class at uniform probabilities. This
    changes the path, not the model or the optimum (the problem is strictly convex, so it is
    scikit-learn's), and brings the Hessian close to the identity: on correlated encoder-like
    features L-BFGS needs about 4x fewer iterations than on ``W``, and at 1000 classes ``h``
    is what lets it reach a 1e-6 tolerance at all (:class:`~umae_eval.probes.linear_lbfgs._Preconditioner`).
    A fit stops when the largest gradient entry with respect to ``(W, b)`` is at most ``tol``
    (scikit-learn's criterion), by default ``1e-4 * min(1, 10 / C)`` (:func:`default_tol`).
    The grid is walked from the largest weight decay to the smallest, each fit warm-started
    from the last, and the refit starts from the chosen one.
    Standardisation statistics come from all of train (validation rows included).

``protocol='mae'``
    The official MAE linear probe (He et al., CVPR 2022, appendix A.2 and ``main_linprobe.py``):
    head ``BatchNorm1d(D, affine=False, eps=1e-6)`` + ``Linear(D, C)`` (weight trunc-normal
    std 0.01, bias 0), LARS (momentum 0.9, weight decay 0, trust coefficient 0.001, the
    weight matrix adapted and the bias not, as in MAE's ``util/lars.py``), learning rate
    ``base_lr * batch / 256`` with ``base_lr = 0.1``, linear warm-up for 10 epochs then cosine
    decay to 0 (per step), 90 epochs, cross-entropy, no validation split, on cached features of
    un-augmented images. Batch 1024 by default (MAE uses 16384 on ImageNet; CIFAR-sized
    feature sets would get one step per epoch), or the train size if smaller.

``backend='sklearn'`` runs the 'fast' protocol with ``sklearn.linear_model.LogisticRegression``
(lbfgs, multinomial, same standardisation, split, grid, warm start across the grid) as the
reference baseline.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
import torch

from umae_eval.errors import UmaeError
from umae_eval.metrics._inputs import (
    ArrayLike,
    accuracy_percent,
    check_choice,
    check_positive,
    check_probe_inputs,
    to_tensor,
)
from umae_eval.probes.blocks import (
    DEFAULT_BLOCK_ROWS,
    ProbePath,
    check_block_rows,
    linear_memory_bytes,
    resolve_path,
)
from umae_eval.probes.linear_blocked import DEFAULT_REFIT_MAX_ITER, DEFAULT_SELECT_ROWS, fast_blocked
from umae_eval.probes.linear_lbfgs import PRED_KEY, STD_FLOOR, fast_torch
from umae_eval.probes.linear_mae import mae_protocol
from umae_eval.probes.result import ProbeResult
from umae_eval.progress import ProgressFactory, null_progress

__all__ = [
    "BASE_TOL",
    "DEFAULT_WEIGHT_DECAYS",
    "LinearBackend",
    "LinearProtocol",
    "default_tol",
    "linear_probe",
    "stratified_split",
]

LinearBackend = Literal["torch", "sklearn"]
LinearProtocol = Literal["fast", "mae"]

#: The 'fast' protocol's gradient tolerance up to 10 classes (scikit-learn's default ``tol``).
BASE_TOL = 1e-4


def default_tol(num_classes: int) -> float:
    """The 'fast' probe's default gradient tolerance: ``1e-4 * min(1, 10 / num_classes)``.

    The gradient of the mean cross-entropy with respect to class ``c``'s weights averages
    ``(p_ic - y_ic) x_i`` over all rows, and only class ``c``'s rows (about ``1/C`` of them) carry
    a misfit of order one, so at the same distance from the optimum per row its entries shrink
    as ``1/C``. A fixed tolerance therefore stops a 1000-class probe 100x further from its
    optimum than a 10-class one; there the test accuracy depends on the solver's path (measured
    at 131,072 x 768, 1000 classes, weight decay 1e-5: 68.0% for the in-memory path and 63.5%
    for the blocked one at tol 1e-4, against 58.3% at the optimum, tol 1e-6). Scaling by
    ``10 / C`` keeps scikit-learn's 1e-4 where most probes have run it (up to 10 classes: CIFAR-10
    and the committed studies keep their tolerance) and asks of larger ``C`` the same per-row
    accuracy. With the class-curvature preconditioner both paths reach it at 1000 classes: on
    the same set at its chosen weight decay (1e-6) 63.32% in memory and 63.30% blocked.
    """
    return BASE_TOL * min(1.0, 10.0 / max(1, int(num_classes)))


#: Weight decays (lambda of the mean-loss objective) tried by the 'fast' protocol: a decade
#: grid. lambda = 1e-4 on 45k training rows is scikit-learn's C = 0.22.
DEFAULT_WEIGHT_DECAYS: tuple[float, ...] = (1e-1, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6)



# ----------------------------------------------------------------------------------- checks
def _check_grid(weight_decays: Sequence[float]) -> list[float]:
    if isinstance(weight_decays, (int, float)) or len(weight_decays) == 0:
        raise UmaeError(f"weight_decays must be a non-empty sequence of numbers > 0, got {weight_decays!r}")
    grid = [check_positive(float(w), "each weight decay") for w in weight_decays]
    return sorted(set(grid), reverse=True)


def _check_fraction(val_fraction: float, grid_size: int) -> float:
    if not (0.0 <= val_fraction < 1.0):
        raise UmaeError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    if val_fraction == 0.0 and grid_size > 1:
        raise UmaeError("val_fraction=0 leaves no validation split to choose among "
                        f"{grid_size} weight decays; pass val_fraction > 0, or (from Python) weight_decays=[one value]")
    return float(val_fraction)


def _check_int(value: int, name: str, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise UmaeError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _resolve_device(device: str | torch.device) -> torch.device:
    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise UmaeError(f"device {device!r} is not a torch device ({exc})") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise UmaeError(f"device {device!r} asked for, but torch sees no CUDA GPU; use device='cpu'")
    return dev


# ------------------------------------------------------------------------------ splitting
def stratified_split(labels: np.ndarray, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Seeded stratified split of ``range(len(labels))`` into (fit, validation) indices.

    Each class ``c`` with ``n_c >= 2`` samples sends ``max(1, round(val_fraction * n_c))`` of
    them (at most ``n_c - 1``) to validation; singleton classes stay in the fit split.
    Both index arrays are sorted.
    """
    rng = np.random.default_rng(seed)
    fit, val = [], []
    for c in np.unique(labels):
        idx = np.flatnonzero(labels == c)
        idx = idx[rng.permutation(len(idx))]
        n_val = 0 if len(idx) < 2 or val_fraction == 0 else min(len(idx) - 1, max(1, round(val_fraction * len(idx))))
        val.append(idx[:n_val])
        fit.append(idx[n_val:])
    return np.sort(np.concatenate(fit)), np.sort(np.concatenate(val))


# --------------------------------------------------------------------- 'fast', sklearn
def _fast_sklearn(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, yte: np.ndarray, grid: list[float],
                  fit_idx: np.ndarray, val_idx: np.ndarray, max_iter: int, tol: float,
                  progress: ProgressFactory) -> tuple[float, dict[str, Any], dict[str, Any]]:
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    t0 = time.perf_counter()
    mean = xtr.mean(axis=0)
    std = np.maximum(xtr.std(axis=0), STD_FLOOR)
    ztr, zte = (xtr - mean) / std, (xte - mean) / std

    def model(wd: float, n: int) -> LogisticRegression:
        return LogisticRegression(C=1.0 / (wd * n), solver="lbfgs", max_iter=max_iter, tol=tol, warm_start=True)

    curve: list[dict[str, float]] = []
    chosen = grid[0]
    converged = True
    with progress("linear probe (scikit-learn): weight-decay grid + refit", total=len(grid) + 1) as advance, \
            warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        coef = None
        if len(grid) > 1:
            zf, yf, zv = ztr[fit_idx], ytr[fit_idx], ztr[val_idx]
            states = {}
            for wd in grid:
                t1 = time.perf_counter()
                clf = model(wd, len(fit_idx))
                if coef is not None:  # warm start from the previous (larger) weight decay
                    clf.coef_, clf.intercept_, clf.classes_ = coef
                clf.fit(zf, yf)
                coef = (clf.coef_.copy(), clf.intercept_.copy(), clf.classes_)
                states[wd] = coef
                n_iter = int(np.max(clf.n_iter_))
                converged &= n_iter < max_iter
                curve.append({"weight_decay": wd, "val_accuracy": accuracy_percent(clf.predict(zv), ytr[val_idx]),
                              "iterations": n_iter,
                              "seconds": time.perf_counter() - t1})
                advance(1)
            best = max(p["val_accuracy"] for p in curve)
            chosen = next(p["weight_decay"] for p in curve if p["val_accuracy"] == best)
            coef = states[chosen]
        else:
            advance(1)
        t1 = time.perf_counter()
        clf = model(chosen, len(ytr))
        if coef is not None:
            clf.coef_, clf.intercept_, clf.classes_ = coef
        clf.fit(ztr, ytr)
        advance(1)
    n_iter = int(np.max(clf.n_iter_))
    pred_te = clf.predict(zte)
    acc = accuracy_percent(pred_te, yte)
    extras = {"chosen_weight_decay": chosen, "chosen_C": 1.0 / (chosen * len(ytr)), "val_curve": curve,
              PRED_KEY: pred_te,
              "train_accuracy": accuracy_percent(clf.predict(ztr), ytr), "refit_iterations": n_iter,
              "converged": bool(converged and n_iter < max_iter),
              "seconds": {"refit": time.perf_counter() - t1, "total": time.perf_counter() - t0}}
    settings = {"solver": "sklearn LogisticRegression(lbfgs, multinomial), warm start across the grid",
                "C_mapping": "C = 1 / (weight_decay * n_train_rows_of_that_fit)", "dtype": str(ztr.dtype)}
    return acc, settings, extras


# ------------------------------------------------------------------------------ public
def linear_probe(train_x: ArrayLike, train_y: ArrayLike, test_x: ArrayLike, test_y: ArrayLike, *,
                 backend: LinearBackend = "torch", protocol: LinearProtocol = "fast",
                 weight_decays: Sequence[float] = DEFAULT_WEIGHT_DECAYS, val_fraction: float = 0.1,
                 seed: int = 0, device: str | torch.device = "cpu",
                 progress: ProgressFactory = null_progress, num_classes: int | None = None,
                 max_iter: int = 1000, tol: float | None = None, epochs: int = 90, warmup_epochs: int = 10,
                 batch_size: int | None = None, base_lr: float = 0.1, path: ProbePath = "auto",
                 block_rows: int = DEFAULT_BLOCK_ROWS, select_rows: int = DEFAULT_SELECT_ROWS,
                 refit_max_iter: int = DEFAULT_REFIT_MAX_ITER) -> ProbeResult:
    r"""Train a linear classifier on frozen features and report its test accuracy.

    See the module docstring for both protocols' formulas. 'fast' (default): L2-regularised
    multinomial logistic regression on standardised features, weight decay chosen on a
    stratified validation split of train, refit on all of train. 'mae': the MAE paper's
    BatchNorm + Linear head trained with LARS for 90 epochs.

    Parameters
    ----------
    train_x : ndarray or Tensor, shape (N, D)
    train_y : ndarray or Tensor, shape (N,)
    test_x : ndarray or Tensor, shape (M, D)
    test_y : ndarray or Tensor, shape (M,)
    backend : {'torch', 'sklearn'}, default 'torch'
        'sklearn' supports only ``protocol='fast'``.
    protocol : {'fast', 'mae'}, default 'fast'
    weight_decays : sequence of float, default ``(1e-1, 1e-2, ..., 1e-6)``
        The 'fast' grid of ``lambda`` (mean-loss objective); ``C = 1 / (lambda n)`` in sklearn.
    val_fraction : float, default 0.1
        Share of each class held out to choose ``lambda`` (0 allowed with a one-value grid).
    seed : int, default 0
        Seeds the validation split ('fast') or the head init and batch order ('mae').
    device : str or torch.device, default 'cpu'
        Where the torch backend computes ('cuda' for a GPU).
    progress : ProgressFactory, default null_progress
    num_classes : int, optional
        Default ``max(train_y, test_y) + 1``.
    max_iter : int, default 1000
        L-BFGS iteration cap per fit ('fast').
    tol : float, optional
        Default :func:`default_tol`: 1e-4 up to 10 classes, ``1e-4 * 10 / C`` above (1e-6 at
        1000). Gradient tolerance per fit ('fast'): largest absolute entry of the gradient with
        respect to ``(W, b)`` (torch; a fit also stops when 10 iterations gain less than 1e-9
        of the loss while the gradient norm does not halve: the float32 gradient's floor, near
        1e-7 on small sets; ``extras['refit_converged']`` says whether the refit met ``tol``),
        or scikit-learn's ``tol`` (sklearn, its default 1e-4).
    epochs, warmup_epochs : int, default 90, 10
        'mae' schedule (MAE's values).
    batch_size : int, optional
        'mae' batch; default ``min(1024, N)``.
    base_lr : float, default 0.1
        'mae' base learning rate; the used rate is ``base_lr * batch_size / 256``.
    path : {'auto', 'memory', 'blocked'}, default 'auto'
        'fast' with the torch backend only: 'blocked' reads the train features in row blocks
        (:mod:`umae_eval.probes.linear_blocked`: weight decay chosen on a class-balanced subset
        of ``select_rows``, one refit on all rows); 'auto' takes it when the in-memory probe's
        estimated memory exceeds 4 GiB (:mod:`umae_eval.probes.blocks`). Recorded in
        ``settings['path']``.
    block_rows, select_rows : int, default 32768, 65536
        Rows per block and the size of the selection subset of the blocked path.
    refit_max_iter : int, default 100
        Cap on the blocked refit's steps (subset-corrected or L-BFGS; about one pass over the
        data each; :mod:`umae_eval.probes.linear_refit`).

    Returns
    -------
    ProbeResult
        ``method='linear'``, test ``accuracy`` in percent; ``settings`` hold every option and the
        split sizes; ``extras`` hold ``chosen_weight_decay``, ``val_curve`` (one entry per grid
        value: val accuracy, iterations, seconds), ``train_accuracy``, timings ('fast'), or
        ``loss_by_epoch`` and ``train_accuracy`` ('mae').

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.standard_normal((200, 5)); y = (x[:, 0] > 0).astype(int)
    >>> linear_probe(x[:150], y[:150], x[150:], y[150:]).accuracy > 90
    True
    """
    check_choice(backend, ("torch", "sklearn"), "backend")
    check_choice(protocol, ("fast", "mae"), "protocol")
    if backend == "sklearn" and protocol == "mae":
        raise UmaeError("protocol='mae' (BatchNorm + LARS) runs on the torch backend only; "
                        "use backend='torch' or protocol='fast'")
    seed = _check_int(seed, "seed", 0)
    tr, ytr, te, yte, c = check_probe_inputs(train_x, train_y, test_x, test_y, num_classes)
    n = int(tr.shape[0])
    settings: dict[str, Any] = {"backend": backend, "protocol": protocol, "seed": seed, "num_classes": c,
                                "num_train": n, "num_test": int(te.shape[0]), "dim": int(tr.shape[1])}
    if protocol == "mae":
        if path == "blocked":
            raise UmaeError("path='blocked' runs the 'fast' protocol only; use protocol='fast' or path='memory'")
        epochs = _check_int(epochs, "epochs", 1)
        warmup_epochs = _check_int(warmup_epochs, "warmup_epochs", 0)
        if warmup_epochs > epochs:
            raise UmaeError(f"warmup_epochs ({warmup_epochs}) must not exceed epochs ({epochs})")
        bs = min(1024, n) if batch_size is None else _check_int(batch_size, "batch_size", 1)
        if bs > n:
            raise UmaeError(f"batch_size {bs} exceeds the {n} training rows")
        check_positive(base_lr, "base_lr")
        dev = _resolve_device(device)
        acc, extra_settings, extras = mae_protocol(
            to_tensor(tr, dev), ytr, to_tensor(te, dev), yte, c, epochs, warmup_epochs, bs, base_lr,
            seed, progress)
        settings.update(extra_settings)
        return _result(acc, settings, extras)

    grid = _check_grid(weight_decays)
    val_fraction = _check_fraction(val_fraction, len(grid))
    max_iter = _check_int(max_iter, "max_iter", 1)
    tol_rule = "given" if tol is not None else "1e-4 * min(1, 10 / num_classes) (default_tol)"
    tol = default_tol(c) if tol is None else tol
    check_positive(tol, "tol")
    fit_idx, val_idx = (stratified_split(ytr, val_fraction, seed) if len(grid) > 1
                        else (np.arange(n), np.arange(0)))
    if len(grid) > 1 and len(val_idx) == 0:
        raise UmaeError(f"no class has 2 or more training rows, so no validation split can be made "
                        f"to choose among {len(grid)} weight decays; use at least 2 training images of a class "
                        "(raise --max-train / --max-train-per-class), or (from Python) weight_decays=[one value]")
    settings.update({"weight_decays": grid, "val_fraction": val_fraction, "num_fit": int(len(fit_idx)),
                     "num_val": int(len(val_idx)), "max_iter": max_iter, "tol": float(tol), "tol_rule": tol_rule,
                     "standardize": "train mean / std (population)",
                     "selection": "max validation accuracy, ties -> larger weight decay",
                     "objective": "mean cross-entropy + weight_decay / 2 * ||W||^2 (bias unpenalised)"})
    which = resolve_path(path, linear_memory_bytes(n, int(te.shape[0]), int(tr.shape[1]), c))
    if which == "blocked" and backend == "torch":
        block_rows = check_block_rows(block_rows)
        select_rows = _check_int(select_rows, "select_rows", 2)
        refit_max_iter = _check_int(refit_max_iter, "refit_max_iter", 1)
        acc, extra_settings, extras, split = fast_blocked(tr, ytr, te, yte, c, grid, val_fraction, seed, max_iter,
                                                          tol, _resolve_device(device), block_rows, select_rows,
                                                          refit_max_iter, progress)
        settings.update(split)
        settings.update(extra_settings)
        settings["path"] = "blocked"
        return _result(acc, settings, extras)
    if path == "blocked":
        raise UmaeError("path='blocked' runs the 'fast' protocol on the torch backend only; "
                        "use backend='torch' or path='memory'")
    settings["path"] = "memory"
    if backend == "torch":
        dev = _resolve_device(device)
        acc, extra_settings, extras = fast_torch(to_tensor(tr, dev), ytr, to_tensor(te, dev), yte, c, grid,
                                                  fit_idx, val_idx, max_iter, tol, progress)
    else:
        to_np = (lambda a: a.detach().cpu().numpy().astype(np.float32)) if isinstance(tr, torch.Tensor) \
            else (lambda a: np.asarray(a, dtype=np.float32))
        acc, extra_settings, extras = _fast_sklearn(to_np(tr), ytr, to_np(te), yte, grid, fit_idx, val_idx,
                                                    max_iter, tol, progress)
    settings.update(extra_settings)
    return _result(acc, settings, extras)


def _result(acc: float, settings: dict[str, Any], extras: dict[str, Any]) -> ProbeResult:
    """The ProbeResult, with the test predictions moved from ``extras`` to ``test_predictions``."""
    pred = np.asarray(extras.pop(PRED_KEY), dtype=np.int64)
    return ProbeResult(method="linear", accuracy=acc, settings=settings, extras=extras,
                       test_predictions={"linear_accuracy": pred})
