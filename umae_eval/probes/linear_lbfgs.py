"""The torch backend of the 'fast' linear probe: covariance-preconditioned full-batch L-BFGS.

Split from :mod:`umae_eval.probes.linear` (which documents the objective, the preconditioner and
the stopping rule and holds the public :func:`~umae_eval.probes.linear.linear_probe`); this module
is the solver and the weight-decay walk, :func:`fast_torch`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np
import torch

from umae_eval.metrics._inputs import accuracy_percent
from umae_eval.progress import ProgressFactory


#: Loss decrease over 10 iterations (relative, absolute below 1) under which a fit counts as
#: stalled, if its gradient norm has not halved either. The value is accumulated in float64,
#: so this sits far below one row's float32 rounding (~1e-7); at 1e-7 it stopped a nearly
#: separable 4-class fit (loss 0.035, wd 1e-5) at gradient 5e-6 that 42 more steps took to 1e-6.
_STALL = 1e-9

#: Relative rise of the loss an approximately-Wolfe step may show: the per-row float32
#: rounding that the float64 accumulation averages but does not remove.
_NOISE = 1e-7

#: Hager & Zhang's delta: a step whose directional derivative is at most ``(1 - 2 delta)``
#: times the initial descent rate is accepted when the loss change is within rounding.
_DELTA = 0.1

#: Rows used to estimate the preconditioner (it shapes the path to the optimum, not the optimum).
_PRECOND_ROWS = 8192

#: Floor for per-dimension std in the standardisation (constant dimensions are left at 0).
STD_FLOOR = 1e-8


def _standardize(x: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
    return (x - mean) / std


class _Preconditioner:
    """``P = V diag((h l + wd)^{-1/2}) V^T`` from the eigen-decomposition ``V diag(l) V^T`` of the
    feature covariance, and the bias scale ``h^{-1/2}``, with ``h = (1 - 1/C) / C``.

    The probe optimises ``U`` with ``W = U P`` and ``b = beta h^{-1/2}``: the same model and
    penalty, but the Hessian in ``(U, beta)`` is close to the identity, so L-BFGS needs few
    iterations. ``h`` is the softmax curvature ``p (1 - p)`` at uniform probabilities, the
    cross-entropy Hessian's scale per class (``Cov * h + wd`` for the weights, ``h`` for the
    bias): without it the weights and the bias were scaled as if ``C`` were 1, which at 1000
    classes left the bias block 1000x flatter than the weights and stalled L-BFGS (measured on
    16,384 x 768 generated features, 1000 classes, wd 0.01: 113 iterations ending on the
    stall rule with the largest gradient entry at 2.3e-5, against 19 iterations to 1e-6 with
    ``h``). ``P`` only changes the path, never the optimum, so it is estimated from at most
    ``_PRECOND_ROWS`` evenly spaced rows.
    """

    def __init__(self, z: torch.Tensor, num_classes: int) -> None:
        step = max(1, z.shape[0] // _PRECOND_ROWS)
        rows = z[::step]
        evals, evecs = torch.linalg.eigh((rows.T @ rows).to(torch.float64) / rows.shape[0])
        c = max(2, int(num_classes))
        self.curvature = (1.0 - 1.0 / c) / c
        self.evals = evals.clamp_min(0.0)
        self.evecs = evecs
        self.dtype = z.dtype
        self.bias_scale = self.curvature ** -0.5

    def matrices(self, weight_decay: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(P, V, s)`` for one weight decay in the features' dtype: ``P = V diag(s) V^T``."""
        s = (self.curvature * self.evals + weight_decay).rsqrt().to(self.dtype)
        v = self.evecs.to(self.dtype)
        return (v * s) @ v.T, v, s


def _loss_and_grad(z: torch.Tensor, y: torch.Tensor, w: torch.Tensor, b: torch.Tensor,
                   weight_decay: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``mean CE(z w^T + b, y) + wd/2 ||w||^2`` (a float64 scalar) and its gradients, without autograd.

    ``w`` is stored classes-first, ``(C, D)``, so that its gradient ``g^T z`` is contiguous.
    Written out because autograd's ``z.T @ grad`` for a tall ``z`` takes a slow path on CPU
    (about 15x slower than ``grad.T @ z`` at 45k x 768 x 10 in torch 2.x).
    """
    logits = torch.addmm(b, z, w.T)
    logp = torch.log_softmax(logits, dim=1)
    # the value in float64: a float32 mean near 5.5 (1000 classes) rounds to 4.8e-7, more than
    # L-BFGS's late decreases, so Armijo backtracked on rounding noise instead of converging
    loss = -logp.gather(1, y[:, None]).sum(dtype=torch.float64) / len(y) \
        + 0.5 * weight_decay * w.square().sum(dtype=torch.float64)
    g = logp.exp_()
    g[torch.arange(len(y), device=y.device), y] -= 1.0
    g /= len(y)
    return loss, torch.addmm(w, g.T, z, beta=weight_decay), g.sum(dim=0)


def _lbfgs(fun: Callable[[torch.Tensor], tuple[float, torch.Tensor, bool]], x0: torch.Tensor,
           max_iter: int, history: int = 20) -> tuple[torch.Tensor, float, int, bool]:
    """Minimise a smooth strictly convex ``fun`` by L-BFGS with backtracking.

    ``fun(x) -> (value, gradient, converged)``; the loop stops when ``converged`` is True at
    an accepted point, after ``max_iter`` iterations, when no step of at least 2^-30 is
    accepted, or when 10 iterations gain less than ``_STALL`` of the value while the gradient
    norm does not halve. A step is accepted on Armijo's sufficient decrease or, near the
    optimum where decreases fall below the value's rounding, on Hager & Zhang's approximate
    Wolfe condition (SIAM J. Optim. 16(1), 2005): the value within ``_NOISE`` of the last and
    the directional derivative at most ``(1 - 2 _DELTA)`` times the initial descent rate,
    which on a quadratic is exactly "the value fell". Without it, Armijo compared rounding
    noise and L-BFGS backtracked to a halt with the gradient 10-100x above the tolerance.
    Unit steps are tried first (the preconditioned problem is close to unit curvature), so an
    iteration usually costs one evaluation. Strict convexity keeps ``s^T y > 0``, so no
    curvature condition is needed to keep the inverse-Hessian model positive definite.
    The two-loop recursion runs in float64 on the (small) parameter vector.
    Returns ``(x, value, iterations, converged)``: ``converged`` is ``fun``'s flag at ``x``, so
    False when the loop ended on the cap, the stall rule or a failed line search.
    """
    x = x0.clone()
    f, g, done = fun(x)
    s_hist: list[torch.Tensor] = []
    y_hist: list[torch.Tensor] = []
    rho_hist: list[float] = []
    g64 = g.to(torch.float64)
    window = [(f, float(g64.norm()))]
    g_best = window[0][1]  # smallest gradient norm before the window
    it = 0
    while not done and it < max_iter:
        q = -g64
        alphas = []
        for s_k, y_k, r_k in zip(reversed(s_hist), reversed(y_hist), reversed(rho_hist)):
            a = r_k * float(s_k @ q)
            q -= a * y_k
            alphas.append(a)
        if s_hist:
            q *= float(s_hist[-1] @ y_hist[-1]) / float(y_hist[-1] @ y_hist[-1])
        for (s_k, y_k, r_k), a in zip(zip(s_hist, y_hist, rho_hist), reversed(alphas)):
            q += (a - r_k * float(y_k @ q)) * s_k
        slope = float(g64 @ q)
        if slope >= 0:  # not a descent direction (rounding): restart from steepest descent
            s_hist.clear(), y_hist.clear(), rho_hist.clear()
            q, slope = -g64, -float(g64 @ g64)
        d = q.to(x.dtype)
        t = 1.0
        for _ in range(31):
            x_new = x + t * d
            f_new, g_new, done_new = fun(x_new)
            if f_new <= f + 1e-4 * t * slope:
                break
            if f_new <= f + _NOISE * abs(f) and float(g_new.to(torch.float64) @ q) <= -(1 - 2 * _DELTA) * slope:
                break
            t *= 0.5
        else:
            break  # no decrease at any step length: converged to float precision
        s_k = (x_new - x).to(torch.float64)
        y_k = (g_new - g).to(torch.float64)
        sy = float(s_k @ y_k)
        if sy > 1e-12 * float(s_k @ s_k) ** 0.5 * float(y_k @ y_k) ** 0.5:
            s_hist.append(s_k), y_hist.append(y_k), rho_hist.append(1.0 / sy)
            if len(s_hist) > history:
                s_hist.pop(0), y_hist.pop(0), rho_hist.pop(0)
        x, f, g, done = x_new, f_new, g_new, done_new
        g64 = g.to(torch.float64)  # shared by the stall window and the next direction
        it += 1
        window.append((f, float(g64.norm())))
        if len(window) > 10:
            if window[0][0] - f <= _STALL * max(1.0, abs(f)) and min(n for _, n in window[1:]) > 0.5 * g_best:
                break
            g_best = min(g_best, window.pop(0)[1])
    return x, f, it, done


class Fit(NamedTuple):
    """One L-BFGS fit: ``w`` (C, D), ``b`` (C,), its iterations, objective value, and whether it
    ended at the gradient tolerance (False: the iteration cap, the stall rule or the line search)."""

    w: torch.Tensor
    b: torch.Tensor
    iterations: int
    loss: float
    converged: bool


def _fit_lbfgs(z: torch.Tensor, y: torch.Tensor, weight_decay: float, pre: _Preconditioner,
               w0: torch.Tensor, b0: torch.Tensor, max_iter: int, tol: float) -> Fit:
    """Minimise the 'fast' objective on in-memory ``z`` (N, D), ``y`` (N,); see :func:`fit_lbfgs`."""
    return fit_lbfgs(lambda w, b: _loss_and_grad(z, y, w, b, weight_decay), weight_decay, pre, w0, b0,
                     max_iter, tol)


def grad_max(gw: torch.Tensor, gb: torch.Tensor) -> float:
    """The largest absolute gradient entry over ``(W, b)``: what every 'fast' fit's tolerance bounds."""
    return max(float(gw.abs().max()), float(gb.abs().max()))


LossGrad = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


def fit_lbfgs(loss_grad: LossGrad, weight_decay: float, pre: _Preconditioner, w0: torch.Tensor,
              b0: torch.Tensor, max_iter: int, tol: float) -> Fit:
    """Minimise the 'fast' objective from ``(w0, b0)`` by L-BFGS on ``(U, beta)``, ``W = U P``, ``b = beta / sqrt(h)``.

    ``loss_grad(W (C, D), b (C,)) -> (loss, dW, db)`` evaluates the objective at
    ``weight_decay``, in memory or streamed over row blocks. Stops when the largest gradient
    entry with respect to ``(W, b)`` (the un-preconditioned parameters, as scikit-learn
    measures it) is at most ``tol``, after ``max_iter`` iterations, or when L-BFGS stalls.
    """
    p, v, scale = pre.matrices(weight_decay)
    sb = pre.bias_scale
    c, d = w0.shape

    def fun(x: torch.Tensor) -> tuple[float, torch.Tensor, bool]:
        u, beta = x[: c * d].view(c, d), x[c * d:]
        loss, gw, gb = loss_grad(u @ p, beta * sb)
        converged = grad_max(gw, gb) <= tol
        return float(loss), torch.cat([(gw @ p).reshape(-1), gb * sb]), converged

    x0 = torch.cat([((w0 @ v) / scale @ v.T).reshape(-1), b0 / sb])  # U0 = W0 P^-1
    x, loss, n_iter, done = _lbfgs(fun, x0, max_iter)
    return Fit(x[: c * d].view(c, d) @ p, x[c * d:] * sb, n_iter, loss, done)


#: How both 'fast' paths describe the solver in ``settings['solver']`` (the blocked one adds its refit).
SOLVER = ("L-BFGS (history 20, backtracking from unit steps: Armijo, or approximate Wolfe within rounding), "
          "covariance- and class-curvature-preconditioned, objective value accumulated in float64")


#: Where the recipes hand the test predictions to :func:`_result` (never in results.json).
PRED_KEY = "_test_predictions"


def _predict(z: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> np.ndarray:
    with torch.no_grad():
        return torch.addmm(b, z, w.T).argmax(dim=1).cpu().numpy()


def walk_grid(z: torch.Tensor, y_all: torch.Tensor, y_np: np.ndarray, grid: list[float], fit_idx: np.ndarray,
              val_idx: np.ndarray, pre: _Preconditioner, w: torch.Tensor, b: torch.Tensor, max_iter: int,
              tol: float, advance: Callable[[int], None],
              ) -> tuple[list[dict[str, float]], float, tuple[torch.Tensor, torch.Tensor]]:
    """Fit each weight decay of ``grid`` (largest first, warm-started) on ``z[fit_idx]``; score on ``z[val_idx]``.

    ``z`` (N, D) standardised, ``y_all`` (N,) its labels on the device, ``y_np`` the same in numpy.
    Returns ``(curve, chosen weight decay, (W, b) fitted at it)``: the largest weight decay
    among those of best validation accuracy; with a one-value grid, that value and ``(w, b)``.
    """
    curve: list[dict[str, float]] = []
    if len(grid) == 1:
        advance(1)
        return curve, grid[0], (w, b)
    warm: dict[float, tuple[torch.Tensor, torch.Tensor]] = {}
    device = z.device
    fit_t, val_t = torch.from_numpy(fit_idx).to(device), torch.from_numpy(val_idx).to(device)
    zf, yf, zv = z[fit_t], y_all[fit_t], z[val_t]
    for wd in grid:
        t1 = time.perf_counter()
        fit = _fit_lbfgs(zf, yf, wd, pre, w, b, max_iter, tol)
        w, b = fit.w, fit.b
        warm[wd] = (w, b)
        curve.append({"weight_decay": wd, "val_accuracy": accuracy_percent(_predict(zv, w, b), y_np[val_idx]),
                      "iterations": fit.iterations, "loss": fit.loss, "converged": fit.converged,
                      "seconds": time.perf_counter() - t1})
        advance(1)
    best = max(p["val_accuracy"] for p in curve)
    chosen = next(p["weight_decay"] for p in curve if p["val_accuracy"] == best)  # largest wd of ties
    return curve, chosen, warm[chosen]


def fast_torch(xtr: torch.Tensor, ytr: np.ndarray, xte: torch.Tensor, yte: np.ndarray, c: int,
                grid: list[float], fit_idx: np.ndarray, val_idx: np.ndarray, max_iter: int, tol: float,
                progress: ProgressFactory) -> tuple[float, dict[str, Any], dict[str, Any]]:
    device = xtr.device
    t0 = time.perf_counter()
    mean = xtr.mean(dim=0)
    std = xtr.std(dim=0, unbiased=False).clamp_min(STD_FLOOR)
    ztr, zte = _standardize(xtr, mean, std), _standardize(xte, mean, std)
    pre = _Preconditioner(ztr, c)
    t_prep = time.perf_counter() - t0
    y_all = torch.from_numpy(ytr).to(device)
    w = torch.zeros(c, ztr.shape[1], dtype=ztr.dtype, device=device)
    b = torch.zeros(c, dtype=ztr.dtype, device=device)
    with progress("linear probe: weight-decay grid + refit", total=len(grid) + 1) as advance:
        curve, chosen, (w, b) = walk_grid(ztr, y_all, ytr, grid, fit_idx, val_idx, pre, w, b, max_iter, tol, advance)
        t1 = time.perf_counter()
        fit = _fit_lbfgs(ztr, y_all, chosen, pre, w, b, max_iter, tol)
        w, b = fit.w, fit.b
        advance(1)
    pred_te = _predict(zte, w, b)
    acc = accuracy_percent(pred_te, yte)
    extras = {"chosen_weight_decay": chosen, "val_curve": curve, PRED_KEY: pred_te,
              "train_accuracy": accuracy_percent(_predict(ztr, w, b), ytr),
              "refit_iterations": fit.iterations, "refit_loss": fit.loss, "refit_converged": fit.converged,
              "seconds": {"preprocess": t_prep, "refit": time.perf_counter() - t1,
                          "total": time.perf_counter() - t0}}
    settings = {"solver": SOLVER,
                "dtype": str(xtr.dtype).replace("torch.", ""), "device": str(device)}
    return acc, settings, extras
