"""`umae collapse-report`: dimensional collapse of each checkpoint's features, as in the paper.

Spectra (centred and raw; Fig. 1b), effective rank, RankMe, alpha-ReQ, feature std, alignment
and uniformity of two masked views, the U-MAE uniformity value, t-SNE/UMAP maps (Fig. 3a) and,
where a checkpoint's run folder has ``metrics.jsonl``, the curves along training (Fig. 1c, 3b).
Parses the options, runs :func:`umae_eval.pipeline.run_analysis` (no probes) and hands the
results to :func:`umae_eval.report.analysis.write_analysis`.
"""

from __future__ import annotations

from umae_eval.options import (
    BatchSizeOpt,
    BootstrapOpt,
    CkptsArg,
    DataModeOpt,
    DataOpt,
    DeviceOpt,
    EmbedOpt,
    FeatureDtypeOpt,
    LabelOpt,
    MaskRatioOpt,
    MaxTestOpt,
    MaxTrainOpt,
    MaxTrainPerClassOpt,
    MaxViewsOpt,
    NormOpt,
    NumHeadsOpt,
    OutOpt,
    PerClassOpt,
    PoolOpt,
    RandomInitOpt,
    SeedOpt,
    SkipBadOpt,
    TrustPickleOpt,
    WorkersOpt,
    analysis_config,
    check_encoder,
    check_labels,
    check_visible_patches,
    data_options,
    loader_options,
    out_dir_for,
)


def collapse_report(
    ckpts: CkptsArg,
    data: DataOpt,
    pool: PoolOpt = "cls",
    embed: EmbedOpt = "tsne",
    per_class: PerClassOpt = 500,
    random_init: RandomInitOpt = False,
    mask_ratio: MaskRatioOpt = 0.75,
    max_views: MaxViewsOpt = 2000,
    device: DeviceOpt = "auto",
    batch_size: BatchSizeOpt = 256,
    seed: SeedOpt = 0,
    max_train: MaxTrainOpt = None,
    max_test: MaxTestOpt = None,
    label: LabelOpt = None,
    out: OutOpt = None,
    trust_pickle: TrustPickleOpt = False,
    num_heads: NumHeadsOpt = None,
    norm: NormOpt = None,
    data_mode: DataModeOpt = "auto",
    workers: WorkersOpt = None,
    skip_bad_images: SkipBadOpt = False,
    max_train_per_class: MaxTrainPerClassOpt = None,
    feature_dtype: FeatureDtypeOpt = "float32",
    bootstrap: BootstrapOpt = 2000,
) -> None:
    """Measure dimensional collapse: spectra, effective rank, RankMe, alignment/uniformity, maps.

    Writes results.json, collapse.csv, singular_values.csv, maps.csv, figures/ and report.html into --out.

    Example:  umae collapse-report mae.pth umae.pth --data demo --random-init --embed tsne
    """
    from umae_eval.analysis import load_data, load_subjects
    from umae_eval.pipeline import run_analysis, timed
    from umae_eval.progress import rich_progress, say
    from umae_eval.report.analysis import write_analysis
    from umae_eval.report.console import announce, print_analysis
    from umae_eval.staging import begin_output

    config = analysis_config(pool=pool, embed=embed, per_class=per_class, mask_ratio=mask_ratio,
                             max_views=max_views, device=device, batch_size=batch_size, seed=seed,
                             bootstrap=bootstrap)
    check_labels(label)
    stage = begin_output(out_dir_for(out, "collapse-report"))  # refuses an unwritable --out before the work
    timings: dict[str, float] = {}
    with timed(timings, "load_checkpoints"):
        subjects = load_subjects(ckpts, labels=label, trust_pickle=trust_pickle, seed=seed,
                                 random_init=random_init, **loader_options(num_heads, norm))
    check_visible_patches(subjects, mask_ratio)
    for s in subjects:
        check_encoder(s.encoder)
    announce(subjects)
    with timed(timings, "load_data"):
        ds = load_data(data, max_train=max_train, max_test=max_test, seed=seed, progress=rich_progress,
                       **data_options(data_mode, workers, skip_bad_images, max_train_per_class, feature_dtype))
    res = run_analysis(subjects, ds, config, spec=data, progress=rich_progress, notify=say, timings=timings)
    written = stage.commit(write_analysis(stage.path, "collapse-report", res, random_init=random_init,
                             title="umae collapse-report: dimensional collapse of features"))
    print_analysis(res, written)
