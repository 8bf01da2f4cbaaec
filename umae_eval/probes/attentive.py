r"""Attentive probe: an efficient-probing (EP) cross-attention head trained on frozen tokens.

Variant: **EP**, multi-query cross-attention without key/query/output projections (Psomas et
al., "Attention, Please! Revisiting Attentive Probing Through the Lens of Efficiency", ICLR 2026,
arXiv 2506.10178; code ``billpsomas/efficient-probing``), chosen over MHCA with one learned
query (V-JEPA, AIM, CAE) because it is up to 10x faster and more accurate in that study, and
cost matters on CPU. Head (see :mod:`umae_eval.probes.attentive_head` for the
formula): ``Q`` learned queries pool the ``T`` tokens of an image, ``W_v`` (D x D) fills ``D/Q``
channels per query, then ``BatchNorm1d(D, affine=False, eps=1e-6)`` and ``Linear(D, C)``. EP's
published setting is ``Q = 32``, ``d_out = 1`` (so the pooled vector has width D), no biases in
the pooling; umae keeps those.

Training recipe (umae's; EP trains 90 epochs with LARS, base lr 0.1, batch 4096 on ImageNet,
which on a few thousand cached images would be one step per epoch): AdamW (betas 0.9/0.999,
eps 1e-8; weight decay on ``W_v`` and the classifier weight only), batch 256 (``drop_last``),
linear warm-up for ``warmup_epochs`` then cosine to 0 per step, mean cross-entropy, no
augmentation (the tokens are those of the un-augmented images). Learning rate and weight decay
are chosen on a seeded stratified validation split carved from train (``val_fraction``, the
same split as the 'fast' linear probe: :func:`~umae_eval.probes.linear.stratified_split`) by
the final-epoch validation accuracy (never by test accuracy, never by best epoch); ties go to
the larger weight decay, then the smaller learning rate. With ``refit=True`` (default, as the
'fast' linear probe) a fresh head with the chosen pair is then trained on all of train and
scored on test; with ``refit=False`` the grid head itself (trained on the fit split) is scored.

Tokens: an array or tensor ``(N, T, D)`` (float16 or float32; any token layout: patch tokens
of one block, with or without [CLS]) or a callable ``tokens(indices) -> (len(indices), T, D)``
that the probe calls once per batch, so a caller whose tokens do not fit in memory can re-run
the frozen encoder on those images. Memory budget: cached float16 tokens take
``N * T * D * 2`` bytes (:func:`token_cache_bytes`; CIFAR-10 train at 64 + 1 tokens of 96
dims: 0.62 GB; ImageNet-1k with ViT-B/16: 387 GB). umae caches when that is at most
:data:`DEFAULT_TOKEN_CACHE_BYTES` (4 GiB) and passes a callable beyond it; the callable is
called once per batch (``N // batch_size`` times per epoch, the grid's heads sharing each
batch): ``epochs`` passes over the fit split for the grid and ``epochs`` over train for the
refit, plus one pass over validation, train and test for predictions, and one call with one
index to learn ``(T, D)``. Working memory beside the tokens: one float32 batch (``B T D``) and the grid's
attention (``G B Q (T + D)`` floats, G = grid size), about 0.1 GB at B=256, T=64, D=96, G=6.

Seeded and deterministic on CPU: one ``torch.Generator`` seeded with ``seed`` draws the initial
weights (shared by every grid point) and one batch order per epoch; the validation split uses
the same ``seed``. Two runs with the same seed and thread count give the same bits; another
thread count may change the last bits of sums (BLAS blocking), so rarely a prediction.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any, Union

import numpy as np
import torch

from umae_eval.errors import UmaeError
from umae_eval.metrics._inputs import ArrayLike, accuracy_percent, check_labels, check_positive, resolve_num_classes
from umae_eval.probes.attentive_head import HeadInit, predict, train_heads
from umae_eval.probes.linear import _check_int, _resolve_device, stratified_split
from umae_eval.probes.result import ProbeResult
from umae_eval.progress import ProgressFactory, null_progress

__all__ = [
    "DEFAULT_LEARNING_RATES",
    "DEFAULT_TOKEN_CACHE_BYTES",
    "DEFAULT_WEIGHT_DECAYS",
    "TokenSource",
    "attentive_probe",
    "token_cache_bytes",
]

#: An (N, T, D) array/tensor, or ``f(indices: int64 ndarray) -> (len(indices), T, D)``.
TokenSource = Union[np.ndarray, torch.Tensor, Callable[[np.ndarray], ArrayLike]]

#: AdamW peak learning rates tried (grid with :data:`DEFAULT_WEIGHT_DECAYS`). On the demo MAE
#: encoder's tokens (3,000 train images, 30 epochs = 330 steps) 1e-3 was the worst of
#: {1e-3, ..., 3e-2} on validation (44.7 vs 52-55%), so the grid starts at 3e-3.
DEFAULT_LEARNING_RATES: tuple[float, ...] = (3e-3, 1e-2, 3e-2)
#: AdamW (decoupled) weight decays tried.
DEFAULT_WEIGHT_DECAYS: tuple[float, ...] = (1e-1, 1e-3)
#: Largest float16 token cache umae builds before switching to re-running the encoder.
DEFAULT_TOKEN_CACHE_BYTES = 4 * 2**30


def token_cache_bytes(n: int, t: int, d: int, itemsize: int = 2) -> int:
    """Bytes of an ``(n, t, d)`` token cache (``itemsize`` 2 for float16)."""
    return int(n) * int(t) * int(d) * int(itemsize)


# ------------------------------------------------------------------------------ token sources
class _Tokens:
    """A checked token source: ``fetch(indices) -> float32 (len, T, D)`` on ``device``."""

    def __init__(self, source: TokenSource, n: int, name: str, device: torch.device) -> None:
        self.name, self.device, self.n = name, device, n
        if isinstance(source, (np.ndarray, torch.Tensor)):
            if source.ndim != 3:
                raise UmaeError(f"{name} must be 3-D (N images, T tokens, D dims), got shape {tuple(source.shape)}")
            floating = source.is_floating_point() if isinstance(source, torch.Tensor) \
                else np.issubdtype(source.dtype, np.floating)
            if not floating:
                raise UmaeError(f"{name} must hold floating-point tokens (float16 or float32), got {source.dtype}")
            if source.shape[0] != n:
                raise UmaeError(f"{name} has {source.shape[0]} rows but its labels have {n} entries")
            self.array: TokenSource | None = source
            self.call = None
            self.shape = (int(source.shape[1]), int(source.shape[2]))
        elif callable(source):
            self.array, self.call = None, source
            self.shape = (0, 0)
            first = self._get(np.zeros(1, dtype=np.int64), check_shape=False)
            self.shape = (int(first.shape[1]), int(first.shape[2]))
        else:
            raise UmaeError(f"{name} must be an (N, T, D) array or tensor, or a callable "
                            f"tokens(indices) -> (len(indices), T, D); got {type(source).__name__}")
        if min(self.shape) < 1:
            raise UmaeError(f"{name} needs at least one token of at least one dimension, got (T, D) = {self.shape}")

    def _get(self, idx: np.ndarray, check_shape: bool = True) -> torch.Tensor:
        if self.array is not None:
            raw = self.array[torch.from_numpy(idx)] if isinstance(self.array, torch.Tensor) else self.array[idx]
        else:
            raw = self.call(idx)
            if not isinstance(raw, (np.ndarray, torch.Tensor)) or raw.ndim != 3:
                got = tuple(raw.shape) if hasattr(raw, "shape") else type(raw).__name__
                raise UmaeError(f"{self.name}(indices) must return an array (len(indices), T, D), got {got}")
            if check_shape and (raw.shape[0] != len(idx) or tuple(raw.shape[1:]) != self.shape):
                raise UmaeError(f"{self.name}(indices) returned shape {tuple(raw.shape)} for {len(idx)} indices; "
                                f"expected ({len(idx)}, {self.shape[0]}, {self.shape[1]})")
        t = raw.detach() if isinstance(raw, torch.Tensor) else torch.from_numpy(np.ascontiguousarray(raw))
        t = t.to(device=self.device, dtype=torch.float32)
        if not bool(torch.isfinite(t).all()):
            raise UmaeError(f"{self.name} contains NaN or infinite values (among rows {int(idx.min())}.."
                            f"{int(idx.max())}); check the encoder output")
        return t

    def __call__(self, idx: np.ndarray) -> torch.Tensor:
        return self._get(np.asarray(idx, dtype=np.int64))


def _check_grid(values: Sequence[float], name: str) -> list[float]:
    if isinstance(values, (int, float)) or len(values) == 0:
        raise UmaeError(f"{name} must be a non-empty sequence of numbers > 0, got {values!r}")
    return sorted({check_positive(float(v), f"each of {name}") for v in values})


# ------------------------------------------------------------------------------ public
def attentive_probe(train_tokens: TokenSource, y_train: ArrayLike, test_tokens: TokenSource, y_test: ArrayLike,
                    *, seed: int = 0, device: str | torch.device = "cpu", num_queries: int = 32,
                    epochs: int = 30, warmup_epochs: int = 3, batch_size: int = 256,
                    learning_rates: Sequence[float] = DEFAULT_LEARNING_RATES,
                    weight_decays: Sequence[float] = DEFAULT_WEIGHT_DECAYS, val_fraction: float = 0.1,
                    refit: bool = True, num_classes: int | None = None,
                    progress: ProgressFactory = null_progress) -> ProbeResult:
    r"""Train an EP attentive head on frozen tokens and report its test accuracy.

    See the module docstring for the head, the recipe, the memory budget and the sources.

    Parameters
    ----------
    train_tokens : ndarray or Tensor (N, T, D), or callable
        float16 / float32 tokens of the training images, or ``f(indices) -> (len, T, D)``.
    y_train : ndarray or Tensor, shape (N,)
    test_tokens : ndarray or Tensor (M, T, D), or callable
    y_test : ndarray or Tensor, shape (M,)
    seed : int, default 0
        Seeds the validation split, the initial weights and the batch order.
    device : str or torch.device, default 'cpu'
    num_queries : int, default 32
        EP's ``Q``; must divide ``D``.
    epochs, warmup_epochs : int, default 30, 3
        Schedule of every fit (grid and refit); cosine to 0 after a linear warm-up.
    batch_size : int, default 256
        Clipped to the number of training rows of a fit; the last partial batch is dropped.
    learning_rates : sequence of float, default (3e-3, 1e-2, 3e-2)
        AdamW peak learning rates of the grid.
    weight_decays : sequence of float, default (1e-1, 1e-3)
        AdamW weight decays of the grid (on ``W_v`` and the classifier weight).
    val_fraction : float, default 0.1
        Share of each class held out to choose (lr, wd); 0 allowed with a one-point grid.
    refit : bool, default True
        Retrain the chosen pair on all of train (True) or score the grid head (False).
    num_classes : int, optional
        Default ``max(y_train, y_test) + 1``.
    progress : ProgressFactory, default null_progress

    Returns
    -------
    ProbeResult
        ``method='attentive'``, test ``accuracy`` in percent; ``settings`` hold every
        hyper-parameter and split size; ``extras`` hold ``chosen_learning_rate``,
        ``chosen_weight_decay``, ``val_curve`` (per grid point: val accuracy, final train loss),
        ``loss_by_epoch`` of the scored head, ``train_accuracy``, ``seconds``;
        ``test_predictions['attentive_accuracy']`` (M,) int64.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, 120); tok = rng.standard_normal((120, 8, 4)).astype(np.float32)
    >>> tok[np.arange(120), 3, 0] += 4.0 * (2 * y - 1)   # token 3 carries the class
    >>> attentive_probe(tok[:80], y[:80], tok[80:], y[80:], num_queries=2, batch_size=16).accuracy > 80
    True
    """
    t0 = time.perf_counter()
    seed = _check_int(seed, "seed", 0)
    num_queries = _check_int(num_queries, "num_queries", 1)
    epochs = _check_int(epochs, "epochs", 1)
    warmup_epochs = _check_int(warmup_epochs, "warmup_epochs", 0)
    if warmup_epochs > epochs:
        raise UmaeError(f"warmup_epochs ({warmup_epochs}) must not exceed epochs ({epochs})")
    batch_size = _check_int(batch_size, "batch_size", 2)
    lrs = _check_grid(learning_rates, "learning_rates")
    wds = _check_grid(weight_decays, "weight_decays")
    # ties -> larger weight decay, then smaller learning rate: the first maximum in this order
    grid = [(lr, wd) for wd in sorted(wds, reverse=True) for lr in lrs]
    if not (0.0 <= val_fraction < 1.0):
        raise UmaeError(f"val_fraction must lie in [0, 1), got {val_fraction}")
    if val_fraction == 0.0 and len(grid) > 1:
        raise UmaeError(f"val_fraction=0 leaves no validation split to choose among {len(grid)} "
                        "(learning rate, weight decay) pairs; pass one of each or val_fraction > 0")
    dev = _resolve_device(device)
    n = len(y_train) if hasattr(y_train, "__len__") else -1
    ytr = check_labels(y_train, n, "y_train", "train_tokens")
    yte = check_labels(y_test, len(y_test) if hasattr(y_test, "__len__") else -1, "y_test", "test_tokens")
    c = resolve_num_classes(num_classes, ytr, yte)
    if len(ytr) < 2:
        raise UmaeError(f"the attentive probe needs at least 2 training images (BatchNorm), got {len(ytr)}")
    train = _Tokens(train_tokens, len(ytr), "train_tokens", dev)
    test = _Tokens(test_tokens, len(yte), "test_tokens", dev)
    t, d = train.shape
    if test.shape[1] != d:
        raise UmaeError(f"train_tokens and test_tokens must have the same token dimension, got {d} and {test.shape[1]}")
    if d % num_queries:
        raise UmaeError(f"num_queries ({num_queries}) must divide the token dimension {d} "
                        f"(EP gives each query D / Q channels); try {_divisor_near(d, num_queries)}")

    fit_idx, val_idx = (stratified_split(ytr, val_fraction, seed) if len(grid) > 1
                        else (np.arange(len(ytr)), np.arange(0)))
    if len(grid) > 1 and len(val_idx) == 0:
        raise UmaeError(f"no class has 2 or more training images, so no validation split can be made to "
                        f"choose among {len(grid)} (learning rate, weight decay) pairs; pass one of each")
    if len(fit_idx) < 2:
        raise UmaeError(f"the fit split has {len(fit_idx)} image(s); the attentive probe needs at least 2")
    settings: dict[str, Any] = {
        "variant": "EP (efficient probing, Psomas et al. ICLR 2026): multi-query cross-attention, "
                   "no key/query/output projections, value projection D x D split over the queries",
        "head": "EP pooling -> BatchNorm1d(affine=False, eps=1e-6) -> Linear(D, C)",
        "num_queries": num_queries, "d_out": 1, "attention_scale": f"1/sqrt({d})",
        "init": "queries 0.02*randn, W_v U(-1/sqrt(D), 1/sqrt(D)), classifier 0.01*randn, bias 0",
        "optimizer": "AdamW (betas 0.9, 0.999; eps 1e-8; weight decay on W_v and classifier weight only)",
        "lr_schedule": "linear warm-up, half-cycle cosine to 0, per step",
        "epochs": epochs, "warmup_epochs": warmup_epochs, "batch_size": batch_size, "drop_last": True,
        "learning_rates": lrs, "weight_decays": sorted(wds, reverse=True),
        "val_fraction": float(val_fraction), "refit": bool(refit),
        "selection": "max final-epoch validation accuracy, ties -> larger weight decay, then smaller lr",
        "seed": seed, "device": str(dev), "num_classes": c, "num_train": len(ytr), "num_test": len(yte),
        "num_fit": int(len(fit_idx)), "num_val": int(len(val_idx)), "tokens": t, "dim": d,
        "token_source": "array" if train.array is not None else "callable (encoder re-run per batch)",
        "augmentation": "none (frozen tokens of un-augmented images)",
    }
    total = epochs * (1 + int(len(grid) > 1 and refit))
    curve: list[dict[str, float]] = []
    with progress("attentive probe (EP): grid + refit epochs", total=total) as advance:
        gen = torch.Generator().manual_seed(seed)
        init = HeadInit.draw(gen, num_queries, d, c)
        grid_run = train_heads(train, fit_idx, ytr, init, gen, [p[0] for p in grid], [p[1] for p in grid],
                               epochs, warmup_epochs, batch_size, dev, advance)
        chosen = 0
        if len(grid) > 1:
            val_pred = predict(grid_run.heads, train, val_idx, batch_size)
            for g, (lr, wd) in enumerate(grid):
                curve.append({"learning_rate": lr, "weight_decay": wd,
                              "val_accuracy": accuracy_percent(val_pred[g], ytr[val_idx]),
                              "final_train_loss": grid_run.loss_by_epoch[-1][g]})
            best = max(p["val_accuracy"] for p in curve)
            chosen = next(g for g, p in enumerate(curve) if p["val_accuracy"] == best)
        lr, wd = grid[chosen]
        if len(grid) > 1 and refit:
            gen = torch.Generator().manual_seed(seed)
            init = HeadInit.draw(gen, num_queries, d, c)
            run = train_heads(train, np.arange(len(ytr)), ytr, init, gen, [lr], [wd], epochs, warmup_epochs,
                              batch_size, dev, advance)
            heads, losses, scored_rows = run.heads, [e[0] for e in run.loss_by_epoch], "all of train"
        else:
            heads = grid_run.heads.select(chosen)
            losses = [e[chosen] for e in grid_run.loss_by_epoch]
            scored_rows = "all of train" if len(grid) == 1 else "fit split (no refit)"
    pred_te = predict(heads, test, np.arange(len(yte)), batch_size)[0]
    pred_tr = predict(heads, train, np.arange(len(ytr)), batch_size)[0]
    settings["scored_head_trained_on"] = scored_rows
    extras = {"chosen_learning_rate": lr, "chosen_weight_decay": wd, "val_curve": curve,
              "loss_by_epoch": losses, "train_accuracy": accuracy_percent(pred_tr, ytr),
              "seconds": {"total": time.perf_counter() - t0}}
    return ProbeResult(method="attentive", accuracy=accuracy_percent(pred_te, yte), settings=settings,
                       extras=extras, test_predictions={"attentive_accuracy": pred_te})


def _divisor_near(d: int, q: int) -> int:
    """The divisor of ``d`` closest to ``q`` (smaller on a tie)."""
    return min((k for k in range(1, d + 1) if d % k == 0), key=lambda k: (abs(k - q), k))
