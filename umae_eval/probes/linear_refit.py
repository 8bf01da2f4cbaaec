r"""The blocked linear probe's refit on all rows: subset-corrected steps, L-BFGS as the fallback.

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

Where the subset is a poor model of the whole (a small weight decay, where the subset alone is
nearly separable), such a step can overshoot. A step is therefore kept only if the full
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

Objective = Callable[[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor, torch.Tensor]]


@dataclass
class RefitResult:
    """``w`` (C, D), ``b`` (C,) at the last kept point; ``steps`` lists each step's kind."""

    w: torch.Tensor
    b: torch.Tensor
    loss: float
    iterations: int
    converged: bool
    steps: list[str] = field(default_factory=list)


def _dot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``<a, b>`` accumulated in float64, like the objective it corrects."""
    return (a * b).sum(dtype=torch.float64)


def refit_corrected(full: Objective, z_sub: torch.Tensor, y_sub: torch.Tensor, weight_decay: float,
                    pre: _Preconditioner, w: torch.Tensor, b: torch.Tensor, max_iter: int, tol: float,
                    inner_max_iter: int = INNER_MAX_ITER) -> RefitResult:
    """Minimise the full objective from ``(w, b)`` (see the module docstring).

    ``full(W, b) -> (loss, dW, db)`` is the streamed objective (one pass per call); ``z_sub``
    (S, D) the standardised subset and ``y_sub`` (S,) its labels, in memory. At most
    ``max_iter`` steps (corrected or L-BFGS), each normally one pass, after the first pass at
    ``(w, b)``; converged when the largest gradient entry is at most ``tol``.
    """
    f, gw, gb = full(w, b)
    steps: list[str] = []
    while grad_max(gw, gb) > tol and len(steps) < max_iter:
        s0, sw, sb = _loss_and_grad(z_sub, y_sub, w, b, weight_decay)
        cw, cb = sw - gw, sb - gb
        start = float(s0 - _dot(cw, w) - _dot(cb, b))

        def corrected(w_: torch.Tensor, b_: torch.Tensor, cw: torch.Tensor = cw,
                      cb: torch.Tensor = cb) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
            loss, dw, db = _loss_and_grad(z_sub, y_sub, w_, b_, weight_decay)
            return loss - _dot(cw, w_) - _dot(cb, b_), dw - cw, db - cb

        w_new, b_new, _, inner, _ = fit_lbfgs(corrected, weight_decay, pre, w, b, inner_max_iter, tol)
        # the model predicts F(W_new) = F(W_k) + (its own decrease); the objective is >= 0, so a
        # negative prediction means the subset has run away (a small weight decay on a nearly
        # separable subset): reject it without spending a pass on it
        if float(f) + (inner - start) >= 0.0:
            f_new, gw_new, gb_new = full(w_new, b_new)
            # kept if the objective falls, or stays within float32 rounding while the gradient falls
            slack = 4 * torch.finfo(torch.float32).eps * abs(float(f))
            falls = float(f_new) <= float(f) + slack and grad_max(gw_new, gb_new) < grad_max(gw, gb)
            if float(f_new) < float(f) or falls:
                steps.append("corrected")
                w, b, f, gw, gb = w_new, b_new, f_new, gw_new, gb_new
                continue
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
        return RefitResult(fit.w, fit.b, fit.loss, len(steps), fit.converged, steps)
    return RefitResult(w, b, float(f), len(steps), grad_max(gw, gb) <= tol, steps)
