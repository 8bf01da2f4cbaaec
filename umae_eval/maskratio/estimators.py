"""Distances between masked views of two images: the named estimators of the mask-ratio sweep.

The paper (Sec. 4.2) measures "the average l2 distance between every pair of patches" of two
masked images; that sentence admits several estimators. Each is implemented here by name, with
its formula. Notation for one pair of images ``(a, b)`` cut into ``L`` patches ``a_i, b_i``
(pixels in ``[0, 1]``, each patch a vector of ``p*p*3`` values), and ``K`` independent MAE mask
draws ``k = 1..K``: ``V_a^k`` and ``V_b^k`` are the visible index sets of the two views (each of
size ``n = int(L (1 - rho))``), drawn independently; the "shared" mask of draw ``k`` is ``V_a^k``.

``all-pairs``   (the text's literal reading; each view with its own mask)
    ``d_k = 1/n^2 * sum_{i in V_a^k} sum_{j in V_b^k} ||a_i - b_j||_2``; value = mean over k.
    Its expectation is ``1/L^2 sum_{i,j} ||a_i - b_j||`` at *every* rho (the visible sets are
    uniform random subsets), so only its noise changes with rho.
``aligned``     (one shared mask, patches compared at the same positions)
    ``d_k = 1/n * sum_{i in V_a^k} ||a_i - b_i||_2``; value = mean over k. Also unbiased for the
    full-image mean patch distance at every rho.
``closest-view`` (how close the two images' nearest views come)
    value = ``min_k d_k`` of ``aligned``: with few visible patches some draw lands on patches
    where the two images agree, so this falls with rho at a speed set by how much the images
    share; it depends on K (more draws, closer views).
``masked-image`` (the masked images as vectors, masked patches zeroed)
    ``d_k = ||a * M_a^k - b * M_b^k||_2`` over all ``H*W*3`` values
    ``= sqrt( sum_{i in V_a & V_b} ||a_i - b_i||^2 + sum_{i in V_a \\ V_b} ||a_i||^2
    + sum_{i in V_b \\ V_a} ||b_i||^2 )``; value = mean over k.
``shared-masked-image`` (both images under one shared mask, masked patches zeroed)
    ``d_k = sqrt( sum_{i in V^k} ||a_i - b_i||^2 )``; value = mean over k. Shrinks like
    ``sqrt(1 - rho)`` for every pair, so only its curvature can separate intra from inter.

All functions take per-pair statistics computed once (:func:`patch_pair_stats`) and boolean
keep masks of shape ``(P, K, L)``, and return ``(P, K)`` per-draw distances; :func:`reduce_draws`
turns them into one value per pair (mean over K, or min over K for ``closest-view``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor

__all__ = [
    "PIXEL_ESTIMATORS",
    "FEATURE_ESTIMATORS",
    "FEATURE_METRICS",
    "EstimatorInfo",
    "PatchPairStats",
    "patch_pair_stats",
    "all_pairs_distance",
    "aligned_distance",
    "masked_image_distance",
    "shared_masked_image_distance",
    "pixel_view_distances",
    "reduce_draws",
    "feature_distance",
]


@dataclass(frozen=True)
class EstimatorInfo:
    """What an estimator computes, as text for the docs, the report and results.json."""

    name: str
    formula: str
    views: str  # how K mask draws are used
    masks: Literal["own", "shared"]
    reduce: Literal["mean", "min"]


PIXEL_ESTIMATORS: dict[str, EstimatorInfo] = {
    "all-pairs": EstimatorInfo(
        "all-pairs",
        "d_k = 1/n^2 sum_{i in V_a^k} sum_{j in V_b^k} ||a_i - b_j||_2 (each view its own mask)",
        "mean of d_k over the K draws", "own", "mean"),
    "aligned": EstimatorInfo(
        "aligned",
        "d_k = 1/n sum_{i in V^k} ||a_i - b_i||_2 (one shared mask V^k)",
        "mean of d_k over the K draws", "shared", "mean"),
    "closest-view": EstimatorInfo(
        "closest-view",
        "min_k of the aligned d_k = 1/n sum_{i in V^k} ||a_i - b_i||_2",
        "minimum of d_k over the K draws (depends on K)", "shared", "min"),
    "masked-image": EstimatorInfo(
        "masked-image",
        "d_k = ||a * M_a^k - b * M_b^k||_2 over all pixels, masked patches set to 0 (own masks)",
        "mean of d_k over the K draws", "own", "mean"),
    "shared-masked-image": EstimatorInfo(
        "shared-masked-image",
        "d_k = ||(a - b) * M^k||_2 = sqrt(sum_{i in V^k} ||a_i - b_i||^2) (one shared mask, masked = 0)",
        "mean of d_k over the K draws", "shared", "mean"),
}

#: Feature space (with a checkpoint): f(.) is the encoder's pooled feature of a masked view,
#: computed from the visible patches only; ``dist`` is l2 or cosine distance.
FEATURE_ESTIMATORS: dict[str, EstimatorInfo] = {
    "own-masks": EstimatorInfo(
        "own-masks", "d_k = dist(f(a, V_a^k), f(b, V_b^k)) (each view its own mask)",
        "mean of d_k over the K draws", "own", "mean"),
    "shared-mask": EstimatorInfo(
        "shared-mask", "d_k = dist(f(a, V^k), f(b, V^k)) (one shared mask)",
        "mean of d_k over the K draws", "shared", "mean"),
    "closest-view": EstimatorInfo(
        "closest-view", "min_k dist(f(a, V^k), f(b, V^k))",
        "minimum of d_k over the K draws (depends on K)", "shared", "min"),
}

FEATURE_METRICS: tuple[str, ...] = ("l2", "cosine")


@dataclass
class PatchPairStats:
    """Per-pair patch statistics that every pixel estimator is a masked reduction of.

    Attributes
    ----------
    cross : Tensor, shape (P, L, L)
        ``cross[p, i, j] = ||a_i - b_j||_2``.
    sq_diff : Tensor, shape (P, L)
        ``||a_i - b_i||_2^2`` (computed directly, not from ``cross``, for precision).
    sq_a, sq_b : Tensor, shape (P, L)
        ``||a_i||_2^2`` and ``||b_i||_2^2``.
    """

    cross: Tensor
    sq_diff: Tensor
    sq_a: Tensor
    sq_b: Tensor

    @property
    def aligned(self) -> Tensor:
        """``||a_i - b_i||_2``, shape (P, L)."""
        return self.sq_diff.sqrt()


def patch_pair_stats(a: Tensor, b: Tensor, *, cross: bool = True) -> PatchPairStats:
    """Statistics of pairs of patchified images, computed once and reused for every rho.

    Parameters
    ----------
    a, b : Tensor, float, shape (P, L, d)
        Patches of the first and second image of each pair (:func:`~umae_eval.maskratio.masks.patchify`).
    cross : bool
        Compute the ``(P, L, L)`` matrix (needed only by ``all-pairs``); otherwise an empty tensor.

    Returns
    -------
    PatchPairStats
    """
    if a.shape != b.shape or a.ndim != 3:
        raise ValueError(f"a and b must both be (P, L, d), got {tuple(a.shape)} and {tuple(b.shape)}")
    # The exact (non-matmul) Euclidean mode: no cancellation error, so the all-pairs estimator
    # matches a direct loop to float precision.
    cross_d = (torch.cdist(a, b, compute_mode="donot_use_mm_for_euclid_dist") if cross
               else a.new_empty((0,)))
    return PatchPairStats(
        cross=cross_d,
        sq_diff=(a - b).pow(2).sum(-1),
        sq_a=a.pow(2).sum(-1),
        sq_b=b.pow(2).sum(-1),
    )


def _weights(keep: Tensor, like: Tensor) -> Tensor:
    """Masks as 0/1 weights of ``like``'s dtype and device (a no-op for float masks already there)."""
    if keep.ndim != 3:
        raise ValueError(f"keep masks must be (P, K, L), got {tuple(keep.shape)}")
    return keep.to(dtype=like.dtype, device=like.device)


def _masked_sum(w: Tensor, per_patch: Tensor) -> Tensor:
    """``sum_i w[p, k, i] * per_patch[p, i]`` as a batched mat-vec: (P, K, L) x (P, L) -> (P, K)."""
    return torch.bmm(w, per_patch.unsqueeze(-1)).squeeze(-1)


def all_pairs_distance(stats: PatchPairStats, keep_a: Tensor, keep_b: Tensor) -> Tensor:
    """``all-pairs``: mean l2 over every pair of visible patches, each view with its own mask.

    ``d[p, k] = sum_{i,j} keep_a[p,k,i] * cross[p,i,j] * keep_b[p,k,j] / (n_a * n_b)``.

    Parameters
    ----------
    stats : PatchPairStats
        With ``cross`` of shape (P, L, L).
    keep_a, keep_b : Tensor, bool or 0/1 float, shape (P, K, L)
        ``K`` may stack several draws and ratios.

    Returns
    -------
    Tensor, shape (P, K)
    """
    if stats.cross.ndim != 3:
        raise ValueError("all-pairs needs patch_pair_stats(..., cross=True)")
    wa, wb = _weights(keep_a, stats.cross), _weights(keep_b, stats.cross)
    total = (torch.bmm(wa, stats.cross) * wb).sum(-1)
    return total / (wa.sum(-1) * wb.sum(-1))


def aligned_distance(stats: PatchPairStats, keep: Tensor) -> Tensor:
    """``aligned``: mean l2 between patches at the same visible positions of one shared mask.

    ``d[p, k] = sum_i keep[p,k,i] * ||a_i - b_i|| / n``.

    Parameters
    ----------
    keep : Tensor, bool or 0/1 float, shape (P, K, L)

    Returns
    -------
    Tensor, shape (P, K)
    """
    w = _weights(keep, stats.sq_diff)
    return _masked_sum(w, stats.aligned) / w.sum(-1)


def masked_image_distance(stats: PatchPairStats, keep_a: Tensor, keep_b: Tensor) -> Tensor:
    """``masked-image``: l2 between the two images with their own masks applied (masked = 0).

    ``d^2 = sum_i [ka kb ||a_i - b_i||^2 + ka (1 - kb) ||a_i||^2 + (1 - ka) kb ||b_i||^2]``,
    computed as ``ka.||a||^2 + kb.||b||^2 + (ka kb).(||a - b||^2 - ||a||^2 - ||b||^2)``
    (three batched mat-vecs), clamped at 0 against rounding.

    Parameters
    ----------
    keep_a, keep_b : Tensor, bool or 0/1 float, shape (P, K, L)

    Returns
    -------
    Tensor, shape (P, K)
    """
    wa, wb = _weights(keep_a, stats.sq_diff), _weights(keep_b, stats.sq_diff)
    both = stats.sq_diff - stats.sq_a - stats.sq_b  # = -2 a_i . b_i
    sq = _masked_sum(wa, stats.sq_a) + _masked_sum(wb, stats.sq_b) + _masked_sum(wa * wb, both)
    return sq.clamp_min(0).sqrt()


def shared_masked_image_distance(stats: PatchPairStats, keep: Tensor) -> Tensor:
    """``shared-masked-image``: l2 between the two images under one shared mask (masked = 0).

    ``d[p, k] = sqrt( sum_i keep[p,k,i] * ||a_i - b_i||^2 )``.

    Parameters
    ----------
    keep : Tensor, bool or 0/1 float, shape (P, K, L)

    Returns
    -------
    Tensor, shape (P, K)
    """
    return _masked_sum(_weights(keep, stats.sq_diff), stats.sq_diff).clamp_min(0).sqrt()


def pixel_view_distances(name: str, stats: PatchPairStats, keep_a: Tensor, keep_b: Tensor) -> Tensor:
    """Per-draw distances ``(P, K)`` of the pixel estimator ``name``.

    ``keep_a`` is the first view's mask and the shared mask; ``keep_b`` the second view's own mask.
    """
    if name == "all-pairs":
        return all_pairs_distance(stats, keep_a, keep_b)
    if name in ("aligned", "closest-view"):
        return aligned_distance(stats, keep_a)
    if name == "masked-image":
        return masked_image_distance(stats, keep_a, keep_b)
    if name == "shared-masked-image":
        return shared_masked_image_distance(stats, keep_a)
    raise ValueError(f"unknown pixel estimator {name!r}; choose from {', '.join(PIXEL_ESTIMATORS)}")


def reduce_draws(per_draw: Tensor, reduce: Literal["mean", "min"]) -> Tensor:
    """One value per pair from ``(..., K)`` per-draw distances: mean or min over the last axis (K)."""
    if reduce == "mean":
        return per_draw.mean(-1)
    if reduce == "min":
        return per_draw.min(-1).values
    raise ValueError(f"unknown reduction {reduce!r}")


def feature_distance(fa: Tensor, fb: Tensor, metric: str) -> Tensor:
    """Row-wise distance between features.

    ``l2``: ``||fa - fb||_2``; ``cosine``: ``1 - fa.fb / (||fa|| ||fb||)`` (norms floored at 1e-12).

    Parameters
    ----------
    fa, fb : Tensor, shape (..., D)

    Returns
    -------
    Tensor, shape (...)
    """
    if metric == "l2":
        return (fa - fb).pow(2).sum(-1).sqrt()
    if metric == "cosine":
        return 1.0 - torch.nn.functional.cosine_similarity(fa, fb, dim=-1, eps=1e-12)
    raise ValueError(f"unknown feature metric {metric!r}; choose from {', '.join(FEATURE_METRICS)}")
