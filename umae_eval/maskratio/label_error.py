"""The mask-induced label error alpha of Theorem 4.1, measured with a nearest-class-mean rule.

The paper defines ``alpha = E_{x, x1} 1[y(x1) != y(x)]``: how often a masked view ``x1`` of an
image ``x`` "belongs" to another class. We make ``y(x1)`` concrete as the class whose mean is
nearest to the view (squared l2, ties to the lowest class index):

pixel space
    ``mu_c = mean of the unmasked train images of class c`` (pixels in [0, 1], per patch);
    ``y(x1) = argmin_c sum_{i in V} ||x_i - mu_{c,i}||^2`` over the view's visible patches ``V``.
feature space
    ``W_c = mean of f(x1')`` over masked views (same rho, one per image) of train images of
    class c, the paper's ``W_y = E_{x1|y} f(x1)``; ``y(x1) = argmin_c ||f(x1) - W_c||^2``.

``alpha(rho)`` is the fraction of (test image, view) pairs with ``y(x1) != y(x)``. At ``rho = 0``
it is the plain nearest-class-mean error, which in pixel space is high (raw pixels separate
CIFAR-10 classes poorly); what matters is how it grows with rho.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["class_means", "patch_class_distances", "view_errors", "pixel_view_errors", "nearest_mean_errors"]


def class_means(values: Tensor, labels: Tensor, n_classes: int) -> Tensor:
    """Per-class mean of ``values`` along the first axis.

    Parameters
    ----------
    values : Tensor, shape (N, ...)
    labels : Tensor, int64, shape (N,), in ``[0, n_classes)``
    n_classes : int

    Returns
    -------
    Tensor, float64, shape (n_classes, ...)
        NaN for a class with no sample.
    """
    flat = values.reshape(values.shape[0], -1).to(torch.float64)
    sums = torch.zeros((n_classes, flat.shape[1]), dtype=torch.float64, device=flat.device)
    sums.index_add_(0, labels.to(flat.device), flat)
    counts = torch.bincount(labels.to(flat.device), minlength=n_classes).to(torch.float64)
    means = sums / counts[:, None]  # 0/0 -> NaN for empty classes
    return means.reshape((n_classes, *values.shape[1:]))


def patch_class_distances(patches: Tensor, means: Tensor) -> Tensor:
    """Squared l2 between each patch and the same patch of every class mean.

    Parameters
    ----------
    patches : Tensor, float, shape (N, L, d)
    means : Tensor, shape (C, L, d); NaN rows (absent classes) give ``inf``.

    Returns
    -------
    Tensor, shape (N, C, L)
        ``||x_{n,i} - mu_{c,i}||^2``; computed once per image and reused for every mask.
    """
    mu = means.to(device=patches.device, dtype=patches.dtype)
    per_patch = (patches[:, None] - mu[None]).pow(2).sum(-1)
    return torch.nan_to_num(per_patch, nan=float("inf"))


def view_errors(per_patch: Tensor, labels: Tensor, keep: Tensor) -> Tensor:
    """Nearest-class-mean errors of masked views from :func:`patch_class_distances`.

    ``score[n, k, c] = sum_i keep[n, k, i] * per_patch[n, c, i]``;
    ``error[n, k] = argmin_c score[n, k, c] != labels[n]``.

    Parameters
    ----------
    per_patch : Tensor, shape (N, C, L)
    labels : Tensor, int64, shape (N,)
    keep : Tensor, bool or 0/1 float, shape (N, K, L)

    Returns
    -------
    Tensor, bool, shape (N, K)
    """
    w = keep.to(dtype=per_patch.dtype, device=per_patch.device)
    # 0 * inf would be NaN: an absent class must score inf on every view, so mask it after.
    finite = torch.where(torch.isinf(per_patch), torch.zeros_like(per_patch), per_patch)
    score = torch.bmm(w, finite.transpose(1, 2))  # (N, K, C)
    score = score.masked_fill(torch.isinf(per_patch).any(-1)[:, None, :], float("inf"))
    return score.argmin(-1) != labels.to(per_patch.device)[:, None]


def pixel_view_errors(patches: Tensor, labels: Tensor, means: Tensor, keep: Tensor) -> Tensor:
    """Which masked views sit nearest to another class's mean, compared on visible patches.

    ``score[n, k, c] = sum_i keep[n, k, i] * ||x_{n,i} - mu_{c,i}||^2``;
    ``error[n, k] = argmin_c score[n, k, c] != labels[n]`` (ties to the lowest class index).

    Parameters
    ----------
    patches : Tensor, float, shape (N, L, d)
        Test images' patches, pixels in [0, 1].
    labels : Tensor, int64, shape (N,)
    means : Tensor, shape (C, L, d)
        Class means of the unmasked train images' patches (:func:`class_means`).
    keep : Tensor, bool, shape (N, K, L)
        Visible patches of K views per image.

    Returns
    -------
    Tensor, bool, shape (N, K)
    """
    return view_errors(patch_class_distances(patches, means), labels, keep)


def nearest_mean_errors(features: Tensor, labels: Tensor, means: Tensor) -> Tensor:
    """Nearest-class-mean errors of features: ``argmin_c ||f - W_c||^2 != label``.

    Parameters
    ----------
    features : Tensor, shape (M, D)
    labels : Tensor, int64, shape (M,)
    means : Tensor, shape (C, D)
        NaN rows (classes never seen) are never chosen.

    Returns
    -------
    Tensor, bool, shape (M,)
    """
    f = features.to(torch.float64)
    w = means.to(device=f.device, dtype=torch.float64)
    dist = torch.cdist(f, torch.nan_to_num(w), compute_mode="donot_use_mm_for_euclid_dist")
    dist[:, torch.isnan(w).any(-1)] = float("inf")
    return dist.argmin(-1) != labels.to(f.device)

