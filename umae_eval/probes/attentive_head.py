r"""The efficient-probing (EP) head and its training loop, for :mod:`umae_eval.probes.attentive`.

EP (Psomas et al., "Attention, Please! Revisiting Attentive Probing Through the Lens of
Efficiency", ICLR 2026; ``billpsomas/efficient-probing``, ``poolings/ep.py`` and
``probe_heads.py``) pools the ``T`` frozen tokens ``x_t`` of an image with ``Q`` learned queries
``q_i`` and one value projection ``W_v`` (no key, query or output projections):

.. math::
    a_{it} = \operatorname{softmax}_t\big(q_i^\top x_t / \sqrt{D}\big), \qquad
    p = \big[\, W_v^{(i)} \textstyle\sum_t a_{it}\, x_t \,\big]_{i=1}^{Q} \in \mathbb{R}^{D}

where ``W_v^{(i)}`` is the ``i``-th block of ``D / Q`` rows of ``W_v`` (D x D): query ``i`` fills
``D / Q`` channels of the pooled vector. The classifier on top is EP's (and MAE's linear
probe's): ``BatchNorm1d(D, affine=False, eps=1e-6)`` then ``Linear(D, C)``.

EP computes ``W_v x_t`` for every token and then pools; here the attention pools the raw tokens
first and ``W_v^{(i)}`` is applied to the ``Q`` pooled vectors. By linearity the two are the same
function (``tests/test_probes_attentive.py`` checks it against the token-first form), and the
cost per image drops from ``T D^2 + 2 Q T D`` to ``2 Q T D + D^2`` multiply-adds.

Several heads (one per (learning rate, weight decay) pair of the grid) are trained at once as
stacked tensors with a leading grid axis ``G``: every head sees the same batches in the same
order and starts from the same initial weights, so each one is exactly the head a separate
run with that pair would train; one token batch (one encoder call for a callable source)
serves all of them.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from umae_eval.progress import Advance

#: BatchNorm of the head: EP's / MAE's ``BatchNorm1d(affine=False, eps=1e-6)``, torch's momentum.
BN_EPS = 1e-6
BN_MOMENTUM = 0.1
#: AdamW constants (torch's defaults).
BETAS = (0.9, 0.999)
ADAM_EPS = 1e-8

#: ``fetch(indices) -> float32 tensor (len(indices), T, D)`` on the training device.
Fetch = Callable[[np.ndarray], torch.Tensor]


@dataclass
class HeadInit:
    """The initial weights every grid point starts from, drawn from one seeded generator.

    Order of the draws from ``torch.Generator().manual_seed(seed)`` (what an independent
    re-implementation must repeat): ``queries = 0.02 * randn(Q, D)`` (EP's init);
    ``w_v = (2 * rand(D, D) - 1) / sqrt(D)`` (``nn.Linear``'s default bound, rows = outputs);
    ``w_c = 0.01 * randn(C, D)`` (MAE's linear-probe std), ``b_c = 0``. The same generator then
    draws one ``randperm`` of the training rows per epoch.
    """

    queries: torch.Tensor  # (Q, D)
    w_v: torch.Tensor  # (D, D)
    w_c: torch.Tensor  # (C, D)
    b_c: torch.Tensor  # (C,)

    @staticmethod
    def draw(gen: torch.Generator, q: int, d: int, c: int) -> HeadInit:
        queries = 0.02 * torch.randn(q, d, generator=gen)
        w_v = (2.0 * torch.rand(d, d, generator=gen) - 1.0) / math.sqrt(d)
        w_c = 0.01 * torch.randn(c, d, generator=gen)
        return HeadInit(queries, w_v, w_c, torch.zeros(c))


class StackedHeads:
    """``G`` EP heads as stacked tensors: queries (G, Q, D), w_v (G, D, D), w_c (G, C, D), b_c (G, C)."""

    def __init__(self, init: HeadInit, g: int, device: torch.device) -> None:
        def stack(t: torch.Tensor) -> torch.Tensor:
            return t.to(device).unsqueeze(0).repeat(g, *([1] * t.ndim)).requires_grad_(True)

        self.queries, self.w_v, self.w_c, self.b_c = (stack(t) for t in
                                                       (init.queries, init.w_v, init.w_c, init.b_c))
        d = init.w_v.shape[0]
        self.running_mean = torch.zeros(g, d, device=device)
        self.running_var = torch.ones(g, d, device=device)
        self.num_queries = init.queries.shape[0]

    @property
    def params(self) -> list[torch.Tensor]:
        return [self.queries, self.w_v, self.w_c, self.b_c]

    def select(self, g: int) -> StackedHeads:
        """Head ``g`` alone, as a one-head stack (weights and running statistics copied)."""
        one = StackedHeads.__new__(StackedHeads)
        one.queries, one.w_v, one.w_c, one.b_c = (p.detach()[g:g + 1].clone() for p in self.params)
        one.running_mean = self.running_mean[g:g + 1].clone()
        one.running_var = self.running_var[g:g + 1].clone()
        one.num_queries = self.num_queries
        return one

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """EP pooling of tokens ``x`` (B, T, D) for every head: (G, B, D)."""
        g, q, d = self.queries.shape
        b = x.shape[0]
        logits = torch.einsum("btd,gqd->gbqt", x, self.queries) / math.sqrt(d)
        attn = logits.softmax(dim=-1)
        z = torch.einsum("gbqt,btd->gbqd", attn, x)  # attention-pooled raw tokens, per query
        w = self.w_v.view(g, q, d // q, d)  # query i's block of value rows
        return torch.einsum("gbqd,gqkd->gbqk", z, w).reshape(g, b, d)

    def logits(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        """Class scores (G, B, C); ``train`` uses batch statistics and updates the running ones."""
        p = self.pooled(x)
        if train:
            mean = p.mean(dim=1)
            var = p.var(dim=1, unbiased=False)
            with torch.no_grad():  # torch's BatchNorm: the running variance is the unbiased one
                n = p.shape[1]
                self.running_mean.lerp_(mean.detach(), BN_MOMENTUM)
                self.running_var.lerp_(var.detach() * n / max(1, n - 1), BN_MOMENTUM)
        else:
            mean, var = self.running_mean, self.running_var
        h = (p - mean[:, None]) / torch.sqrt(var[:, None] + BN_EPS)
        return torch.baddbmm(self.b_c[:, None], h, self.w_c.transpose(1, 2))


class StackedAdamW:
    """``torch.optim.AdamW`` (amsgrad off) on stacked parameters, one (lr, wd) per grid row.

    Weight decay applies to ``w_v`` and ``w_c`` only: the queries (token-like parameters) and
    the bias are not decayed, as in MAE's parameter groups.
    """

    def __init__(self, heads: StackedHeads, lrs: torch.Tensor, wds: torch.Tensor) -> None:
        self.heads = heads
        self.lrs, self.wds = lrs, wds
        self.decay = [False, True, True, False]
        self.m = [torch.zeros_like(p) for p in heads.params]
        self.v = [torch.zeros_like(p) for p in heads.params]
        self.t = 0

    def step(self, scale: float) -> None:
        """One update at learning rate ``scale * lr_g`` for head ``g`` (``scale`` from the schedule)."""
        self.t += 1
        b1, b2 = BETAS
        bc1, bc2 = 1.0 - b1 ** self.t, 1.0 - b2 ** self.t
        with torch.no_grad():
            for p, m, v, decay in zip(self.heads.params, self.m, self.v, self.decay):
                shape = (-1,) + (1,) * (p.ndim - 1)
                lr = (scale * self.lrs).view(shape)
                if decay:
                    p.mul_(1.0 - lr * self.wds.view(shape))
                m.mul_(b1).add_(p.grad, alpha=1.0 - b1)
                v.mul_(b2).addcmul_(p.grad, p.grad, value=1.0 - b2)
                denom = (v.sqrt() / math.sqrt(bc2)).add_(ADAM_EPS)
                p.sub_(lr / bc1 * m / denom)
                p.grad = None


def lr_scale(step: int, steps_per_epoch: int, epochs: int, warmup_epochs: int) -> float:
    """Linear warm-up then half-cycle cosine to 0, per step (MAE's ``adjust_learning_rate``)."""
    epoch = step / steps_per_epoch
    if epoch < warmup_epochs:
        return epoch / warmup_epochs
    return 0.5 * (1.0 + math.cos(math.pi * (epoch - warmup_epochs) / max(1e-12, epochs - warmup_epochs)))


@dataclass
class TrainOutcome:
    heads: StackedHeads
    loss_by_epoch: list[list[float]]  # (epochs, G)
    steps_per_epoch: int
    batch_size: int


def train_heads(fetch: Fetch, rows: np.ndarray, y: np.ndarray, init: HeadInit, gen: torch.Generator,
                lrs: list[float], wds: list[float], epochs: int, warmup_epochs: int, batch_size: int,
                device: torch.device, advance: Advance) -> TrainOutcome:
    """Train one head per (lr, wd) pair on training ``rows`` (indices into the token source).

    Batches are drawn without replacement from ``randperm(len(rows), generator=gen)`` each
    epoch, ``drop_last`` (MAE's loader), so every step has the full batch (BatchNorm needs >= 2
    rows); ``batch_size`` is clipped to the number of rows. Loss: mean cross-entropy.
    """
    heads = StackedHeads(init, len(lrs), device)
    opt = StackedAdamW(heads, torch.tensor(lrs, device=device), torch.tensor(wds, device=device))
    n = len(rows)
    bs = min(batch_size, n)
    steps = max(1, n // bs)
    y_t = torch.from_numpy(y).to(device)
    rows_t = torch.from_numpy(rows)
    losses: list[list[float]] = []
    step = 0
    for _ in range(epochs):
        order = torch.randperm(n, generator=gen)
        total = torch.zeros(len(lrs), device=device)
        for s in range(steps):
            idx = order[s * bs:(s + 1) * bs]
            x = fetch(rows_t[idx].numpy())
            out = heads.logits(x, train=True)  # (G, B, C)
            target = y_t[rows_t[idx].to(device)]
            per_head = torch.nn.functional.cross_entropy(
                out.reshape(-1, out.shape[-1]), target.repeat(out.shape[0]), reduction="none"
            ).view(out.shape[0], -1).mean(dim=1)
            per_head.sum().backward()  # heads share no parameters: the sum's gradient is each head's own
            opt.step(lr_scale(step, steps, epochs, warmup_epochs))
            total += per_head.detach()
            step += 1
        losses.append((total / steps).tolist())
        advance(1)
    return TrainOutcome(heads, losses, steps, bs)


def predict(heads: StackedHeads, fetch: Fetch, rows: np.ndarray, batch_size: int) -> np.ndarray:
    """Predicted classes (G, len(rows)) int64, BatchNorm on its running statistics."""
    out = []
    with torch.no_grad():
        for start in range(0, len(rows), batch_size):
            x = fetch(rows[start:start + batch_size])
            out.append(heads.logits(x, train=False).argmax(dim=-1).cpu())
    if not out:
        return np.zeros((heads.queries.shape[0], 0), dtype=np.int64)
    return torch.cat(out, dim=1).numpy().astype(np.int64)
