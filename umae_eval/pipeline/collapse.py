"""The collapse stages: spectrum of the features, geometry of two masked views, 2-D maps.

- :func:`spectrum_stats`: singular values (Fig. 1b), effective rank, RankMe, alpha-ReQ, feature std.
- :func:`masked_view_geometry`: alignment / uniformity of two random masked views of each image.
- :func:`feature_maps`: t-SNE / UMAP of a class-balanced subset of test features (Fig. 3a), each
  with its separation score (kNN accuracy inside the 2-D map) and the test-image index of each point.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from umae_eval.analysis import FeatureSet, Pool, Subject
from umae_eval.errors import UmaeError
from umae_eval.progress import ProgressFactory, null_progress

#: The map methods, by their ``--embed`` names.
MAP_METHODS: tuple[str, ...] = ("tsne", "umap")
#: Neighbours of the separation score inside a 2-D map.
MAP_SCORE_K = 10


@dataclass
class SpectrumStats:
    """Dimensional-collapse measures of one feature matrix (N, D)."""

    singular_values_centered: np.ndarray
    singular_values_raw: np.ndarray
    effective_rank: float
    rankme: float
    alpha_req: float
    alpha_req_r2: float
    alpha_req_fit_range: tuple[int, int]
    feature_std: float
    n: int
    dim: int
    settings: dict[str, Any] = field(default_factory=dict)

    def scalars(self) -> dict[str, float]:
        """The scalar measures, by their result names."""
        return {
            "effective_rank": self.effective_rank,
            "rankme": self.rankme,
            "alpha_req": self.alpha_req,
            "alpha_req_r2": self.alpha_req_r2,
            "feature_std": self.feature_std,
        }


def spectrum_stats(features: np.ndarray) -> SpectrumStats:
    """Singular values (centred and raw, normalised to the largest), effective rank (centred),
    RankMe (raw), alpha-ReQ and the normalised feature std of ``features`` (N, D).

    A thin wrapper of :func:`umae_eval.metrics.spectrum.spectrum_summary`.
    """
    from umae_eval.metrics.spectrum import spectrum_summary

    summ = spectrum_summary(features)
    return SpectrumStats(
        singular_values_centered=np.asarray(summ.singular_values, dtype=np.float64),
        singular_values_raw=np.asarray(summ.singular_values_raw, dtype=np.float64),
        effective_rank=float(summ.effective_rank),
        rankme=float(summ.rankme),
        alpha_req=float(summ.alpha.alpha),
        alpha_req_r2=float(summ.alpha.r2),
        alpha_req_fit_range=tuple(int(v) for v in summ.alpha.fit_range),  # type: ignore[arg-type]
        feature_std=float(summ.feature_std),
        n=int(summ.num_samples),
        dim=int(summ.dim),
        settings=dict(summ.settings),
    )


# --------------------------------------------------------------------------- masked views


@dataclass
class ViewGeometry:
    """Alignment and uniformity of two random masked views of the same test images."""

    alignment: float
    uniformity: float
    umae_uniformity_code: float
    umae_uniformity_paper: float
    mask_ratio: float
    n_images: int
    seed: int
    seconds: float = 0.0

    def scalars(self) -> dict[str, float]:
        return {"alignment": self.alignment, "uniformity": self.uniformity,
                "umae_uniformity_code": self.umae_uniformity_code,
                "umae_uniformity_paper": self.umae_uniformity_paper}


def masked_view_geometry(
    subject: Subject,
    images: np.ndarray,
    *,
    mask_ratio: float = 0.75,
    seed: int = 0,
    pool: Pool = "cls",
    device: str = "auto",
    batch_size: int = 256,
    progress: ProgressFactory = null_progress,
    block: int | None = None,
    final_norm: bool = True,
) -> ViewGeometry:
    """Encode two independently masked views of each image and measure their geometry.

    ``images`` are uint8 (N, H, W, 3). View 1 uses a generator seeded with ``seed``, view 2
    with ``seed + 1``. Alignment/uniformity follow Wang & Isola; the U-MAE uniformity value is
    given in both forms (``code``: normalised features, whole batch incl. diagonal;
    ``paper``: Eq. 11, off-diagonal pairs) over view 1. ``block`` / ``final_norm``: the block
    read (0-based; None the last) and whether the final norm applies, as in the feature spec.
    """
    import torch

    from umae_eval.features import encode_masked_views, resolve_device
    from umae_eval.metrics.geometry import alignment, umae_uniformity, uniformity
    from umae_eval.preprocess import to_model_input

    if not 0.0 <= mask_ratio < 1.0:
        raise UmaeError(f"--mask-ratio {mask_ratio}: must be in [0, 1), e.g. --mask-ratio 0.75")
    t0 = time.perf_counter()
    dev = resolve_device(device)
    info = subject.info
    model = subject.encoder.model.to(dev).eval()
    gens = []
    for s in (seed, seed + 1):
        g = torch.Generator(device=dev)
        g.manual_seed(int(s))
        gens.append(g)
    z1, z2 = [], []
    with progress(f"{subject.name}: masked views (ratio {mask_ratio:g})", total=len(images)) as advance:
        with torch.inference_mode():
            for start in range(0, len(images), batch_size):
                x = to_model_input(images[start:start + batch_size], info.arch.img_size, info.mean, info.std,
                                   device=dev)
                for z, g in ((z1, gens[0]), (z2, gens[1])):
                    z.append(encode_masked_views(model, x, mask_ratio, generator=g, pool=pool, block=block,
                                                 final_norm=final_norm).float().cpu())
                advance(len(x))
    a = torch.cat(z1)
    b = torch.cat(z2)
    return ViewGeometry(
        alignment=float(alignment(a, b)),
        uniformity=float(uniformity(a)),
        umae_uniformity_code=float(umae_uniformity(a, "code")),
        umae_uniformity_paper=float(umae_uniformity(a, "paper")),
        mask_ratio=float(mask_ratio),
        n_images=int(len(a)),
        seed=int(seed),
        seconds=time.perf_counter() - t0,
    )


# --------------------------------------------------------------------------- maps


@dataclass
class FeatureMap:
    """A 2-D map (t-SNE or UMAP) of a class-balanced subset of test features.

    ``coords`` (P, 2); ``labels`` (P,) class of each point; ``test_index`` (P,) the point's row
    in the dataset's test split (before any ``--max-test`` subset), for the tooltip and maps.csv;
    ``knn_accuracy`` the separation score: leave-one-out kNN accuracy (k = ``MAP_SCORE_K``,
    percent) of the points in the map, i.e. how well classes separate in what the reader sees.
    """

    method: str
    coords: np.ndarray
    labels: np.ndarray
    settings: dict[str, Any]
    seconds: float = 0.0
    test_index: np.ndarray | None = None
    knn_accuracy: float = float("nan")


def umap_compiles() -> bool:
    """True when UMAP will compile its numba code on first use in this process (~15 s)."""
    from umae_eval.embed import umap_needs_compile

    return bool(umap_needs_compile())


def map_knn_accuracy(coords: np.ndarray, labels: np.ndarray, k: int = MAP_SCORE_K) -> float:
    """Leave-one-out majority-vote kNN accuracy (percent) of 2-D points ``coords`` (P, 2).

    Each point is classified by the most common label among its ``k`` nearest other points
    (Euclidean, nearer first on equal distance by index; vote ties -> the smaller label).
    NaN for fewer than two points. Brute force in row chunks: a map has at most a few thousand points.
    """
    x = np.asarray(coords, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    n = len(x)
    if n < 2:
        return float("nan")
    k = min(k, n - 1)
    sq = (x * x).sum(axis=1)
    hits = 0
    n_classes = int(y.max()) + 1
    for start in range(0, n, 512):
        rows = np.arange(start, min(n, start + 512))
        d = sq[rows, None] + sq[None, :] - 2.0 * x[rows] @ x.T
        d[np.arange(len(rows)), rows] = np.inf  # leave the point itself out
        nn = np.argsort(d, axis=1, kind="stable")[:, :k]
        votes = np.zeros((len(rows), n_classes), dtype=np.int64)
        np.add.at(votes, (np.repeat(np.arange(len(rows)), k), y[nn].ravel()), 1)
        hits += int(np.sum(votes.argmax(axis=1) == y[rows]))
    return float(100.0 * hits / n)


def per_class_text(labels: np.ndarray) -> str:
    """How many points of each class a map holds: ``'100 per class'`` or ``'12-100 per class'``."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64))
    counts = counts[counts > 0]
    if len(counts) == 0:
        return "no points"
    lo, hi = int(counts.min()), int(counts.max())
    return f"{hi} per class" if lo == hi else f"{lo}-{hi} per class"


def feature_maps(
    fs: FeatureSet,
    *,
    methods: Sequence[str] = ("tsne",),
    per_class: int = 500,
    seed: int = 0,
    test_index: np.ndarray | None = None,
    progress: ProgressFactory = null_progress,
    classes: Sequence[int] | None = None,
    class_names: Sequence[str] | None = None,
) -> list[FeatureMap]:
    """t-SNE/UMAP maps of up to ``per_class`` test features (``fs.test`` (M, D)) of each class.

    ``test_index`` (M,) maps a row of ``fs.test`` to its row in the full test split (None: the
    same row). ``classes`` (``--map-classes``, :func:`~umae_eval.pipeline.map_classes.choose_map_classes`)
    keeps only those class ids; they, and their ``class_names``, are recorded in the settings.
    """
    from umae_eval.embed import class_balanced_subset, embed

    out: list[FeatureMap] = []
    if not methods:
        return out
    idx = np.asarray(class_balanced_subset(fs.y_test, per_class=per_class, seed=seed))
    shown: dict[str, Any] = {}
    if classes is not None:
        idx = idx[np.isin(np.asarray(fs.y_test)[idx], np.asarray(classes))]
        shown = {"map_class_ids": [int(c) for c in classes]}
        if class_names is not None:
            shown["map_classes"] = [str(class_names[int(c)]) for c in classes]
    rows = idx if test_index is None else np.asarray(test_index)[idx]
    labels = np.asarray(fs.y_test)[idx]
    for method in methods:
        t0 = time.perf_counter()
        res = embed(fs.test[idx], method=method, seed=seed, progress=progress)
        coords = np.asarray(res.coords)
        settings = {"method": method, "per_class": per_class, "per_class_used": per_class_text(labels),
                    "n_points": int(len(idx)), "seed": seed, "features": f"test split, pool={fs.pool}",
                    "separation_score": f"leave-one-out {MAP_SCORE_K}-NN accuracy in the 2-D map", **shown,
                    **dict(getattr(res, "settings", {}) or {})}
        out.append(FeatureMap(method, coords, labels, settings, time.perf_counter() - t0,
                              np.asarray(rows, dtype=np.int64), map_knn_accuracy(coords, labels)))
    return out


def rank_resamples(test_features: np.ndarray, n_boot: int, seed: int, progress: ProgressFactory) -> np.ndarray:
    """Effective rank and RankMe of ``test_features`` (N, D) on the shared row resamples, (R, 2).

    Every checkpoint gets the same resamples (same N, same seed), so rank differences are paired.
    """
    from umae_eval.metrics.rank_bootstrap import bootstrap_ranks, rank_resample_count

    n, d = test_features.shape
    reps = rank_resample_count(n, d, n_boot)
    with progress("rank intervals (bootstrap)", total=reps) as advance:
        return bootstrap_ranks(test_features, n_boot=reps, seed=seed + 7, step=advance)
