"""The representation-metrics stage: the metrics of :mod:`umae_eval.metrics.suite` for each
checkpoint and pair of checkpoints, with 95% intervals over images and paired differences.

Per checkpoint (:func:`checkpoint_metrics`), from the test features and a few extra passes of the
encoder over a seeded subset of the test images:

- spectrum scalars (participation ratio, stable rank, collapse std, RankMe in both conventions)
  and neural collapse (NC1, CDNV, NC2; NC4 when a linear probe ran: its test predictions against
  the nearest train class mean) on the test features;
- LiDAR over ``LIDAR_VIEWS`` random masks (the pipeline's ``--mask-ratio``) of ``LIDAR_IMAGES``
  images (stable-pretraining's defaults n = 100, q = 10), and over as many augmentations
  (MAE's RandomResizedCrop(0.2-1) + flip), the LiDAR paper's surrogate task;
- the Fourier profile of the patch tokens after every block (``FOURIER_IMAGES`` images), the
  last block's high-frequency value as the scalar.

Between checkpoints (:func:`pair_sets`): CKA (biased and unbiased) and mutual kNN on the test
features of the same images. When ``--layers`` read several blocks: the block x block CKA matrix
within each checkpoint and between each pair (minibatch CKA on the test features of each block, with
per-cell intervals from resampling its minibatches: :mod:`umae_eval.metrics.cka_bootstrap`), and
every block gets its own metrics (:mod:`umae_eval.pipeline.block_metrics`). Intervals
(:func:`metric_intervals`) centre the bootstrap's spread on the estimate
(``intervals.centred_interval``: resampling rows biases ranks and kernel estimates by itself);
differences (:func:`metric_differences`) use the resamples the two checkpoints share.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from umae_eval.analysis import FeatureSet, Subject, subset_indices
from umae_eval.metrics.cka_bootstrap import cka_matrix_interval
from umae_eval.metrics.fourier import FourierProfile, combine_profiles, fourier_profile
from umae_eval.metrics.suite import MetricSet, pair_metrics, representation_metrics
from umae_eval.pipeline.intervals import Interval, centred_interval
from umae_eval.progress import ProgressFactory, null_progress

#: Surrogate classes and views of LiDAR (galilai-group/stable-pretraining's defaults).
LIDAR_IMAGES = 100
LIDAR_VIEWS = 10
#: Images whose patch tokens go through the Fourier analysis, block by block.
FOURIER_IMAGES = 64
#: Most resamples of a block x block CKA matrix's minibatches (each costs La x Lb divisions).
MAX_CKA_RESAMPLES = 1000
#: The label-free metrics that get intervals, in table order.
INTERVAL_METRICS: tuple[str, ...] = ("participation_ratio", "stable_rank", "collapse_std_ratio", "rankme_paper",
                                     "rankme_pca", "alpha_req", "lidar_masked", "lidar_augmented", "fourier_high")


def _model(subject: Subject, device: str) -> tuple[Any, Any, Any]:
    from umae_eval.features import resolve_device

    dev = resolve_device(device)
    return subject.encoder.model.to(dev).eval(), subject.info, dev


def masked_view_stack(subject: Subject, images: Any, *, views: int = LIDAR_VIEWS, mask_ratio: float = 0.75,
                      seed: int = 0, pool: str = "cls", device: str = "auto", batch_size: int = 256,
                      block: int | None = None, final_norm: bool = True,
                      progress: ProgressFactory = null_progress) -> np.ndarray:
    """Features of ``views`` random masks of each image: (n, q, D) float32.

    Masks from one generator seeded with ``seed``, drawn batch by batch, view by view
    (:func:`umae_eval.features.encode_masked_views`, MAE's masking), read at ``block`` (None:
    the last) with or without the final norm, like the main features.
    """
    import torch

    from umae_eval.features import encode_masked_views
    from umae_eval.preprocess import to_model_input

    model, info, dev = _model(subject, device)
    gen = torch.Generator(device=dev)
    gen.manual_seed(int(seed))
    out = []
    with progress(f"{subject.name}: {views} masked views for LiDAR", total=len(images)) as advance:
        with torch.inference_mode():
            for s in range(0, len(images), batch_size):
                x = to_model_input(np.asarray(images[s:s + batch_size]), info.arch.img_size, info.mean, info.std,
                                   device=dev)
                z = [encode_masked_views(model, x, mask_ratio, generator=gen, pool=pool, block=block,  # type: ignore[arg-type]
                                         final_norm=final_norm).float().cpu() for _ in range(views)]
                out.append(torch.stack(z, dim=1).numpy())
                advance(len(x))
    return np.concatenate(out)


def augmented_view_stack(subject: Subject, images: Any, *, views: int = LIDAR_VIEWS, seed: int = 0,
                         pool: str = "cls", device: str = "auto", batch_size: int = 256,
                         block: int | None = None, final_norm: bool = True,
                         progress: ProgressFactory = null_progress) -> np.ndarray:
    """Features of ``views`` augmentations of each image (RandomResizedCrop(0.2-1) + flip): (n, q, D).

    Encoded unmasked (``encode_masked_views`` at ratio 0, patches in their order) at ``block``.
    """
    import torch
    from PIL import Image

    from umae_eval.data.transforms import random_resized_crop_flip
    from umae_eval.features import encode_masked_views
    from umae_eval.preprocess import to_model_input

    model, info, dev = _model(subject, device)
    rng = np.random.default_rng(seed)
    size = info.arch.img_size
    per = max(1, batch_size // views)
    out = []
    with progress(f"{subject.name}: {views} augmented views for LiDAR", total=len(images)) as advance:
        with torch.inference_mode():
            for s in range(0, len(images), per):
                batch = np.asarray(images[s:s + per])
                crops = np.stack([np.asarray(random_resized_crop_flip(Image.fromarray(im), size, rng))
                                  for im in batch for _ in range(views)])
                x = to_model_input(crops, size, info.mean, info.std, device=dev)
                n_patches = model.patch_embed.num_patches
                keep_order = torch.arange(n_patches, device=dev, dtype=torch.float32).expand(len(x), -1)
                z = encode_masked_views(model, x, 0.0, noise=keep_order, pool=pool, block=block,  # type: ignore[arg-type]
                                        final_norm=final_norm).float().cpu().numpy()
                out.append(z.reshape(len(batch), views, -1))
                advance(len(batch))
    return np.concatenate(out)


def block_fourier(subject: Subject, images: Any, *, device: str = "auto", batch_size: int = 64,
                  progress: ProgressFactory = null_progress) -> list[FourierProfile]:
    """The Fourier profile of the patch tokens after each block ([CLS] dropped, before the final norm)."""
    import torch

    from umae_eval.preprocess import to_model_input

    model, info, dev = _model(subject, device)
    prefix = int(getattr(model, "num_prefix_tokens", 1))
    grid = tuple(int(g) for g in model.patch_embed.grid_size)
    parts: list[list[FourierProfile]] = [[] for _ in model.blocks]
    with progress(f"{subject.name}: token Fourier by block", total=len(images)) as advance:
        with torch.inference_mode():
            for s in range(0, len(images), batch_size):
                x = to_model_input(np.asarray(images[s:s + batch_size]), info.arch.img_size, info.mean, info.std,
                                   device=dev)
                seq = model.norm_pre(model.patch_drop(model._pos_embed(model.patch_embed(x))))
                for i, blk in enumerate(model.blocks):
                    seq = blk(seq)
                    parts[i].append(fourier_profile(seq[:, prefix:].float().cpu(), grid=grid))  # type: ignore[arg-type]
                advance(len(x))
    return [combine_profiles(p) for p in parts]


def _centres(fs: FeatureSet, predictions: np.ndarray) -> np.ndarray | None:
    """Train class means indexed by label, when every class 0..C-1 (test labels and predictions
    included) has train rows; else None (no NC4)."""
    if fs.train is None or len(fs.y_train) == 0:
        return None
    y = np.asarray(fs.y_train)
    c = 1 + max(int(y.max()), int(np.max(fs.y_test)), int(np.max(predictions)))
    if not np.array_equal(np.unique(y), np.arange(c)):
        return None
    # one pass in row blocks (float64 sums): the train features may be a float16 memmap of
    # millions of rows, read once rather than once per class
    sums = np.zeros((c, fs.train.shape[1]), dtype=np.float64)
    for start in range(0, len(y), 65536):
        block = np.asarray(fs.train[start:start + 65536], dtype=np.float64)
        np.add.at(sums, y[start:start + len(block)], block)
    return (sums / np.bincount(y, minlength=c)[:, None]).astype(np.float32)


def fourier_images_of(test_images: Any, count: int, seed: int) -> Any:
    """The test images of the Fourier analysis: a seeded subset of ``count`` (all when fewer)."""
    four = subset_indices(len(test_images), count, seed + 17)
    return test_images if four is None else test_images[np.sort(four)]


def checkpoint_metrics(subject: Subject, fs: FeatureSet, test_images: Any, *, predictions: np.ndarray | None = None,
                       mask_ratio: float = 0.75, pool: str = "cls", seed: int = 0, n_boot: int = 200,
                       device: str = "auto", batch_size: int = 256, lidar_images: int = LIDAR_IMAGES,
                       lidar_views: int = LIDAR_VIEWS, fourier_images: int = FOURIER_IMAGES,
                       block: int | None = None, final_norm: bool = True,
                       fourier_blocks: list[FourierProfile] | None = None,
                       progress: ProgressFactory = null_progress) -> MetricSet:
    """Every metric of one checkpoint (see the module docstring); ``test_images`` are the rows of ``fs.test``.

    ``predictions`` (M,) are a linear probe's test predictions, for NC4 (with the train class means).
    ``fourier_blocks``: the profiles of :func:`block_fourier` on ``fourier_images`` images picked
    with :func:`fourier_images_of` (computed here when None).
    """
    t0 = time.perf_counter()
    n = len(fs.y_test)
    lid = subset_indices(n, lidar_images, seed + 13)
    lid_images = test_images if lid is None else test_images[np.sort(lid)]
    common = dict(device=device, batch_size=batch_size, progress=progress, block=block, final_norm=final_norm)
    masked = masked_view_stack(subject, lid_images, views=lidar_views, mask_ratio=mask_ratio, seed=seed + 19,
                               pool=pool, **common)
    aug = augmented_view_stack(subject, lid_images, views=lidar_views, seed=seed + 23, pool=pool, **common)
    blocks = fourier_blocks if fourier_blocks is not None else block_fourier(
        subject, fourier_images_of(test_images, fourier_images, seed), device=device, progress=progress)
    centres = _centres(fs, predictions) if predictions is not None else None
    with progress(f"{subject.name}: representation metrics (bootstrap)", total=None):
        out = representation_metrics(fs.test, labels=fs.y_test,
                                     predictions=predictions if centres is not None else None, centres=centres,
                                     mask_views=masked if len(masked) >= 2 else None,
                                     aug_views=aug if len(aug) >= 2 else None, n_boot=n_boot, seed=seed + 29)
    last = blocks[-1]
    out.values["fourier_high"] = last.high_frequency
    out.values["fourier_energy_share_high"] = last.energy_share_high
    if n_boot > 0 and last.n_images >= 2:
        from umae_eval.metrics.rank_bootstrap import resample_indices

        idx = resample_indices(last.n_images, n_boot, seed + 31)
        out.resamples["fourier_high"] = last.per_image_high[idx].mean(axis=1)
    out.details["fourier_by_block"] = [{"block": i, **p.to_dict()} for i, p in enumerate(blocks)]  # 0-based, as --layers
    out.settings.update(lidar_images=int(len(masked)), lidar_views=lidar_views, lidar_mask_ratio=mask_ratio,
                        lidar_augmentation="RandomResizedCrop(0.2-1, bicubic) + horizontal flip",
                        fourier_images=int(last.n_images), fourier_tokens="patch tokens after each block, "
                        "before the final norm", nc4=centres is not None, pool=pool,
                        view_block="last" if block is None else int(block), view_final_norm=final_norm,
                        seconds=time.perf_counter() - t0)
    return out


def pair_sets(test_features: dict[str, np.ndarray], *, n_boot: int = 200, seed: int = 0,
              blocks: dict[str, FeatureSet] | None = None) -> dict[str, MetricSet]:
    """CKA and mutual kNN for every pair of checkpoints (in order), keyed ``'A vs B'``.

    ``blocks`` (name -> the FeatureSet of every block read): pairs that read the same several
    blocks also get the block x block CKA matrix between them (``details['cka_blocks']``).
    """
    names = list(test_features)
    out: dict[str, MetricSet] = {}
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            if len(test_features[a]) == len(test_features[b]) >= 4:
                ms = pair_metrics(test_features[a], test_features[b], n_boot=n_boot, seed=seed + 37)
                ms.settings.update(a=a, b=b)
                ca, cb = (block_columns((blocks or {}).get(a)), block_columns((blocks or {}).get(b)))
                if ca is not None and cb is not None:
                    ms.details["cka_blocks"] = _cka_blocks(ca, cb, seed + 41, n_boot)
                out[f"{a} vs {b}"] = ms
    return out


def metric_intervals(sets: dict[str, MetricSet], metrics: Sequence[str] = INTERVAL_METRICS) -> dict[str, dict[str, Interval]]:
    """Centred 95% intervals of each metric with resamples: ``{checkpoint: {metric: Interval}}``."""
    return {name: {m: centred_interval(ms.values[m], ms.resamples[m]) for m in metrics
                   if m in ms.values and m in ms.resamples and np.isfinite(ms.values[m])}
            for name, ms in sets.items()}


def metric_differences(sets: dict[str, MetricSet], metrics: Sequence[str] = INTERVAL_METRICS) -> list[dict[str, Any]]:
    """Paired differences ``b - a`` for every pair of checkpoints and metric they share resamples of."""
    names = list(sets)
    rows: list[dict[str, Any]] = []
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            for m in metrics:
                ra, rb = sets[a].resamples.get(m), sets[b].resamples.get(m)
                if ra is None or rb is None or len(ra) != len(rb):
                    continue
                iv = centred_interval(sets[b].values[m] - sets[a].values[m], rb - ra)
                rows.append({"metric": m, "a": a, "b": b, "difference": iv.estimate, "lo": iv.lo, "hi": iv.hi,
                             "beyond_noise": iv.excludes(0.0), "resamples": int(len(ra))})
    return rows


def block_columns(every: FeatureSet | None) -> tuple[tuple[int, ...], list[np.ndarray]] | None:
    """The blocks read and each block's test features (column views), when several blocks were read."""
    if every is None or every.blocks is None or len(every.blocks) < 2:
        return None
    w = every.test.shape[1] // len(every.blocks)
    return tuple(every.blocks), [every.test[:, j * w:(j + 1) * w] for j in range(len(every.blocks))]


def _cka_blocks(a: tuple[tuple[int, ...], list[np.ndarray]], b: tuple[tuple[int, ...], list[np.ndarray]] | None,
                seed: int, n_boot: int = 1000) -> dict[str, Any]:
    """The block x block minibatch CKA with per-cell 95% intervals (``cka_bootstrap``).

    The same ``seed`` within each checkpoint and for each pair: the same minibatches of images
    everywhere, so the cells of every matrix are resampled alike (paired).
    """
    m = cka_matrix_interval(a[1], None if b is None else b[1], n_boot=min(n_boot, MAX_CKA_RESAMPLES), seed=seed)

    def cells(arr: np.ndarray) -> list[list[float | None]]:
        return [[float(v) if np.isfinite(v) else None for v in row] for row in arr]

    return {"blocks_a": list(a[0]), "blocks_b": list(a[0] if b is None else b[0]), "matrix": cells(m.estimate),
            "lo": cells(m.lo), "hi": cells(m.hi), **m.settings(),
            "estimator": f"minibatch CKA, unbiased HSIC, batches of {m.batch_size} images (Nguyen et al. 2021)"}


def feature_metrics(subject: Subject, fs: FeatureSet, *, predictions: np.ndarray | None = None, seed: int = 0,
                    n_boot: int = 200, progress: ProgressFactory = null_progress) -> MetricSet:
    """:func:`checkpoint_metrics` without the passes that need an encoder (LiDAR's views, token
    Fourier): spectrum scalars and neural collapse of the test features (same seeds)."""
    from umae_eval.feature_subjects import SKIPPED_STAGES

    t0 = time.perf_counter()
    centres = _centres(fs, predictions) if predictions is not None else None
    with progress(f"{subject.name}: representation metrics (bootstrap)", total=None):
        out = representation_metrics(fs.test, labels=fs.y_test,
                                     predictions=predictions if centres is not None else None, centres=centres,
                                     n_boot=n_boot, seed=seed + 29)
    out.settings.update(nc4=centres is not None, skipped={k: SKIPPED_STAGES[k] for k in ("lidar", "fourier")},
                        seconds=time.perf_counter() - t0)
    return out


def representation_stage(subject: Subject, fs: FeatureSet, data: Any, config: Any, probes: Any,
                         progress: ProgressFactory = null_progress, every: FeatureSet | None = None,
                         block_results: Sequence[Any] = ()) -> tuple[MetricSet | None, dict[int, MetricSet]]:
    """:func:`checkpoint_metrics` as ``run_analysis`` calls it, with its options (``AnalysisConfig``).

    ``every`` holds every block read (``--layers``): with several, the block x block CKA matrix of
    this checkpoint goes into ``details['cka_blocks']`` and every block gets its own metrics
    (:func:`umae_eval.pipeline.block_metrics.block_metric_sets`; ``block_results``, the layer-wise
    stage's, give each block's linear-probe predictions for NC4): the second item, block ->
    MetricSet (empty with one block). (None, {}) when the features lost rows (a lazy set that
    could not decode some test images), since the view passes need the images behind each row.
    """
    if len(fs.y_test) != len(data.y_test):
        return None, {}
    pred = probes.predictions.get("linear_accuracy") if probes is not None else None
    if subject.encoder is None:  # features read from files: the metrics of the features alone
        return feature_metrics(subject, fs, predictions=pred, seed=config.seed, n_boot=config.n_boot,
                               progress=progress), {}
    main = every.blocks[-1] if every is not None and every.blocks else None  # the block fs holds
    profiles = block_fourier(subject, fourier_images_of(data.x_test, FOURIER_IMAGES, config.seed),
                             device=config.device, progress=progress)
    out = checkpoint_metrics(subject, fs, data.x_test, predictions=pred, mask_ratio=config.mask_ratio,
                             pool=config.pool, seed=config.seed, n_boot=config.n_boot, device=config.device,
                             batch_size=config.batch_size, block=main, final_norm=config.final_norm,
                             fourier_blocks=profiles, progress=progress)
    cols = block_columns(every)
    per_block: dict[int, MetricSet] = {}
    if cols is not None and every is not None:
        from umae_eval.pipeline.block_metrics import block_metric_sets

        with progress(f"{subject.name}: CKA block x block", total=None):
            out.details["cka_blocks"] = _cka_blocks(cols, None, config.seed + 41, config.n_boot)
        per_block = block_metric_sets(subject, every, data.x_test, block_results=block_results, fourier=profiles,
                                      mask_ratio=config.mask_ratio, pool=config.pool, seed=config.seed,
                                      n_boot=config.n_boot, device=config.device, batch_size=config.batch_size,
                                      final_norm=config.final_norm, progress=progress)
    return out, per_block


def representation_json(sets: dict[str, MetricSet], pairs: dict[str, MetricSet],
                        by_block: dict[str, dict[int, MetricSet]] | None = None) -> dict[str, Any]:
    """results.json's ``representation_metrics``: intervals, paired differences and their sentences,
    pairs; with several blocks read, ``by_block`` rows and paired differences per block."""
    from umae_eval.pipeline.metric_sentences import difference_sentences

    diffs = metric_differences(sets)
    out: dict[str, Any] = {
        "intervals": {n: {m: iv.to_json() for m, iv in per.items()} for n, per in metric_intervals(sets).items()},
        "differences": diffs, "sentences": difference_sentences(diffs, sets),
        "interval": "95% bootstrap over test images (the same resamples for every checkpoint: paired), centred "
                    "on the estimate; covers test-image resampling only, not the masks' or the pre-training seed",
        "pairs": {k: {**v.to_json(), "intervals": {m: centred_interval(v.values[m], r).to_json()
                                                    for m, r in v.resamples.items()}}
                  for k, v in pairs.items()}}
    if by_block:
        from umae_eval.pipeline.block_metrics import block_differences, block_rows

        out["by_block"] = {"rows": block_rows(by_block), "differences": block_differences(by_block)}
    return out
