r"""The blocked linear probe's refit on all rows: subset-corrected steps, Anderson-mixed, L-BFGS as the fallback.

Each evaluation of the full objective ``F`` (mean cross-entropy over all ``N`` rows plus
``wd/2 ||W||^2``) is one pass over the features on disk, so the refit's cost is its number of
passes. Plain L-BFGS from the subset's solution needed 9 passes at 1.28M rows and still stopped
at its cap. The class-balanced subset that chose the weight decay is already in memory, and its
objective ``F_S`` has nearly the same curvature as ``F`` when the weight decay dominates, so each
step solves, in memory, the **subset objective corrected to the full gradient**:

.. math::

    W_{k+1} = \arg\min_W \; F_S(W) - \langle \nabla F_S(W_k) - \nabla F(W_k),\, W \rangle

(the DANE step of Shamir, Srebro & Zhang, "Communication-Efficient Distributed Optimization
using an Approximate Newton-type Method", ICML 2014, with one worker holding the subset and
``eta = 1, mu = 0``). Its gradient at ``W_k`` is the full gradient, and on a quadratic it would
be an exact Newton step whenever ``F_S`` and ``F`` have the same Hessian. Each step costs one
pass plus an in-memory solve on the subset.

Two accelerations, both measured on the 8,000-row, 100-class test set at a 1e-6 tolerance:

* **Loose subset solves.** Each solve stops once its gradient is ``FORCING`` (0.1) times the
  full gradient it started from, as an inexact Newton method does (Dembo, Eisenstat &
  Steihaug, SIAM J. Numer. Anal. 19(2), 1982), not at the final tolerance: the step only has
  to cut the full gradient, and the mismatch between ``F_S`` and ``F`` bounds what a tighter
  solve could gain. Same passes, about half the in-memory iterations (36 against 73 in the
  2,000-row, 10-class test).
* **Anderson mixing.** The corrected step is a fixed-point map ``x -> G(x)`` that contracts
  linearly, by a factor set by how well the subset models the whole; where that factor is
  poor the steps crawl (40 passes in that test with a 10 % subset). Type-II Anderson mixing of
  the last ``HISTORY`` (3) steps (Walker & Ni, SIAM J. Numer. Anal. 49(4), 2011) extrapolates
  the sequence, which on an affine map is GMRES: 11 passes there, 8 against 11 on the
  100-class set. A mixed point is kept under the same test as a corrected one (below); if it
  fails, the plain corrected point is measured next, and after ``MIX_REJECTIONS`` failures
  the refit goes on unmixed.

Where the subset is a poor model of the whole (a small weight decay, where the subset alone is
nearly separable), a corrected step can overshoot. A step is therefore kept only if the full
objective decreases (or stays within float32 rounding while the largest gradient entry falls);
otherwise the refit returns to the last kept point and continues with plain L-BFGS on the
streamed objective (the pass that measured the rejected step is the only one lost; a step
whose predicted objective is negative, impossible for a cross-entropy plus a penalty, is
rejected without a pass). Both stop at the
same gradient tolerance on the un-preconditioned parameters, so the optimum is the in-memory
probe's at the same weight decay.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch

from umae_eval.probes.linear_lbfgs import _loss_and_grad, _Preconditioner, fit_lbfgs, grad_max

#: In-memory L-BFGS iterations allowed per corrected subset solve (each one pass over the subset,
#: about 5% of a pass over 1.28M rows at the default 65,536-row subset).
INNER_MAX_ITER = 40

#: Forcing term of the inexact subset solves: each stops when its largest gradient entry is at
#: most this fraction of the full gradient's at its start (an inexact Newton method's
#: ``eta``, Dembo, Eisenstat & Steihaug 1982), not at the final tolerance.
FORCING = 0.1

#: Corrected steps remembered by the Anderson mixing of the steps (0: plain corrected steps).
HISTORY = 3

#: Rejected mixes after which a refit goes on with plain corrected steps: each costs a pass.
MIX_REJECTIONS = 2

Objective = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


@dataclass
class RefitResult:
    """``w`` (C, D), ``b`` (C,) at the last kept point; ``steps`` lists each pass's step kind
    ('corrected', 'mixed', 'lbfgs', with ' (rejected)' where the full objective did not fall);
    ``inner_iterations`` the in-memory L-BFGS iterations of each subset solve."""

    w: torch.Tensor
    b: torch.Tensor
    loss: float
    iterations: int
    converged: bool
    steps: list[str] = field(default_factory=list)
    inner_iterations: list[int] = field(default_factory=list)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``<a, b>`` accumulated in float64, like the objective it corrects."""
    return (a * b).sum(dtype=torch.float64)


def _flat(w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return torch.cat([w.reshape(-1), b]).to(torch.float64)


def _anderson(points: list[torch.Tensor], residuals: list[torch.Tensor]) -> torch.Tensor:
    """Type-II Anderson mixing of a fixed-point map ``G`` from its last ``m + 1`` points.

    ``points[i] = x_i`` and ``residuals[i] = G(x_i) - x_i`` (float64 vectors); returns
    ``x_k + r_k - (dX + dR) gamma`` with ``gamma = argmin ||r_k - dR gamma||`` over the
    differences of consecutive entries (Walker & Ni, SIAM J. Numer. Anal. 49(4), 2011).
    """
    x, r = points[-1], residuals[-1]
    d_r = torch.stack([b - a for a, b in zip(residuals, residuals[1:])], 1)
    d_x = torch.stack([b - a for a, b in zip(points, points[1:])], 1)
    gamma = torch.linalg.lstsq(d_r, r[:, None]).solution[:, 0]
    return x + r - (d_x + d_r) @ gamma


def refit_corrected(full: Objective, z_sub: torch.Tensor, y_sub: torch.Tensor, weight_decay: float,
                    pre: _Preconditioner, w: torch.Tensor, b: torch.Tensor, max_iter: int, tol: float,
                    inner_max_iter: int = INNER_MAX_ITER, forcing: float = FORCING,
                    history: int = HISTORY) -> RefitResult:
    """Minimise the full objective from ``(w, b)`` (see the module docstring).

    ``full(W, b) -> (loss, dW, db)`` is the streamed objective (one pass per call); ``z_sub``
    (S, D) the standardised subset and ``y_sub`` (S,) its labels, in memory. At most
    ``max_iter`` steps (corrected, mixed or L-BFGS), each normally one pass, after the first
    pass at ``(w, b)``; converged when the largest gradient entry is at most ``tol``. Each
    subset solve stops at ``forcing`` times the current largest gradient entry (0: at ``tol``);
    ``history`` corrected steps are Anderson-mixed (0: none).
    """
    c, d = w.shape
    f, gw, gb = full(w, b)
    steps: list[str] = []
    points: list[torch.Tensor] = []
    residuals: list[torch.Tensor] = []
    inner_its: list[int] = []
    mixing = history > 0
    while grad_max(gw, gb) > tol and len(steps) < max_iter:
        g = grad_max(gw, gb)
        s0, sw, sb = _loss_and_grad(z_sub, y_sub, w, b, weight_decay)
        cw, cb = sw - gw, sb - gb
        start = float(s0 - _dot(cw, w) - _dot(cb, b))

        def corrected(w_: torch.Tensor, b_: torch.Tensor, cw: torch.Tensor = cw,
                      cb: torch.Tensor = cb) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            loss, dw, db = _loss_and_grad(z_sub, y_sub, w_, b_, weight_decay)
            return loss - _dot(cw, w_) - _dot(cb, b_), dw - cw, db - cb

        # the corrected model's gradient at (w, b) is the full one, g: cutting it by `forcing`
        # is all a step needs while g is far above tol (solving to tol there was wasted work)
        inner_tol = forcing * g if forcing > 0 else tol
        w_new, b_new, inner_n, inner, _ = fit_lbfgs(corrected, weight_decay, pre, w, b, inner_max_iter, inner_tol)
        inner_its.append(inner_n)
        # the model predicts F(W_new) = F(W_k) + (its own decrease); the objective is >= 0, so a
        # negative prediction means the subset has run away (a small weight decay on a nearly
        # separable subset): reject it without spending a pass on it
        if float(f) + (inner - start) >= 0.0:
            kinds = [("corrected", w_new, b_new)]
            if mixing:
                points = (points + [_flat(w, b)])[-(history + 1):]
                residuals = (residuals + [_flat(w_new, b_new) - points[-1]])[-(history + 1):]
                if len(points) > 1:
                    mixed = _anderson(points, residuals).to(w.dtype)
                    kinds.insert(0, ("mixed", mixed[: c * d].view(c, d), mixed[c * d:]))
            kept = False
            # kept if the objective falls, or stays within float32 rounding while the gradient falls
            slack = 4 * torch.finfo(torch.float32).eps * abs(float(f))
            for kind, w_try, b_try in kinds:
                f_new, gw_new, gb_new = full(w_try, b_try)
                falls = float(f_new) <= float(f) + slack and grad_max(gw_new, gb_new) < g
                if float(f_new) < float(f) or falls:
                    steps.append(kind)
                    w, b, f, gw, gb = w_try, b_try, f_new, gw_new, gb_new
                    kept = True
                    break
                steps.append(kind + " (rejected)")
                points, residuals = points[-1:], residuals[-1:]  # a rejected mix forgets its history
                mixing = mixing and steps.count("mixed (rejected)") < MIX_REJECTIONS
            if kept:
                continue
        else:
            steps.append("corrected (rejected)")
        cached = [(f, gw, gb)]

        def resume(w_: torch.Tensor, b_: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            # L-BFGS evaluates its start point first (the kept point, through W = (W P^-1) P, so
            # equal up to float32 rounding): that point was measured by the last pass already
            return cached.pop() if cached else full(w_, b_)

        left = max_iter - len(steps)
        if left <= 0:
            break
        fit = fit_lbfgs(resume, weight_decay, pre, w, b, left, tol)
        steps.extend(["lbfgs"] * fit.iterations)
        # L-BFGS's own flag: ending on the stall rule before the cap is not convergence
        return RefitResult(fit.w, fit.b, fit.loss, len(steps), fit.converged, steps, inner_its)
    return RefitResult(w, b, float(f), len(steps), grad_max(gw, gb) <= tol, steps, inner_its)
