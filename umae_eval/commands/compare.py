"""`umae compare`: probe + collapse measures for several checkpoints, one report, one verdict.

Checkpoints of mixed layouts (official MAE, U-MAE, timm, umae) can be compared in one call;
each gets a short display name (file stem, disambiguated, or ``--label``). Parses the
options, runs :func:`umae_eval.pipeline.run_analysis` and hands the results to
:func:`umae_eval.report.analysis.write_analysis`.
"""

from __future__ import annotations

from umae_eval.options import (
    BackendOpt,
    BatchSizeOpt,
    BootstrapOpt,
    CkptsArg,
    DataModeOpt,
    DataOpt,
    DeviceOpt,
    EmbedOpt,
    FeatureDtypeOpt,
    KOpt,
    LabelOpt,
    MaskRatioOpt,
    MaxTestOpt,
    MaxTrainOpt,
    MaxTrainPerClassOpt,
    MaxViewsOpt,
    MethodsOpt,
    NormOpt,
    NumHeadsOpt,
    OutOpt,
    PerClassOpt,
    PoolOpt,
    ProtocolOpt,
    RandomInitOpt,
    SeedOpt,
    SkipBadOpt,
    TemperatureOpt,
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


def compare(
    ckpts: CkptsArg,
    data: DataOpt,
    pool: PoolOpt = "cls",
    methods: MethodsOpt = "mean,linear,knn",
    k: KOpt = "10,20,200",
    temperature: TemperatureOpt = 0.07,
    protocol: ProtocolOpt = "fast",
    backend: BackendOpt = "torch",
    bootstrap: BootstrapOpt = 2000,
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
) -> None:
    """Compare checkpoints: probes with 95% intervals and paired differences, collapse measures, maps.

    Writes results.json, report.html, figures/ and CSVs (ranking, accuracy, intervals,
    differences, collapse, singular_values, maps) into --out.

    Example:  umae compare mae.pth u-mae.pth vit_base_patch16_224.mae.safetensors --data demo --random-init
    """
    from umae_eval.analysis import load_data, load_subjects
    from umae_eval.pipeline import run_analysis, timed
    from umae_eval.progress import rich_progress, say
    from umae_eval.report.analysis import write_analysis
    from umae_eval.report.console import announce, print_analysis
    from umae_eval.staging import begin_output

    config = analysis_config(pool=pool, methods=methods, k=k, temperature=temperature, protocol=protocol,
                             backend=backend, embed=embed, per_class=per_class, mask_ratio=mask_ratio,
                             max_views=max_views, device=device, batch_size=batch_size, seed=seed,
                             bootstrap=bootstrap)
    check_labels(label)
    stage = begin_output(out_dir_for(out, "compare"))  # refuses an unwritable --out before the work
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
    written = stage.commit(write_analysis(stage.path, "compare", res, random_init=random_init,
                             title="umae compare: probes and collapse measures"))
    print_analysis(res, written)
