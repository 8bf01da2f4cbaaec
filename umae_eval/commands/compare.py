"""`umae compare`: probe + collapse measures for several checkpoints, one report, one verdict.

Checkpoints of mixed layouts (official MAE, U-MAE, timm, umae) can be compared in one call;
each gets a short display name (file stem, disambiguated, or ``--label``). Parses the
options and hands them to :func:`umae_eval.analysis_command.analyse_checkpoints` (the whole
pipeline, then the report).
"""

from __future__ import annotations

from dataclasses import replace

from umae_eval.options import (
    AttentionImagesOpt,
    BackendOpt,
    BatchSizeOpt,
    BootstrapOpt,
    AnalysisCkptsArg,
    AnalysisDataOpt,
    DataModeOpt,
    DeviceOpt,
    DrawsOpt,
    EmbedOpt,
    FeatureDtypeOpt,
    FeaturesOpt,
    KOpt,
    LabelFractionOpt,
    LabelOpt,
    MapClassesOpt,
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
    FinalNormOpt,
    LayersOpt,
    PoolOpt,
    ProbePathOpt,
    ProtocolOpt,
    RandomInitOpt,
    SeedOpt,
    ShotsOpt,
    SkipBadOpt,
    TemperatureOpt,
    TrustPickleOpt,
    WorkersOpt,
    analysis_config,
    data_options,
    loader_options,
)


def compare(
    ckpts: AnalysisCkptsArg = None,
    data: AnalysisDataOpt = None,
    features: FeaturesOpt = None,
    pool: PoolOpt = "cls",
    layers: LayersOpt = "last",
    final_norm: FinalNormOpt = "on",
    methods: MethodsOpt = "mean,linear,knn",
    k: KOpt = "10,20,200",
    label_fraction: LabelFractionOpt = None,
    shots: ShotsOpt = None,
    draws: DrawsOpt = 5,
    temperature: TemperatureOpt = 0.07,
    protocol: ProtocolOpt = "fast",
    backend: BackendOpt = "torch",
    probe_path: ProbePathOpt = "auto",
    bootstrap: BootstrapOpt = 2000,
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
    attention_images: AttentionImagesOpt = 256,
) -> None:
    """Compare checkpoints: probes with 95% intervals and paired differences, collapse measures, maps.

    Writes results.json, report.html, figures/ and CSVs (ranking, accuracy, intervals,
    differences, collapse, singular_values, maps, attention_stats) into --out. A `umae finetune`
    checkpoint also gets its own trained head's top-1 / top-5 on the test split, in a section of
    its own (finetuned_classifiers.csv): a fine-tuned result, never a frozen-feature one.

    Example:  umae compare mae.pth u-mae.pth vit_base_patch16_224.mae.safetensors --data demo --random-init

    The protocol matrix (every block, attentive probe, 1% and 10% labels, 5-shot), each later
    checkpoint minus the first under every protocol:

    Example:  umae compare mae.pth u-mae.pth --data demo --layers all --methods mean,linear,knn,attentive
    --label-fraction 0.01,0.1 --shots 5

    A fine-tuned checkpoint beside its source (its head's top-1 in its own section), no attention statistics:

    Example:  umae compare runs/ft-mae/last.pth mae.pth --data demo --attention-images 0

    Example:  umae compare --features dino.npz --features ibot.npz --label DINO --label iBOT
    """
    from umae_eval.analysis_command import analyse_checkpoints, analyse_features
    from umae_eval.feature_options import check_feature_options

    given = dict(pool=pool, layers=layers, final_norm=final_norm, trust_pickle=trust_pickle, num_heads=num_heads,
                 norm=norm, data_mode=data_mode, workers=workers, skip_bad_images=skip_bad_images,
                 feature_dtype=feature_dtype, batch_size=batch_size, random_init=random_init,
                 mask_ratio=mask_ratio, max_views=max_views)
    from_files = check_feature_options(features, ckpts, data, given, methods)  # refusals before any other check
    config = analysis_config(pool=pool, layers=layers, final_norm=final_norm, methods=methods, k=k, temperature=temperature, protocol=protocol,
                             backend=backend, probe_path=probe_path, embed=embed, per_class=per_class,
                             map_classes=map_classes, mask_ratio=mask_ratio,
                             max_views=max_views, device=device, batch_size=batch_size, seed=seed,
                             bootstrap=bootstrap, label_fraction=label_fraction, shots=shots, draws=draws)
    # both need the encoder and the images, which features read from files do not have
    config = replace(config, attention_images=0 if from_files else attention_images, finetuned_heads=not from_files)
    if from_files:
        analyse_features("compare", "umae compare: probes and collapse measures", config, features,
                         label=label, out=out, max_train=max_train, max_test=max_test,
                         max_train_per_class=max_train_per_class)
        return
    analyse_checkpoints("compare", "umae compare: probes and collapse measures", config, ckpts, data,
                        label=label, out=out, trust_pickle=trust_pickle, random_init=random_init,
                        loader=loader_options(num_heads, norm), max_train=max_train, max_test=max_test,
                        data_opts=data_options(data_mode, workers, skip_bad_images, max_train_per_class,
                                               feature_dtype))
