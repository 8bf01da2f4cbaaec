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
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from umae_eval.errors import UmaeError
from umae_eval.maskratio.distance_curves import ViewEncoder, feature_distance_curves, pixel_distance_curves
from umae_eval.maskratio.estimators import FEATURE_ESTIMATORS, FEATURE_METRICS, PIXEL_ESTIMATORS
from umae_eval.maskratio.graph import GraphStats
from umae_eval.maskratio.label_graph_views import (
    feature_graph,
    feature_label_errors,
    pixel_graph,
    pixel_label_errors,
)
from umae_eval.maskratio.masks import num_visible, validate_ratios
from umae_eval.maskratio.pairs import PairSample, sample_balanced, sample_pairs
from umae_eval.maskratio.stats import CurveSummary, Interval, summarise_curves, summarise_rates
# The streams and loops moved to their own modules; the names stay importable from here.
from umae_eval.maskratio.streams import (  # noqa: F401
    _BOOT,
    _GRAPH,
    _LABEL,
    _MASKS,
    _PAIRS,
    _batches,
    _boot_seed,
    _rng,
    _seed_seq,
    _torch_gen,
)
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
    curves = {}
    with progress("bootstrap", total=len(raw["intra"])) as advance:
        for name in raw["intra"]:
            curves[name] = summarise_curves(name, np.asarray(ratios), raw["intra"][name], raw["inter"][name],
                                            n_boot=config.n_boot, seed=_boot_seed(config.seed, name))
            advance(1)
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
