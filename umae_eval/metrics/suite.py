"""Every representation metric of one checkpoint (or one pair of checkpoints), with bootstrap
resamples over images for each label-free metric.

:func:`representation_metrics` measures one feature set: the spectrum scalars
(:mod:`~umae_eval.metrics.scalars`), and when given, neural collapse (labels;
:mod:`~umae_eval.metrics.neural_collapse`), LiDAR over masked views and over augmented views
(``(n, q, D)`` arrays; :mod:`~umae_eval.metrics.lidar`) and the Fourier profile of patch tokens
(:mod:`~umae_eval.metrics.fourier`). :func:`pair_metrics` measures two feature sets of the same
images: CKA (biased and unbiased) and mutual kNN (:mod:`~umae_eval.metrics.cka`).

Resamples: rows drawn with replacement by :func:`umae_eval.metrics.rank_bootstrap.resample_indices`
with the given seed, so two checkpoints measured on the same images with the same seed get the
same resamples and their differences are paired (as for the accuracies and ranks). How each
metric is resampled:

- spectrum scalars: the weighted Gram matrix of the drawn rows (exactly the metric on ``X[idx]``;
  :func:`~umae_eval.metrics.rank_bootstrap.resample_singular_values`), at most
  :func:`~umae_eval.metrics.rank_bootstrap.rank_resample_count` resamples (the ranks' budget);
- collapse std: weighted mean and variance of the normalised rows (exact);
- LiDAR: the images (surrogate classes) are resampled, each with all its views (exact), at most
  :data:`MAX_LIDAR_RESAMPLES`;
- Fourier: each image's own high-frequency value, averaged over the drawn images (exact: the
  profile is a mean over images);
- mutual kNN: each image's neighbour overlap (neighbours found once among all images), averaged
  over the drawn images;
- CKA: the minibatches of images of :func:`~umae_eval.metrics.cka.cka_matrix_terms` are resampled
  (a bootstrap over groups of images: duplicated rows would bias the kernel estimate), the
  number of batches recorded.

Resampling with replacement shifts some of these (ranks drop when rows repeat), so the pipeline
reads them as centred intervals (``umae_eval.pipeline.intervals.centred_interval``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from umae_eval.errors import UmaeError
from umae_eval.metrics._inputs import ArrayLike, check_features, to_numpy64
from umae_eval.metrics.alpha_req_fit import _alpha_from_singular, alpha_req
from umae_eval.metrics.cka import cka_from_terms, cka_matrix_terms, cka_unbiased, linear_cka, mutual_knn_scores
from umae_eval.metrics.fourier import fourier_profile
from umae_eval.metrics.lidar import lidar, lidar_resampled
from umae_eval.metrics.neural_collapse import neural_collapse
from umae_eval.metrics.rank_bootstrap import rank_resample_count, resample_indices, resample_singular_values
from umae_eval.metrics.scalars import SCALAR_CONVENTIONS, scalars_from_singular, spectrum_scalars

__all__ = ["MAX_LIDAR_RESAMPLES", "METRIC_DEFINITIONS", "MetricSet", "pair_metrics", "representation_metrics", "resampled_scalars"]

#: What each result name measures and where its formula comes from (report captions, CSV).
METRIC_DEFINITIONS: dict[str, str] = {
    "participation_ratio": "(sum lambda)^2 / sum lambda^2 of the centred covariance (Gao et al. 2017)",
    "stable_rank": "||Z||_F^2 / ||Z||_2^2, uncentred (Rudelson & Vershynin 2007)",
    "collapse_std": "mean std (ddof=1) of L2-normalised features (lightly); 1/sqrt(D) when spread",
    "collapse_std_ratio": "collapse std * sqrt(D): 1 = spread over the sphere, 0 = collapsed",
    "rankme_paper": "RankMe as Garrido et al. 2023: uncentred singular values, p + 1e-7",
    "rankme_pca": "RankMe as reptrix: PCA variance ratios of centred features, p + 1e-7",
    "alpha_req": "power-law decay of the centred covariance eigenvalues, OLS on ranks 6-100 (Agrawal et al. 2022)",
    "nc1": "tr(Sigma_W Sigma_B^+) / C on the test features (Papyan et al. 2020)",
    "cdnv": "mean over class pairs of (var_i + var_j) / (2 ||mu_i - mu_j||^2) (Galanti et al. 2022)",
    "nc2_etf_distance": "distance of the normalised class-mean Gram to the simplex ETF (Papyan et al.)",
    "nc2_equinorm": "std / mean of the centred class-mean norms",
    "nc4_agreement": "share of linear-probe predictions equal to the nearest train class mean",
    "lidar_masked": "LiDAR (Thilak et al. 2024) with q random masks of each image as its surrogate class",
    "lidar_masked_reptrix": "the same views, reptrix's variant (PCA over the LiDAR matrix's rows)",
    "lidar_augmented": "LiDAR with q augmentations (RandomResizedCrop + flip) of each image",
    "lidar_augmented_reptrix": "the same views, reptrix's variant",
    "fourier_high": "log-amplitude of the highest token frequency minus DC, last block (Park et al.)",
    "fourier_energy_share_high": "share of the token maps' spectral energy at the highest frequency",
    "cka_linear": "linear CKA, biased (Kornblith et al. 2019)",
    "cka_unbiased": "linear CKA with the unbiased HSIC (Song et al. 2012; Nguyen et al. 2021)",
    "mutual_knn": "mean share of 10 nearest neighbours both spaces agree on (Huh et al. 2024)",
}

#: Most resamples of a LiDAR value (each costs two D x D eigendecompositions).
MAX_LIDAR_RESAMPLES = 100
#: Rows per minibatch of the CKA between checkpoints: about 40 batches at 10,000 images to resample.
PAIR_CKA_BATCH = 256
#: Neighbours of the mutual kNN alignment (platonic-rep's default).
MUTUAL_KNN_K = 10


@dataclass
class MetricSet:
    """Metric values by result name, their resamples over images, details and settings.

    ``resamples[name]`` is ``(R,)`` for each label-free metric (R may differ between metrics);
    ``details`` holds what is not a scalar (CDNV matrix, LiDAR eigenvalues, Fourier profile).
    """

    values: dict[str, float] = field(default_factory=dict)
    resamples: dict[str, np.ndarray] = field(default_factory=dict)
    details: dict[str, Any] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"values": dict(self.values), "details": self.details, "settings": self.settings,
                "resample_counts": {k: int(len(v)) for k, v in self.resamples.items()}}


def resampled_scalars(features: ArrayLike, n_boot: int, seed: int,
                      step: Callable[[int], None] | None = None, alpha: bool = False) -> dict[str, np.ndarray]:
    """Spectrum scalars and the collapse-std ratio (and with ``alpha`` alpha-ReQ) on row resamples: name -> (R,).

    ``R = rank_resample_count(N, D, n_boot)``; resample r is exactly the scalar of ``X[idx[r]]``
    with ``idx = resample_indices(N, R, seed)`` (alpha-ReQ from the same singular values).
    """
    return _spectrum_resamples(to_numpy64(check_features(features, "features", min_rows=2)), n_boot, seed, step,
                               alpha)


def _alpha_or_nan(s_centred: np.ndarray, n: int) -> float:
    """alpha-ReQ from centred singular values (its default fit range); NaN when too few are non-zero."""
    try:
        return _alpha_from_singular(s_centred, n, None).alpha
    except UmaeError:
        return float("nan")


def _spectrum_resamples(x: np.ndarray, n_boot: int, seed: int, step: Callable[[int], None] | None,
                        alpha: bool = False) -> dict[str, np.ndarray]:
    n, d = x.shape
    reps = rank_resample_count(n, d, n_boot)
    idx = resample_indices(n, reps, seed)
    m0 = x.mean(axis=0)
    x0 = x - m0
    z = x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)
    names = ("participation_ratio", "stable_rank", "rankme_paper", "rankme_pca", "collapse_std_ratio")
    out = {k: np.empty(reps) for k in names + (("alpha_req",) if alpha else ())}
    for r in range(reps):
        s_c, s_raw = resample_singular_values(x, x0, m0, idx[r])
        for k, v in scalars_from_singular(s_c, s_raw).items():
            out[k][r] = v
        if alpha:
            out["alpha_req"][r] = _alpha_or_nan(s_c, n)
        w = np.bincount(idx[r], minlength=n).astype(np.float64)
        mean = w @ z / n
        var = np.maximum(w @ (z * z) - n * mean**2, 0.0) / (n - 1)
        out["collapse_std_ratio"][r] = float(np.mean(np.sqrt(var))) * np.sqrt(d)
        if step is not None:
            step(1)
    return out


def _lidar_part(out: MetricSet, name: str, views: object, n_boot: int, seed: int) -> None:
    res = lidar(views)
    out.values[name] = res.value
    out.values[f"{name}_reptrix"] = lidar(views, method="reptrix").value
    out.details[name] = res.to_dict()
    reps = min(n_boot, MAX_LIDAR_RESAMPLES)
    if reps > 0:
        out.resamples[name] = lidar_resampled(views, resample_indices(res.n_images, reps, seed))


def representation_metrics(
    features: ArrayLike,
    *,
    labels: object | None = None,
    predictions: object | None = None,
    centres: ArrayLike | None = None,
    mask_views: object | None = None,
    aug_views: object | None = None,
    tokens: object | None = None,
    token_prefix: int = 0,
    n_boot: int = 200,
    seed: int = 0,
    step: Callable[[int], None] | None = None,
    lidar_boot: int = MAX_LIDAR_RESAMPLES,
    spectral_boot: int | None = None,
) -> MetricSet:
    """All metrics of one checkpoint's features; each optional input adds its metrics.

    Parameters
    ----------
    features : (N, D)
        e.g. the test-image features (the spectrum scalars and, with ``labels``, neural collapse).
    labels : (N,) int, optional
        Classes of the rows: NC1, CDNV, NC2 (and NC4 with ``predictions``).
    predictions, centres : optional
        A classifier's predictions (N,) and the class centres (C, D) for NC4 (e.g. a linear
        probe's test predictions and the train class means).
    mask_views : (n, q, D), optional
        q random-mask views of n images: ``lidar_masked`` (and ``lidar_masked_reptrix``).
    aug_views : (n, q, D), optional
        q augmentations of n images: ``lidar_augmented`` (the LiDAR paper's surrogate task).
    tokens : (B, 1 + h*w, D) or (B, h, w, D), optional
        Patch tokens of a block: ``fourier_high`` and ``fourier_energy_share_high``.
    token_prefix : int
        Leading tokens of ``tokens`` to drop ([CLS]).
    n_boot, seed : int
        Resamples (capped per metric, see the module docstring) and their seed; 0 = no resamples.
    step : callable, optional
        Called with 1 per spectral resample (a progress bar's advance).
    lidar_boot : int
        Most resamples of each LiDAR value (default :data:`MAX_LIDAR_RESAMPLES`).
    spectral_boot : int, optional
        Resamples asked of the spectrum scalars instead of ``n_boot`` (then capped as the ranks').
    """
    x = to_numpy64(check_features(features, "features", min_rows=2))
    out = MetricSet(settings={"n": int(x.shape[0]), "dim": int(x.shape[1]), "n_boot": int(n_boot), "seed": int(seed),
                              "conventions": dict(SCALAR_CONVENTIONS)})
    sc = spectrum_scalars(x)
    out.values.update(sc.values())
    out.details["collapse_std_reference"] = sc.collapse_std_reference
    try:
        ar = alpha_req(x)
        out.values["alpha_req"] = ar.alpha
        out.details["alpha_req"] = {"r2": ar.r2, "fit_range": list(ar.fit_range)}
    except UmaeError:  # too few non-zero eigenvalues (collapsed features): no alpha-ReQ
        pass
    spec_boot = n_boot if spectral_boot is None else spectral_boot
    if spec_boot > 0:
        out.resamples.update(_spectrum_resamples(x, spec_boot, seed, step, alpha="alpha_req" in out.values))
    if labels is not None:
        nc = neural_collapse(x, labels, predictions=predictions, centres=centres)
        out.values.update(nc.values())
        out.details["cdnv_matrix"] = nc.cdnv_matrix.tolist()
        out.settings["neural_collapse"] = {"num_classes": nc.num_classes, "nc4": predictions is not None}
    if mask_views is not None:
        _lidar_part(out, "lidar_masked", mask_views, min(n_boot, lidar_boot), seed + 1)
    if aug_views is not None:
        _lidar_part(out, "lidar_augmented", aug_views, min(n_boot, lidar_boot), seed + 2)
    if tokens is not None:
        prof = fourier_profile(tokens, prefix_tokens=token_prefix)
        out.values["fourier_high"] = prof.high_frequency
        out.values["fourier_energy_share_high"] = prof.energy_share_high
        out.details["fourier"] = prof.to_dict()
        if n_boot > 0 and prof.n_images >= 2:
            idx = resample_indices(prof.n_images, n_boot, seed + 3)
            out.resamples["fourier_high"] = prof.per_image_high[idx].mean(axis=1)
    return out


def pair_metrics(x: ArrayLike, y: ArrayLike, *, k: int = MUTUAL_KNN_K, batch_size: int = PAIR_CKA_BATCH,
                 n_boot: int = 200, seed: int = 0) -> MetricSet:
    """CKA and mutual kNN between two representations ``x`` (N, D1), ``y`` (N, D2) of the same images.

    ``cka_linear``: Kornblith's (biased) linear CKA; ``cka_unbiased``: with Song et al.'s
    unbiased HSIC over all rows; resamples of ``cka_unbiased`` from the minibatch terms
    (batches of ``batch_size`` images resampled); ``mutual_knn``: Huh et al., k neighbours.
    """
    a = to_numpy64(check_features(x, "x", min_rows=4))
    b = to_numpy64(check_features(y, "y", min_rows=4))
    out = MetricSet(settings={"n": int(a.shape[0]), "k": int(k), "cka_batch_size": int(batch_size),
                              "n_boot": int(n_boot), "seed": int(seed)})
    out.values["cka_linear"] = linear_cka(a, b)
    out.values["cka_unbiased"] = cka_unbiased(a, b)
    scores = mutual_knn_scores(a, b, k=min(k, a.shape[0] - 1))
    out.values["mutual_knn"] = float(scores.mean())
    if n_boot > 0:
        xy, xx, yy = cka_matrix_terms([a], [b], batch_size=batch_size, seed=seed)
        batches = xy.shape[0]
        out.settings["cka_batches"] = int(batches)
        if batches >= 2:
            bidx = resample_indices(batches, n_boot, seed + 4)
            w = np.stack([np.bincount(r, minlength=batches) for r in bidx]).astype(np.float64)
            out.resamples["cka_unbiased"] = np.array([cka_from_terms(xy, xx, yy, wr)[0, 0] for wr in w])
        idx = resample_indices(a.shape[0], n_boot, seed + 5)
        out.resamples["mutual_knn"] = scores[idx].mean(axis=1)
    return out
