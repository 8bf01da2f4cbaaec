"""`umae collapse-report`: dimensional collapse of each checkpoint's features, as in the paper.

Spectra (centred and raw; Fig. 1b), effective rank, RankMe, alpha-ReQ, feature std, alignment
and uniformity of two masked views, the U-MAE uniformity value, t-SNE/UMAP maps (Fig. 3a) and,
where a checkpoint's run folder has ``metrics.jsonl``, the curves along training (Fig. 1c, 3b).
Parses the options and hands them to :func:`umae_eval.analysis_command.analyse_checkpoints`
(the pipeline without probes, then the report).
"""

from __future__ import annotations

from umae_eval.options import (
    BatchSizeOpt,
    BootstrapOpt,
    AnalysisCkptsArg,
    AnalysisDataOpt,
    DataModeOpt,
    DeviceOpt,
    EmbedOpt,
    FeatureDtypeOpt,
    FeaturesOpt,
    LabelOpt,
    MapClassesOpt,
    MaskRatioOpt,
    MaxTestOpt,
    MaxTrainOpt,
    MaxTrainPerClassOpt,
    MaxViewsOpt,
    NormOpt,
    NumHeadsOpt,
    OutOpt,
    PerClassOpt,
    FinalNormOpt,
    LayersOpt,
    PoolOpt,
    RandomInitOpt,
    SeedOpt,
    SkipBadOpt,
    TrustPickleOpt,
    WorkersOpt,
    analysis_config,
    data_options,
    loader_options,
)


def collapse_report(
    ckpts: AnalysisCkptsArg = None,
    data: AnalysisDataOpt = None,
    features: FeaturesOpt = None,
    pool: PoolOpt = "cls",
    layers: LayersOpt = "last",
    final_norm: FinalNormOpt = "on",
    embed: EmbedOpt = "tsne",
    per_class: PerClassOpt = 500,
    map_classes: MapClassesOpt = None,
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

    Example:  umae collapse-report mae.pth umae.pth --data demo --layers all   (ranks and probes by block)

    Example:  umae collapse-report mae.pth --data cifar-100-python --map-classes 10   (Fig. 3a on 10 classes)

    Example:  umae collapse-report --features dino_feats/ --features ibot.safetensors --label DINO --label iBOT
    """
    from umae_eval.analysis_command import analyse_checkpoints, analyse_features
    from umae_eval.feature_options import check_feature_options

    given = dict(pool=pool, layers=layers, final_norm=final_norm, trust_pickle=trust_pickle, num_heads=num_heads,
                 norm=norm, data_mode=data_mode, workers=workers, skip_bad_images=skip_bad_images,
                 feature_dtype=feature_dtype, batch_size=batch_size, random_init=random_init,
                 mask_ratio=mask_ratio, max_views=max_views)
    from_files = check_feature_options(features, ckpts, data, given)  # refusals before any other check
    config = analysis_config(pool=pool, layers=layers, final_norm=final_norm, embed=embed, per_class=per_class, map_classes=map_classes,
                             mask_ratio=mask_ratio,
                             max_views=max_views, device=device, batch_size=batch_size, seed=seed,
                             bootstrap=bootstrap)
    if from_files:
        analyse_features("collapse-report", "umae collapse-report: dimensional collapse of features", config, features,
                         label=label, out=out, max_train=max_train, max_test=max_test,
                         max_train_per_class=max_train_per_class)
        return
    analyse_checkpoints("collapse-report", "umae collapse-report: dimensional collapse of features", config, ckpts,
                        data, label=label, out=out, trust_pickle=trust_pickle, random_init=random_init,
                        loader=loader_options(num_heads, norm), max_train=max_train, max_test=max_test,
                        data_opts=data_options(data_mode, workers, skip_bad_images, max_train_per_class,
                                               feature_dtype))
