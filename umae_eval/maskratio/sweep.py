"""The mask-ratio sweep: distances between masked views of intra/inter-class pairs per rho,
the label error alpha and the augmentation-graph spectrum, in pixel or feature space.

All randomness comes from one integer seed through independent, named streams
(``numpy.random.SeedSequence(seed, spawn_key=(stream, ...))``): pair sampling, the masks of each
ratio (drawn on the CPU, so results do not depend on the device or the batch size), the
bootstrap, the label-error and the graph samples. The same masks are shared by every estimator
(common random numbers): estimator ``all-pairs`` and ``masked-image`` use the two views' own
masks ``(V_a^k, V_b^k)``, ``aligned`` and ``closest-view`` use ``V_a^k`` as the shared mask.
Each view's noise is drawn once and thresholded at every rho, so the masks are nested across
ratios (each one alone follows MAE's rule exactly) and differences between ratios are not
blurred by fresh mask noise.
"""

from __future__ import annotations

import time
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
import torch
from torch import Tensor

from umae_eval.errors import UmaeError
from umae_eval.maskratio.estimators import (
    FEATURE_ESTIMATORS,
    FEATURE_METRICS,
    PIXEL_ESTIMATORS,
    feature_distance,
    patch_pair_stats,
    pixel_view_distances,
    reduce_draws,
)
from umae_eval.maskratio.graph import GraphStats, graph_stats
from umae_eval.maskratio.label_error import class_means, nearest_mean_errors, patch_class_distances, view_errors
from umae_eval.maskratio.masks import keep_mask_from_ranks, noise_ranks, num_visible, patchify, validate_ratios
from umae_eval.maskratio.pairs import PairSample, sample_balanced, sample_pairs
from umae_eval.maskratio.stats import CurveSummary, Interval, summarise_curves, summarise_rates
from umae_eval.progress import ProgressFactory, null_progress

__all__ = [
    "SweepConfig",
    "SweepResult",
    "ViewEncoder",
    "run_sweep",
    "pixel_distance_curves",
    "feature_distance_curves",
    "pixel_label_errors",
    "feature_label_errors",
    "pixel_graph",
    "feature_graph",
    "checkpoint_view_encoder",
    "parse_estimators",
]

# Named random streams (the first entry of a SeedSequence spawn key).
_PAIRS, _MASKS, _BOOT, _LABEL, _GRAPH = 1, 2, 3, 4, 5


class ViewEncoder(Protocol):
    """Encodes masked views of images; the feature-space sweep's only view of a model.

    ``num_patches`` is the model's ``L``. ``prepare`` turns uint8 images ``(B, H, W, 3)`` into
    model inputs (done once per image batch); ``encode`` maps inputs, MAE noise ``(B, L)`` and a
    mask ratio to features ``(B, D)`` on the CPU, computed from the visible patches only (the
    ``int(L (1 - rho))`` patches with the smallest noise); calling the encoder does both.
    """

    num_patches: int

    def prepare(self, images: np.ndarray) -> Tensor: ...

    def encode(self, inputs: Tensor, noise: Tensor, mask_ratio: float) -> Tensor: ...

    def __call__(self, images: np.ndarray, noise: Tensor, mask_ratio: float) -> Tensor: ...


@dataclass
class SweepConfig:
    """Settings of one sweep (the CLI's options, validated there)."""

    ratios: list[float]
    views: int = 8
    pairs: int = 2000
    patch_size: int = 4
    estimators: tuple[str, ...] = tuple(PIXEL_ESTIMATORS)
    metrics: tuple[str, ...] = FEATURE_METRICS
    seed: int = 0
    n_boot: int = 1000
    batch_size: int = 250
    label_images: int = 1000
    label_train: int = 2000
    graph_images: int = 500
    graph_views: int = 2
    graph_top: int = 20


@dataclass
class SweepResult:
    """Everything a sweep measured; ``to_dict`` gives the JSON-safe form."""

    space: str
    ratios: np.ndarray
    num_patches: int
    num_visible: list[int]
    curves: dict[str, CurveSummary]
    label_error: Interval
    graph: list[GraphStats]
    n_classes: int
    pair_counts: dict[str, dict[str, int]]
    n_label_images: int
    n_graph_nodes: int
    timings: dict[str, float] = field(default_factory=dict)


def _seed_seq(seed: int, *key: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(seed, spawn_key=tuple(key))


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(_seed_seq(seed, *key))


def _torch_gen(seed: int, *key: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(_seed_seq(seed, *key).generate_state(1)[0]))


def _boot_seed(seed: int, name: str) -> int:
    """Bootstrap seed of one series, keyed by its name (not its position among the estimators)."""
    return int(_seed_seq(seed, _BOOT, zlib.crc32(name.encode())).generate_state(1)[0])


def parse_estimators(text: str | None, space: str) -> tuple[str, ...]:
    """Parse ``--estimator a,b`` for ``space`` ('pixel' or 'feature'); None or 'all' gives all."""
    known = PIXEL_ESTIMATORS if space == "pixel" else FEATURE_ESTIMATORS
    if text is None or text.strip() in ("", "all"):
        return tuple(known)
    names = [n.strip() for n in text.split(",") if n.strip()]
    for n in names:
        if n not in known:
            other = FEATURE_ESTIMATORS if space == "pixel" else PIXEL_ESTIMATORS
            extra = (" (a feature-space estimator: it needs --checkpoint)" if space == "pixel" and n in other
                     else " (a pixel-space estimator: drop --checkpoint)" if n in other else "")
            raise UmaeError(f"--estimator {n!r} is not a {space}-space estimator{extra}; "
                            f"choose from {', '.join(known)}")
    return tuple(dict.fromkeys(names))


def _batches(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def pixel_distance_curves(x_a: np.ndarray, x_b: np.ndarray, ratios: Sequence[float], *,
                          patch_size: int, views: int, estimators: Sequence[str],
                          seed: int, stream: int = 0, batch_size: int = 250,
                          device: torch.device | str = "cpu",
                          progress: ProgressFactory = null_progress,
                          description: str = "pixel distances") -> dict[str, np.ndarray]:
    """Per-pair view distances of each pixel estimator at each mask ratio.

    Parameters
    ----------
    x_a, x_b : ndarray, uint8, shape (P, H, W, 3)
        The two images of each pair.
    ratios : sequence of float, length R
    patch_size : int
    views : int
        ``K`` mask draws per pair and ratio.
    estimators : names from ``PIXEL_ESTIMATORS``
    seed, stream : int
        Two noise tensors ``(P, K, L)`` come from ``SeedSequence(seed, spawn_key=(2, stream))``
        (first view / shared mask, then the second view's own mask) and are thresholded at every
        rho (:func:`~umae_eval.maskratio.masks.keep_mask_from_ranks`: nested masks).
    batch_size : int
        Pairs per step; each step evaluates every ratio and draw at once (memory: about
        ``batch * (L^2 + 3 R K L)`` floats).

    Returns
    -------
    dict[str, ndarray float64 of shape (R, P)]
    """
    n_pairs = len(x_a)
    slices = _batches(n_pairs, batch_size)
    need_cross = "all-pairs" in estimators
    dev = torch.device(device)
    num_patches = (x_a.shape[1] // patch_size) * (x_a.shape[2] // patch_size)
    gen = _torch_gen(seed, _MASKS, stream)
    rank_a = noise_ranks(torch.rand((n_pairs, views, num_patches), generator=gen))
    rank_b = noise_ranks(torch.rand((n_pairs, views, num_patches), generator=gen))
    # Visible counts per ratio, broadcast against ranks (P, 1, K, L): all ratios in one go.
    n_vis = torch.tensor([num_visible(num_patches, r) for r in ratios], device=dev).view(1, -1, 1, 1)
    n_r = len(ratios)
    out = {name: np.empty((n_r, n_pairs)) for name in estimators}
    with progress(description, total=n_pairs) as advance:
        for sl in slices:
            b = sl.stop - sl.start
            stats = patch_pair_stats(patchify(x_a[sl], patch_size).to(dev),
                                     patchify(x_b[sl], patch_size).to(dev), cross=need_cross)
            # (B, R, K, L) keep weights, flattened to (B, R*K, L) for the estimators
            ka = (rank_a[sl].to(dev).unsqueeze(1) < n_vis).to(stats.sq_diff.dtype).flatten(1, 2)
            kb = (rank_b[sl].to(dev).unsqueeze(1) < n_vis).to(stats.sq_diff.dtype).flatten(1, 2)
            per_draw: dict[str, Tensor] = {}
            for name in estimators:
                key = "aligned" if name == "closest-view" else name
                if key not in per_draw:
                    per_draw[key] = pixel_view_distances(key, stats, ka, kb).view(b, n_r, views)
                value = reduce_draws(per_draw[key], PIXEL_ESTIMATORS[name].reduce)  # (B, R)
                out[name][:, sl] = value.double().cpu().numpy().T
            advance(b)
    return out


def feature_distance_curves(x_a: np.ndarray, x_b: np.ndarray, ratios: Sequence[float],
                            encoder: ViewEncoder, *, views: int, estimators: Sequence[str],
                            metrics: Sequence[str] = FEATURE_METRICS, seed: int, stream: int = 0,
                            batch_size: int = 256, progress: ProgressFactory = null_progress,
                            description: str = "feature distances") -> dict[str, np.ndarray]:
    """Per-pair distances between encoder features of masked views, per estimator and metric.

    For each pair, ratio and draw ``k``: ``f(a, V_a^k)``, ``f(b, V_a^k)`` (shared mask) and, if
    ``own-masks`` is asked for, ``f(b, V_b^k)``; the noise comes from the same stream as in
    :func:`pixel_distance_curves` (on the encoder's ``L`` patches) and is reused at every rho,
    so the masks are nested across ratios as in pixel space. Each step takes
    ``batch_size // K`` pairs, prepares their images once and encodes all their views at every
    ratio (``encoder.encode`` splits them into forward passes).

    Returns
    -------
    dict[str, ndarray float64 of shape (R, P)]
        Keys ``f"{estimator}/{metric}"``.
    """
    n_pairs = len(x_a)
    step = max(1, batch_size // views)  # pairs per step: about batch_size images per kind
    num_patches = encoder.num_patches
    keys = [f"{e}/{m}" for e in estimators for m in metrics]
    out = {k: np.empty((len(ratios), n_pairs)) for k in keys}
    own = "own-masks" in estimators
    gen = _torch_gen(seed, _MASKS, stream)
    noise_a = torch.rand((n_pairs, views, num_patches), generator=gen)
    noise_b = torch.rand((n_pairs, views, num_patches), generator=gen)
    with progress(description, total=n_pairs) as advance:
        for sl in _batches(n_pairs, step):
            b = sl.stop - sl.start
            # Images are prepared once per batch and repeated K times (pair-major order).
            xa = encoder.prepare(x_a[sl]).repeat_interleave(views, dim=0)
            xb = encoder.prepare(x_b[sl]).repeat_interleave(views, dim=0)
            na = noise_a[sl].reshape(b * views, num_patches)
            parts = [(xa, na), (xb, na)] + ([(xb, noise_b[sl].reshape(b * views, num_patches))] if own else [])
            inputs = torch.cat([p[0] for p in parts])
            noise = torch.cat([p[1] for p in parts])
            for r, rho in enumerate(ratios):
                feats = encoder.encode(inputs, noise, rho).reshape(len(parts), b, views, -1)
                fa, fb_shared = feats[0], feats[1]
                for m in metrics:
                    shared = feature_distance(fa, fb_shared, m)  # (B, K)
                    for e in estimators:
                        per_draw = feature_distance(fa, feats[2], m) if e == "own-masks" else shared
                        value = reduce_draws(per_draw, FEATURE_ESTIMATORS[e].reduce)
                        out[f"{e}/{m}"][r, sl] = value.double().cpu().numpy()
            advance(b)
    return out


def pixel_label_errors(x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray,
                       y_eval: np.ndarray, ratios: Sequence[float], *, n_classes: int,
                       patch_size: int, views: int, seed: int, batch_size: int = 250,
                       device: torch.device | str = "cpu",
                       progress: ProgressFactory = null_progress) -> np.ndarray:
    """Per-image label error (share of its K views nearest another class's mean), pixel space.

    ``mu_c`` = mean of the unmasked ``x_train`` images of class ``c`` (pixels / 255), cut into
    patches; each eval image contributes ``K`` masked views (the rule:
    :mod:`umae_eval.maskratio.label_error`). The view noise comes from
    ``SeedSequence(seed, spawn_key=(4,))`` and is nested across rho.

    Returns
    -------
    ndarray, shape (R, N_eval)
        Values in ``{0, 1/K, ..., 1}``.
    """
    dev = torch.device(device)
    # The mean of patches is the patches of the mean image: average raw pixels per class.
    with progress("label error: class means", total=n_classes) as advance:
        mean_images = np.full((n_classes, *x_train.shape[1:]), np.nan)
        for c in range(n_classes):
            members = x_train[y_train == c]
            if len(members):
                mean_images[c] = members.mean(axis=0, dtype=np.float64) / 255.0
            advance(1)
    means = patchify(torch.from_numpy(mean_images), patch_size).to(dev)  # (C, L, d)
    labels = torch.as_tensor(y_eval, dtype=torch.int64)
    num_patches = means.shape[1]
    n_vis = torch.tensor([num_visible(num_patches, r) for r in ratios], device=dev).view(1, -1, 1, 1)
    out = np.empty((len(ratios), len(x_eval)))
    ranks = noise_ranks(torch.rand((len(x_eval), views, num_patches), generator=_torch_gen(seed, _LABEL)))
    with progress("label error: masked views", total=len(x_eval)) as advance:
        for sl in _batches(len(x_eval), batch_size):
            per_patch = patch_class_distances(patchify(x_eval[sl], patch_size).to(dev), means)  # (B, C, L)
            keep = (ranks[sl].to(dev).unsqueeze(1) < n_vis).flatten(1, 2)  # (B, R*K, L), every ratio
            err = view_errors(per_patch, labels[sl], keep).view(-1, len(ratios), views)
            out[:, sl] = err.double().mean(-1).cpu().numpy().T
            advance(sl.stop - sl.start)
    return out


def feature_label_errors(encoder: ViewEncoder, x_train: np.ndarray, y_train: np.ndarray,
                         x_eval: np.ndarray, y_eval: np.ndarray, ratios: Sequence[float], *,
                         n_classes: int, views: int, seed: int,
                         progress: ProgressFactory = null_progress) -> np.ndarray:
    """Per-image label error in feature space (nearest class mean of masked train features).

    At each rho: ``W_c`` = mean feature of one masked view of each train image of class ``c``;
    each eval image contributes ``K`` masked views. Returns ``(R, N_eval)`` error shares.
    """
    num_patches = encoder.num_patches
    labels = torch.as_tensor(y_eval, dtype=torch.int64)
    out = np.empty((len(ratios), len(x_eval)))
    gen = _torch_gen(seed, _LABEL)
    noise_train = torch.rand((len(x_train), num_patches), generator=gen)
    xe = np.repeat(x_eval, views, axis=0)
    noise_eval = torch.rand((len(xe), num_patches), generator=gen)
    with progress("label error: masked views", total=len(ratios)) as advance:
        for r, rho in enumerate(ratios):
            ft = encoder(x_train, noise_train, rho)
            means = class_means(ft, torch.as_tensor(y_train, dtype=torch.int64), n_classes)
            fe = encoder(xe, noise_eval, rho)
            err = nearest_mean_errors(fe, labels.repeat_interleave(views), means)
            out[r] = err.reshape(len(x_eval), views).double().mean(-1).numpy()
            advance(1)
    return out


def _views_graph(vectors: Callable[[float], Tensor], labels: np.ndarray,
                 ratios: Sequence[float], views: int, k: int, top: int,
                 progress: ProgressFactory) -> list[GraphStats]:
    y = torch.as_tensor(labels, dtype=torch.int64).repeat_interleave(views)
    ids = torch.arange(len(labels)).repeat_interleave(views)
    out = []
    with progress("augmentation graph spectrum", total=len(ratios)) as advance:
        for r, rho in enumerate(ratios):
            v = vectors(rho).to(torch.float32)
            dist = torch.cdist(v, v).clamp_min(0)
            dist.fill_diagonal_(0)
            out.append(graph_stats(dist, y, ids, k=k, top=top))
            advance(1)
    return out


def pixel_graph(x: np.ndarray, y: np.ndarray, ratios: Sequence[float], *, patch_size: int,
                views: int, k: int, seed: int, top: int = 20, device: torch.device | str = "cpu",
                progress: ProgressFactory = null_progress) -> list[GraphStats]:
    """Augmentation-graph spectrum per rho on ``n`` images x ``views`` pixel views.

    Node vectors: the zero-filled masked image ``x * M`` (own MAE mask per view), so the view
    distance is the ``masked-image`` l2. See :mod:`umae_eval.maskratio.graph`.
    """
    patches = patchify(x, patch_size).to(torch.device(device))
    n, num_patches, _ = patches.shape
    ranks = noise_ranks(torch.rand((n, views, num_patches), generator=_torch_gen(seed, _GRAPH)))

    def vectors(rho: float) -> Tensor:
        keep = keep_mask_from_ranks(ranks, rho)
        masked = patches[:, None] * keep.to(patches.device)[..., None]
        return masked.reshape(n * views, -1)

    return _views_graph(vectors, y, ratios, views, k, top, progress)


def feature_graph(encoder: ViewEncoder, x: np.ndarray, y: np.ndarray, ratios: Sequence[float], *,
                  views: int, k: int, seed: int, top: int = 20,
                  progress: ProgressFactory = null_progress) -> list[GraphStats]:
    """Augmentation-graph spectrum per rho with node vectors = encoder features of the views."""
    xr = np.repeat(x, views, axis=0)
    noise = torch.rand((len(xr), encoder.num_patches), generator=_torch_gen(seed, _GRAPH))

    def vectors(rho: float) -> Tensor:
        return encoder(xr, noise, rho)

    return _views_graph(vectors, y, ratios, views, k, top, progress)


def run_sweep(x_eval: np.ndarray, y_eval: np.ndarray, x_train: np.ndarray, y_train: np.ndarray,
              config: SweepConfig, *, n_classes: int, encoder: ViewEncoder | None = None,
              device: torch.device | str = "cpu",
              progress: ProgressFactory = null_progress) -> SweepResult:
    """Run the whole sweep: distances, bootstrap summaries, label error and graph spectrum.

    Parameters
    ----------
    x_eval, y_eval : ndarray uint8 (N, H, W, 3), int64 (N,)
        The split pairs, label-error views and graph views are drawn from (the test split).
    x_train, y_train : ndarray
        Reference for the class means of the label error.
    config : SweepConfig
    n_classes : int
        ``k`` of Theorem 4.2 and the number of class means.
    encoder : ViewEncoder, optional
        Feature space when given (``config.estimators`` are then feature estimators), pixel
        space otherwise.

    Returns
    -------
    SweepResult
    """
    space = "pixel" if encoder is None else "feature"
    ratios = list(config.ratios)
    h, w = x_eval.shape[1:3]
    if encoder is None:
        if h % config.patch_size or w % config.patch_size:
            raise UmaeError(f"--patch-size {config.patch_size} does not divide the {h}x{w} images")
        num_patches = (h // config.patch_size) * (w // config.patch_size)
    else:
        num_patches = encoder.num_patches
    validate_ratios(ratios, num_patches)
    if config.views < 1:
        raise UmaeError(f"--views must be >= 1, got {config.views}")
    timings: dict[str, float] = {}

    rng = _rng(config.seed, _PAIRS)
    samples: dict[str, PairSample] = {kind: sample_pairs(y_eval, config.pairs, kind, rng)
                                      for kind in ("intra", "inter")}
    t0 = time.perf_counter()
    raw: dict[str, dict[str, np.ndarray]] = {}
    for stream, (kind, s) in enumerate(samples.items()):
        if encoder is None:
            raw[kind] = pixel_distance_curves(
                x_eval[s.a], x_eval[s.b], ratios, patch_size=config.patch_size, views=config.views,
                estimators=config.estimators, seed=config.seed, stream=stream,
                batch_size=config.batch_size, device=device, progress=progress,
                description=f"{kind}-class pairs")
        else:
            raw[kind] = feature_distance_curves(
                x_eval[s.a], x_eval[s.b], ratios, encoder, views=config.views,
                estimators=config.estimators, metrics=config.metrics, seed=config.seed,
                stream=stream, batch_size=config.batch_size, progress=progress,
                description=f"{kind}-class pairs")
    timings["distances_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    curves = {name: summarise_curves(name, np.asarray(ratios), raw["intra"][name], raw["inter"][name],
                                     n_boot=config.n_boot, seed=_boot_seed(config.seed, name))
              for name in raw["intra"]}
    timings["bootstrap_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    label_idx = sample_balanced(y_eval, config.label_images, _rng(config.seed, _LABEL, 0))
    if encoder is None:
        errs = pixel_label_errors(x_train, y_train, x_eval[label_idx], y_eval[label_idx], ratios,
                                  n_classes=n_classes, patch_size=config.patch_size, views=config.views,
                                  seed=config.seed, device=device, progress=progress)
    else:
        train_idx = sample_balanced(y_train, config.label_train, _rng(config.seed, _LABEL, 1))
        errs = feature_label_errors(encoder, x_train[train_idx], y_train[train_idx], x_eval[label_idx],
                                    y_eval[label_idx], ratios, n_classes=n_classes, views=config.views,
                                    seed=config.seed, progress=progress)
    label_error = summarise_rates(errs, n_boot=config.n_boot, seed=_boot_seed(config.seed, "label_error"))
    timings["label_error_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    graph_idx = sample_balanced(y_eval, config.graph_images, _rng(config.seed, _GRAPH, 0))
    if encoder is None:
        graph = pixel_graph(x_eval[graph_idx], y_eval[graph_idx], ratios, patch_size=config.patch_size,
                            views=config.graph_views, k=n_classes, seed=config.seed,
                            top=config.graph_top, device=device, progress=progress)
    else:
        graph = feature_graph(encoder, x_eval[graph_idx], y_eval[graph_idx], ratios,
                              views=config.graph_views, k=n_classes, seed=config.seed,
                              top=config.graph_top, progress=progress)
    timings["graph_s"] = time.perf_counter() - t0

    return SweepResult(
        space=space, ratios=np.asarray(ratios), num_patches=num_patches,
        num_visible=[num_visible(num_patches, r) for r in ratios], curves=curves,
        label_error=label_error, graph=graph, n_classes=n_classes,
        pair_counts={kind: s.counts for kind, s in samples.items()},
        n_label_images=len(label_idx), n_graph_nodes=len(graph_idx) * config.graph_views,
        timings=timings,
    )


def checkpoint_view_encoder(model: torch.nn.Module, *, img_size: int, patch_size: int,
                            mean: Sequence[float], std: Sequence[float],
                            device: torch.device | str = "cpu", batch_size: int = 256,
                            pool: str = "cls") -> ViewEncoder:
    """A :class:`ViewEncoder` around a loaded MAE encoder (timm ViT).

    Images go through ``preprocess.to_model_input(images, img_size, mean, std)`` and
    ``features.encode_masked_views(model, x, rho, noise=noise, pool=pool)``, which encodes only
    the visible patches as MAE's encoder sees them; ``batch_size`` images per forward pass.
    """
    from umae_eval.features import encode_masked_views
    from umae_eval.preprocess import to_model_input

    dev = torch.device(device)
    model = model.to(dev).eval()

    class _Encoder:
        num_patches = (img_size // patch_size) ** 2

        def prepare(self, images: np.ndarray) -> Tensor:
            return torch.cat([to_model_input(images[sl], img_size, mean, std, device=dev)
                              for sl in _batches(len(images), batch_size)])

        @torch.no_grad()
        def encode(self, inputs: Tensor, noise: Tensor, mask_ratio: float) -> Tensor:
            parts = [encode_masked_views(model, inputs[sl].to(dev), mask_ratio, noise=noise[sl].to(dev),
                                         pool=pool).float().cpu()
                     for sl in _batches(len(inputs), batch_size)]
            return torch.cat(parts)

        def __call__(self, images: np.ndarray, noise: Tensor, mask_ratio: float) -> Tensor:
            return torch.cat([self.encode(self.prepare(images[sl]), noise[sl], mask_ratio)
                              for sl in _batches(len(images), batch_size)])

    return _Encoder()
