"""The mean classifier (nearest class mean), the paper's Sec. 4.1 probe.

Zhang et al. (NeurIPS 2022), following Arora et al. (ICML 2019), bound the downstream error of
the *mean classifier* ``W_y = E[f(x) | y]``, ``predict(x) = argmax_y W_y^T f(x)``: no training,
so it measures the geometry of the features directly.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch

from umae_eval.metrics._inputs import (
    ArrayLike,
    accuracy_percent,
    check_choice,
    check_probe_inputs,
)
from umae_eval.probes.blocks import read_block
from umae_eval.probes.result import ProbeResult

#: Rows per block (16,384 x 768 float64 is 96 MiB).
_BLOCK_ROWS = 16384

__all__ = ["mean_classifier", "mean_classifier_accuracy", "MeanMetric"]

MeanMetric = Literal["cosine", "euclidean"]


def mean_classifier(train_x: ArrayLike, train_y: ArrayLike, test_x: ArrayLike, test_y: ArrayLike,
                    metric: MeanMetric = "cosine", num_classes: int | None = None) -> ProbeResult:
    r"""Classify each test feature by its nearest training class mean.

    .. math::
        W_y = \frac{1}{|S_y|}\sum_{i \in S_y} f(x_i), \qquad
        \hat y_{cos}(x) = \arg\max_y \frac{W_y^\top f(x)}{\lVert W_y\rVert\,\lVert f(x)\rVert}, \qquad
        \hat y_{euc}(x) = \arg\min_y \lVert f(x) - W_y \rVert_2

    ``'cosine'`` (default) normalises features and means (the mean classifier of Arora et al.
    2019 on normalised features, Sec. 4.1 of the paper); ``'euclidean'`` is the plain nearest
    class mean. Classes with no training sample have no mean and are never predicted (they
    are listed in ``settings['classes_without_train_samples']``). Ties go to the lower class.
    Computed in float64 torch on the device of ``train_x``.

    Parameters
    ----------
    train_x : ndarray or Tensor, shape (N, D)
    train_y : ndarray or Tensor, shape (N,)
        Integer class indices in ``[0, num_classes)``.
    test_x : ndarray or Tensor, shape (M, D)
    test_y : ndarray or Tensor, shape (M,)
    metric : {'cosine', 'euclidean'}, default 'cosine'
    num_classes : int, optional
        Default ``max(train_y, test_y) + 1``.

    Returns
    -------
    ProbeResult
        ``method='mean_classifier'``, ``accuracy`` in percent, ``extras['train_accuracy']``,
        ``extras['per_class_accuracy']`` (NaN for classes absent from the test set).

    Examples
    --------
    >>> x = np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [0.1, 0.9]])
    >>> y = np.array([0, 0, 1, 1])
    >>> mean_classifier(x, y, np.array([[2.0, 0.5]]), np.array([0])).accuracy
    100.0
    """
    check_choice(metric, ("cosine", "euclidean"), "metric")
    tr, ytr, te, yte, c = check_probe_inputs(train_x, train_y, test_x, test_y, num_classes)
    # class sums and predictions in row blocks of float64: a memory-mapped float16 store of
    # ImageNet size is never copied whole (1.28M x 768 in float64 would be 7.9 GB)
    device = tr.device if isinstance(tr, torch.Tensor) else torch.device("cpu")
    d = int(tr.shape[1])
    sums = torch.zeros(c, d, dtype=torch.float64, device=device)
    for start in range(0, len(ytr), _BLOCK_ROWS):
        blk = read_block(tr, start, min(len(ytr), start + _BLOCK_ROWS), device, torch.float64)
        sums.index_add_(0, torch.from_numpy(ytr[start:start + blk.shape[0]]).to(device), blk)
    counts = torch.bincount(torch.from_numpy(ytr).to(device), minlength=c).to(torch.float64)
    present = counts > 0
    means = sums / counts.clamp_min(1.0)[:, None]

    def predict_block(x: torch.Tensor) -> torch.Tensor:
        if metric == "cosine":
            xn = x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)
            mn = means / means.norm(dim=1, keepdim=True).clamp_min(1e-12)
            score = xn @ mn.T
        else:  # -||x - m||^2 up to the per-row constant ||x||^2
            score = 2.0 * x @ means.T - means.square().sum(dim=1)[None, :]
        score[:, ~present] = -torch.inf
        return score.argmax(dim=1).cpu()

    def predict(x: ArrayLike) -> np.ndarray:
        n = int(x.shape[0])
        return torch.cat([predict_block(read_block(x, i, min(n, i + _BLOCK_ROWS), device, torch.float64))
                          for i in range(0, n, _BLOCK_ROWS)]).numpy()

    pred_te = predict(te)
    pred_tr = predict(tr)
    per_class = [accuracy_percent(pred_te[yte == k], yte[yte == k]) if np.any(yte == k) else float("nan")
                 for k in range(c)]
    return ProbeResult(
        method="mean_classifier",
        accuracy=accuracy_percent(pred_te, yte),
        settings={"metric": metric, "num_classes": c, "num_train": int(len(ytr)), "num_test": int(len(yte)),
                  "dim": d,
                  "classes_without_train_samples": [int(k) for k in np.flatnonzero(~present.cpu().numpy())]},
        extras={"train_accuracy": accuracy_percent(pred_tr, ytr), "per_class_accuracy": per_class},
        test_predictions={"mean_classifier_accuracy": np.asarray(pred_te, dtype=np.int64)},
    )


def mean_classifier_accuracy(train_x: ArrayLike, train_y: ArrayLike, test_x: ArrayLike, test_y: ArrayLike,
                             metric: MeanMetric = "cosine", num_classes: int | None = None) -> float:
    """Test accuracy (percent) of :func:`mean_classifier`; same arguments and formula."""
    return mean_classifier(train_x, train_y, test_x, test_y, metric=metric, num_classes=num_classes).accuracy
