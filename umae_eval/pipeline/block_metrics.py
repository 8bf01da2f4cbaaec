"""The representation metrics per block, when ``--layers`` read several blocks.

Every block read (the features of all of them come from one forward pass: ``umae_eval.readout``)
gets, on its test features, what the checkpoint gets at its main block
(:mod:`umae_eval.pipeline.extra_metrics`):

- with intervals over images: participation ratio, stable rank, collapse std ratio, RankMe in
  both conventions, alpha-ReQ (the spectral resamples of :mod:`umae_eval.metrics.suite`), LiDAR
  over masked views (the block's view features: one masked pass per view reads every block,
  :func:`masked_view_blocks`) and the token Fourier high-frequency value (per-image values
  resampled);
- without (they use the labels): NC1, CDNV, NC2, and NC4 when the layer-wise stage ran a linear
  probe on the block (its test predictions against the block's train class means).

LiDAR over augmented views stays at the main block (a second set of passes per block would
double the encoder work for a number the masked views already give).

Seeds: the same as the main block's (the LiDAR images and masks, the spectral and LiDAR resamples),
so the deepest block reproduces the main values, and every block of every checkpoint shares the
resamples: differences between checkpoints at a block, and between blocks, are paired.

Cost, bounded: the spectral resamples of all blocks of a checkpoint take at most
:data:`BLOCK_SPECTRAL_BUDGET` multiply-adds (``2 R N D^2`` per block), but never fewer than
:data:`MIN_BLOCK_RESAMPLES` nor more than :data:`MAX_BLOCK_RESAMPLES` resamples per block; LiDAR
at most :data:`MAX_BLOCK_LIDAR_RESAMPLES` resamples per block and :data:`BLOCK_LIDAR_TOTAL` over all
blocks, never fewer than :data:`MIN_BLOCK_LIDAR_RESAMPLES` per block (two D x D
eigendecompositions each); the masked views are one pass of ``LIDAR_VIEWS`` masks over ``LIDAR_IMAGES`` images
whatever the number of blocks.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from umae_eval.analysis import FeatureSet, Subject, subset_indices
from umae_eval.metrics.fourier import FourierProfile
from umae_eval.metrics.rank_bootstrap import resample_indices
from umae_eval.metrics.suite import MetricSet, representation_metrics
from umae_eval.pipeline.extra_metrics import LIDAR_IMAGES, LIDAR_VIEWS, _centres, _model
from umae_eval.pipeline.intervals import Interval, centred_interval
from umae_eval.progress import ProgressFactory, null_progress

#: The per-block metrics with intervals, in table / figure order.
BLOCK_METRICS: tuple[str, ...] = ("participation_ratio", "stable_rank", "collapse_std_ratio", "rankme_paper",
                                  "rankme_pca", "alpha_req", "lidar_masked", "fourier_high")
#: The per-block metrics that use the labels (no interval).
BLOCK_LABEL_METRICS: tuple[str, ...] = ("nc1", "cdnv", "nc2_etf_distance", "nc2_equinorm", "nc4_agreement")
#: Multiply-adds allowed for all blocks' spectral resamples of one checkpoint (about 50 s on one core).
BLOCK_SPECTRAL_BUDGET = 2e12
#: Bounds on the spectral resamples of one block.
MIN_BLOCK_RESAMPLES = 30
MAX_BLOCK_RESAMPLES = 100
#: Most LiDAR resamples of one block, and of all blocks together (each resample costs two D x D
#: eigendecompositions: 1.2 s at 100 x 10 views x 768 on one busy core), and the fewest per block.
MAX_BLOCK_LIDAR_RESAMPLES = 50
BLOCK_LIDAR_TOTAL = 300
MIN_BLOCK_LIDAR_RESAMPLES = 20


def block_resample_count(n: int, d: int, n_blocks: int, requested: int) -> int:
    """Spectral resamples per block: within :data:`BLOCK_SPECTRAL_BUDGET` over all blocks,
    clipped to [:data:`MIN_BLOCK_RESAMPLES`, :data:`MAX_BLOCK_RESAMPLES`] and to ``requested``.

    E.g. 100 at 1,000 x 192 x 6 blocks, 30 at 10,000 x 768 x 12 blocks.
    """
    affordable = int(BLOCK_SPECTRAL_BUDGET // max(1.0, 2.0 * n * d * d * max(1, n_blocks)))
    return max(1, min(requested, MAX_BLOCK_RESAMPLES, max(MIN_BLOCK_RESAMPLES, affordable)))


def block_lidar_count(n_blocks: int, requested: int) -> int:
    """LiDAR resamples per block: ``BLOCK_LIDAR_TOTAL // n_blocks`` clipped to [20, 50] and to ``requested``.

    E.g. 50 for up to 6 blocks, 25 for 12, 20 from 15 blocks on.
    """
    per = max(MIN_BLOCK_LIDAR_RESAMPLES, min(MAX_BLOCK_LIDAR_RESAMPLES, BLOCK_LIDAR_TOTAL // max(1, n_blocks)))
    return max(0, min(requested, per))


def masked_view_blocks(subject: Subject, images: Any, blocks: Sequence[int], *, views: int = LIDAR_VIEWS,
                       mask_ratio: float = 0.75, seed: int = 0, pool: str = "cls", device: str = "auto",
                       batch_size: int = 256, final_norm: bool = True,
                       progress: ProgressFactory = null_progress) -> dict[int, np.ndarray]:
    """Features of ``views`` random masks of each image at every block in ``blocks``: block -> (n, q, D).

    One masked pass per view and batch (MAE's masking, :func:`umae_eval.features.encode_masked_views`)
    read at every block by forward hooks; the masks come from one generator seeded with ``seed``
    in the order :func:`~umae_eval.pipeline.extra_metrics.masked_view_stack` draws them, so each
    block's stack equals that function's with ``block=b``.
    """
    import torch

    from umae_eval.features import encode_masked_views, pool_tokens
    from umae_eval.preprocess import to_model_input

    model, info, dev = _model(subject, device)
    depth = len(model.blocks)
    wanted = sorted({int(b) % depth for b in blocks})
    gen = torch.Generator(device=dev)
    gen.manual_seed(int(seed))
    captured: dict[int, torch.Tensor] = {}
    hooks = [model.blocks[b].register_forward_hook(lambda m, i, o, b=b: captured.__setitem__(b, o)) for b in wanted]
    out: dict[int, list[np.ndarray]] = {b: [] for b in wanted}
    try:
        with progress(f"{subject.name}: {views} masked views for LiDAR by block", total=len(images)) as advance:
            with torch.inference_mode():
                for s in range(0, len(images), batch_size):
                    x = to_model_input(np.asarray(images[s:s + batch_size]), info.arch.img_size, info.mean,
                                       info.std, device=dev)
                    per: dict[int, list[torch.Tensor]] = {b: [] for b in wanted}
                    for _ in range(views):
                        captured.clear()
                        encode_masked_views(model, x, mask_ratio, generator=gen, pool=pool,  # type: ignore[arg-type]
                                            block=wanted[-1], final_norm=False)
                        for b in wanted:
                            seq = model.norm(captured[b]) if final_norm else captured[b]
                            per[b].append(pool_tokens(model, seq, pool).float().cpu())  # type: ignore[arg-type]
                    for b in wanted:
                        out[b].append(torch.stack(per[b], dim=1).numpy())
                    advance(len(x))
    finally:
        for h in hooks:
            h.remove()
    return {b: np.concatenate(v) for b, v in out.items()}


def _linear_predictions(block_results: Sequence[Any], block: int) -> np.ndarray | None:
    for br in block_results:
        if br.block == block and br.probes is not None:
            return br.probes.predictions.get("linear_accuracy")
    return None


def block_metric_sets(subject: Subject, every: FeatureSet, test_images: Any, *,
                      block_results: Sequence[Any] = (), fourier: Sequence[FourierProfile] | None = None,
                      mask_ratio: float = 0.75, pool: str = "cls", seed: int = 0, n_boot: int = 200,
                      device: str = "auto", batch_size: int = 256, final_norm: bool = True,
                      lidar_images: int = LIDAR_IMAGES, lidar_views: int = LIDAR_VIEWS,
                      progress: ProgressFactory = null_progress) -> dict[int, MetricSet]:
    """The metrics of every block in ``every.blocks`` (see the module docstring): block -> MetricSet.

    ``block_results`` (the layer-wise stage's ``BlockResult`` list) give each block's linear-probe
    predictions for NC4; ``fourier`` (one profile per encoder block, ``block_fourier``) gives
    each block's Fourier value. ``test_images`` are the rows of ``every.test``.
    """
    blocks = tuple(every.blocks or ())
    n, width = len(every.y_test), every.test.shape[1] // max(1, len(blocks))
    lid = subset_indices(n, lidar_images, seed + 13)  # the main block's LiDAR images and masks
    lid_images = test_images if lid is None else test_images[np.sort(lid)]
    stacks = masked_view_blocks(subject, lid_images, blocks, views=lidar_views, mask_ratio=mask_ratio,
                                seed=seed + 19, pool=pool, device=device, batch_size=batch_size,
                                final_norm=final_norm, progress=progress) if len(lid_images) >= 2 else {}
    reps = block_resample_count(n, width, len(blocks), n_boot) if n_boot > 0 else 0
    lidar_reps = block_lidar_count(len(blocks), n_boot)
    depth = len(subject.encoder.model.blocks)
    out: dict[int, MetricSet] = {}
    with progress(f"{subject.name}: representation metrics by block", total=len(blocks)) as advance:
        for b in blocks:
            one = every.block(b)
            pred = _linear_predictions(block_results, b)
            centres = None if pred is None else _centres(one, pred)
            views = stacks.get(int(b) % depth)
            ms = representation_metrics(one.test, labels=one.y_test, predictions=pred if centres is not None else None,
                                        centres=centres, mask_views=views, n_boot=max(reps, lidar_reps),
                                        seed=seed + 29, lidar_boot=lidar_reps, spectral_boot=reps)
            if fourier is not None and int(b) % depth < len(fourier):
                prof = fourier[int(b) % depth]
                ms.values["fourier_high"] = prof.high_frequency
                if reps and prof.n_images >= 2:  # the main block's resamples of the same images
                    ms.resamples["fourier_high"] = prof.per_image_high[
                        resample_indices(prof.n_images, n_boot, seed + 31)].mean(axis=1)
            ms.settings.update(block=int(b), lidar_images=int(len(lid_images)), lidar_views=lidar_views,
                               lidar_mask_ratio=mask_ratio, nc4=centres is not None, pool=pool,
                               final_norm=final_norm, spectral_resamples=reps,
                               lidar_resamples=lidar_reps if views is not None else 0)
            out[int(b)] = ms
            advance(1)
    return out


def block_rows(per_checkpoint: Mapping[str, Mapping[int, MetricSet]]) -> list[dict[str, Any]]:
    """Long form: one row per checkpoint, block and metric; centred 95% interval where resampled."""
    rows: list[dict[str, Any]] = []
    for name, per in per_checkpoint.items():
        for b, ms in per.items():
            for m in BLOCK_METRICS + BLOCK_LABEL_METRICS:
                if m not in ms.values or not np.isfinite(ms.values[m]):
                    continue
                r = ms.resamples.get(m)
                iv: Interval | None = centred_interval(ms.values[m], r) if r is not None and len(r) else None
                rows.append({"checkpoint": name, "block": b, "metric": m, "value": ms.values[m],
                             "lo": iv.lo if iv else None, "hi": iv.hi if iv else None,
                             "resamples": int(len(r)) if r is not None else 0,
                             "n_images": ms.settings["lidar_images"] if m == "lidar_masked" else ms.settings["n"]})
    return rows


def block_differences(per_checkpoint: Mapping[str, Mapping[int, MetricSet]]) -> list[dict[str, Any]]:
    """Paired differences ``b - a`` for every pair of checkpoints, block both read, and metric with resamples."""
    names = list(per_checkpoint)
    rows: list[dict[str, Any]] = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for blk in per_checkpoint[a]:
                sa, sb = per_checkpoint[a][blk], per_checkpoint[b].get(blk)
                if sb is None:
                    continue
                for m in BLOCK_METRICS:
                    ra, rb = sa.resamples.get(m), sb.resamples.get(m)
                    if ra is None or rb is None or len(ra) != len(rb):
                        continue
                    iv = centred_interval(sb.values[m] - sa.values[m], rb - ra)
                    rows.append({"block": blk, "metric": m, "a": a, "b": b, "difference": iv.estimate,
                                 "lo": iv.lo, "hi": iv.hi, "beyond_noise": iv.excludes(0.0),
                                 "resamples": int(len(ra))})
    return rows
