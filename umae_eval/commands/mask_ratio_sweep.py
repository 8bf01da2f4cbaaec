"""`umae mask-ratio-sweep`: intra- and inter-class distances of masked views against the mask
ratio (paper Sec. 4.2, Fig. 2b/2c), the sweet spot, the label error alpha and the spectrum of
the mask-induced augmentation graph, in pixel space or (with a checkpoint) feature space.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from umae_eval.errors import UmaeError
from umae_eval.options import (
    DataModeOpt,
    DataOpt,
    DeviceOpt,
    NormOpt,
    NumHeadsOpt,
    OutOpt,
    SeedOpt,
    TrustPickleOpt,
    loader_options,
)
from umae_eval.progress import PlannedProgress, rich_progress, say, stdout

COMMAND = "mask-ratio-sweep"
PIXEL_SCALING = "pixels divided by 255 (values in [0, 1]); no normalisation"


RatiosOpt = Annotated[str, typer.Option(
    "--ratios", help="Mask ratios: START:STOP:STEP (STOP included) or a comma list; each in [0, 1).")]
#: Below this many pairs a sweep warns that its intervals are too wide for a trend.
_FEW_PAIRS = 30
PairsOpt = Annotated[int, typer.Option(
    "--pairs", min=2, help="Intra-class pairs, and as many inter-class pairs (class-balanced, seeded); "
    "at least 2 (one pair has no spread to bootstrap), and below 30 the intervals are wide.")]
ViewsOpt = Annotated[int, typer.Option(
    "--views", min=1, help="K mask draws per pair and ratio (mean over K, or min for closest-view).")]
EstimatorOpt = Annotated[Optional[str], typer.Option(
    "--estimator", help="Comma list, default all. Pixel space: all-pairs, aligned, closest-view, "
                        "masked-image, shared-masked-image. Feature space (--checkpoint): own-masks, "
                        "shared-mask, closest-view.")]
PatchSizeOpt = Annotated[Optional[int], typer.Option(
    "--patch-size", min=1, help="Pixel-space patch side (default 4: 64 patches at 32 px). With "
                                "--checkpoint the encoder's patches are used.")]
CheckpointOpt = Annotated[Optional[Path], typer.Option(
    "--checkpoint", help="Measure in the feature space of this MAE/U-MAE encoder (l2 and cosine).")]
BootOpt = Annotated[int, typer.Option("--bootstrap", min=10, help="Bootstrap resamples of the pairs.")]
LabelImagesOpt = Annotated[int, typer.Option(
    "--label-images", min=1, help="Test images (x K views) for the label error alpha.")]
LabelTrainOpt = Annotated[int, typer.Option(
    "--label-train", min=1, help="Feature space: train images whose masked views give the class means.")]
GraphImagesOpt = Annotated[int, typer.Option(
    "--graph-images", min=2, help="Images in the augmentation graph (x --graph-views nodes).")]
GraphViewsOpt = Annotated[int, typer.Option("--graph-views", min=1, help="Masked views per graph image.")]
BatchOpt = Annotated[int, typer.Option(
    "--batch-size", min=1, help="Pixel space: pairs per vectorised step. Feature space: images per "
                                "forward pass.")]
PoolOpt = Annotated[str, typer.Option("--pool", help="Feature space: cls or avg (visible patch tokens).")]


def mask_ratio_sweep(
    data: DataOpt,
    ratios: RatiosOpt = "0:0.95:0.05",
    pairs: PairsOpt = 2000,
    views: ViewsOpt = 8,
    estimator: EstimatorOpt = None,
    patch_size: PatchSizeOpt = None,
    checkpoint: CheckpointOpt = None,
    trust_pickle: TrustPickleOpt = False,
    num_heads: NumHeadsOpt = None,
    norm: NormOpt = None,
    pool: PoolOpt = "cls",
    bootstrap: BootOpt = 1000,
    label_images: LabelImagesOpt = 1000,
    label_train: LabelTrainOpt = 2000,
    graph_images: GraphImagesOpt = 500,
    graph_views: GraphViewsOpt = 2,
    seed: SeedOpt = 0,
    device: DeviceOpt = "auto",
    batch_size: BatchOpt = 250,
    out: OutOpt = None,
    data_mode: DataModeOpt = "auto",
) -> None:
    """Intra/inter-class distance of masked views vs mask ratio (paper Fig. 2b/2c), sweet spot,
    label error alpha and the augmentation-graph spectrum.

    Without --checkpoint the distances are measured on pixels (named estimators, see
    the README); with it, on the encoder's features of the masked views.

    Example:  umae mask-ratio-sweep --data ../shared/data/cifar10-jpeg.tar.gz --pairs 2000 --views 8

    Example:  umae mask-ratio-sweep --data demo --checkpoint mae.pth --pairs 200 --ratios 0:0.9:0.1
    """
    from umae_eval.data.choose import open_dataset
    from umae_eval.features import resolve_device
    from umae_eval.maskratio import export
    from umae_eval.maskratio.masks import parse_ratios, validate_ratios
    from umae_eval.maskratio.pairs import check_pairs
    from umae_eval.maskratio.work import sweep_plan
    from umae_eval.maskratio.sweep import (
        SweepConfig,
        checkpoint_view_encoder,
        parse_estimators,
        run_sweep,
    )
    from umae_eval.provenance import default_out_dir, versions
    from umae_eval.report import write_outputs
    from umae_eval.report.sweep import sweep_report
    from umae_eval.staging import begin_output

    t_start = time.perf_counter()
    ratio_list = parse_ratios(ratios)
    validate_ratios(ratio_list, None)
    space = "pixel" if checkpoint is None else "feature"
    estimators = parse_estimators(estimator, space)
    pool = pool.strip().lower()
    if pool not in ("cls", "avg"):
        raise UmaeError(f"--pool {pool!r}: choose cls or avg")
    patch = 4 if patch_size is None else patch_size
    stage = begin_output(Path(out) if out is not None else default_out_dir(COMMAND))  # unwritable: refused now
    dev = resolve_device(device)

    encoder = None
    ckpt_settings: dict[str, Any] | None = None
    if checkpoint is not None:
        from umae_eval.checkpoints import load_encoder
        from umae_eval.options import check_encoder
        from umae_eval.report.console import warn_metadata_conflicts

        loaded = load_encoder(checkpoint, trust_pickle=trust_pickle, **loader_options(num_heads, norm))
        check_encoder(loaded)
        say(loaded.info.summary())
        warn_metadata_conflicts(loaded)
        arch = loaded.info.arch
        if patch_size is not None and patch_size != arch.patch_size:
            raise UmaeError(f"--patch-size {patch_size} differs from the checkpoint's patch size "
                            f"{arch.patch_size}; with --checkpoint the encoder's patches are used")
        patch = arch.patch_size
        validate_ratios(ratio_list, arch.num_patches)
        encoder = checkpoint_view_encoder(loaded.model, img_size=arch.img_size, patch_size=arch.patch_size,
                                          mean=loaded.info.mean, std=loaded.info.std, device=dev,
                                          batch_size=batch_size, pool=pool)
        from umae_eval.checkpoints.naming import metadata_name

        ckpt_settings = {"path": str(checkpoint), "name": metadata_name(loaded.info) or Path(checkpoint).name,
                         "sha256": loaded.info.sha256, "layout": loaded.info.layout,
                         "arch": arch.describe(), "img_size": arch.img_size, "mean": list(loaded.info.mean),
                         "std": list(loaded.info.std), "pool": pool}
        say(f"checkpoint: {loaded.info.summary()}")

    t0 = time.perf_counter()
    # The sweep uses a few thousand images: file-based sets are read lazily so that only
    # those are decoded (--data-mode memory decodes the whole set, as before).
    mode = data_mode.strip().lower()
    ds = open_dataset(data, mode="lazy" if mode == "auto" else mode, progress=rich_progress)
    x_test, y_test, x_train, y_train = _sweep_arrays(ds, encoder_size=None if encoder is None else
                                                     loaded.info.arch.img_size, label_train=label_train, seed=seed)
    load_s = time.perf_counter() - t0
    h, w = x_test.shape[1:3]
    if encoder is None and (h % patch or w % patch):
        raise UmaeError(f"--patch-size {patch} does not divide the {h}x{w} images")
    num_patches = encoder.num_patches if encoder is not None else (h // patch) * (w // patch)
    validate_ratios(ratio_list, num_patches)
    check_pairs(ds.y_test, pairs)
    if pairs < _FEW_PAIRS:
        warnings.warn(f"--pairs {pairs}: with fewer than {_FEW_PAIRS} pairs the bootstrap intervals are wide "
                      "and a trend across mask ratios may be noise; use --pairs 200 or more for a finding")
    say(f"data: {ds.describe()}")

    config = SweepConfig(ratios=ratio_list, views=views, pairs=pairs, patch_size=patch,
                         estimators=estimators, seed=seed, n_boot=bootstrap, batch_size=batch_size,
                         label_images=label_images, label_train=label_train, graph_images=graph_images,
                         graph_views=graph_views)
    settings: dict[str, Any] = {
        "data": {"source": ds.source, "format": ds.format, "fingerprint": ds.fingerprint,
                 "data_mode": "lazy" if getattr(ds, "lazy", False) else "memory",
                 "n_train": int(len(ds.y_train)), "n_test": int(len(ds.y_test)),
                 "n_train_used_for_class_means": int(len(y_train)), "transform": getattr(x_test, "transform", "as stored"),
                 "image_size": f"{h}x{w}", "class_names": list(ds.class_names),
                 **({"class_ids": list(ds.class_ids)} if ds.class_ids != ds.class_names else {}),
                 **({"notes": list(ds.notes)} if ds.notes else {})},
        "split": "test (pairs, label-error views, graph views); train (class means)",
        "space": space,
        "estimators": list(estimators),
        "metrics": ["l2", "cosine"] if space == "feature" else ["l2"],
        "mask_ratios": ratio_list,
        "pairs": pairs,
        "views": views,
        "patch_size": patch,
        "num_patches": num_patches,
        "pixel_scaling": PIXEL_SCALING if space == "pixel" else "checkpoint normalisation (mean/std)",
        "masking": "MAE: keep int(L(1-rho)) patches with the smallest U[0,1] noise; noise reused "
                   "across rho (nested masks)",
        "seed": seed,
        "bootstrap": bootstrap,
        "label_images": label_images,
        "label_train": label_train if space == "feature" or getattr(ds, "lazy", False) else "all train images",
        "graph_images": graph_images,
        "graph_views": graph_views,
        "graph_kernel": "Gaussian, median-heuristic bandwidth, self-loops",
        "device": str(dev),
        "batch_size": batch_size,
        "checkpoint": ckpt_settings,
        "versions": versions(),
    }

    plan = sweep_plan(space=space, ratios=len(ratio_list), pairs=pairs, views=views, num_patches=num_patches,
                      n_classes=ds.num_classes, label_images=label_images, graph_nodes=graph_images * graph_views,
                      n_boot=bootstrap, series=len(estimators) * len(settings["metrics"]))
    say(plan.summary)  # the work, stated before it starts; the bar below times it
    with PlannedProgress("mask-ratio sweep", plan.stages) as planned:
        result = run_sweep(x_test, y_test, x_train, y_train, config, n_classes=ds.num_classes,
                           encoder=encoder, device=dev, progress=planned)

    results = export.result_to_dict(result)
    results["timings"] = {"load_data_s": load_s, **result.timings,
                          "total_s": time.perf_counter() - t_start}
    tables = {
        "sweet_spots": export.sweet_spot_table(result),
        "distances": export.distance_table(result),
        "label_error": export.label_error_table(result),
        "graph": export.graph_table(result),
    }
    report = sweep_report(result, settings, tables, n_classes=ds.num_classes)
    written = stage.commit(write_outputs(stage.path, COMMAND, settings, results, tables, report))

    from umae_eval.report.console import sweep_table

    table = sweep_table(tables["sweet_spots"], ratio_list, space)
    stdout.print(table)
    for key, path in written.items():
        stdout.print(f"{key}: {path}", highlight=False, soft_wrap=True)
    say(f"done in {time.perf_counter() - t_start:.1f} s")


__all__ = ["mask_ratio_sweep"]


def _sweep_arrays(ds: Any, *, encoder_size: int | None, label_train: int, seed: int) -> tuple[Any, Any, Any, Any]:
    """``x_test, y_test, x_train, y_train`` for the sweep: arrays, or lazy views that decode on use.

    A lazy set is viewed at the checkpoint's input side with its evaluation transform (feature
    space), else at the images' native side when the first images share one (else 224, fit);
    the train split is cut to ``label_train`` class-balanced images, the only ones the class
    means then need.
    """
    import numpy as np

    if not getattr(ds, "lazy", False):
        return ds.x_test, ds.y_test, ds.x_train, ds.y_train
    from umae_eval.data.lazy import native_size
    from umae_eval.data.transforms import eval_rule
    from umae_eval.maskratio.pairs import sample_balanced

    if encoder_size is not None:
        side, rule = encoder_size, eval_rule(encoder_size)
    else:
        hw = native_size(ds.test, ds.source)
        side, rule = (min(hw), "fit") if hw is not None else (224, "fit")
    idx = np.sort(sample_balanced(ds.y_train, label_train, np.random.default_rng([seed, 77])))
    train = ds.view("train", side, rule).take(idx)
    return ds.view("test", side, rule), ds.y_test, train, ds.y_train[idx]
