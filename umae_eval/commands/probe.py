"""`umae probe`: mean classifier, linear probe and kNN on frozen features of each checkpoint.

Parses the options and hands them to :func:`umae_eval.analysis_command.analyse_checkpoints`
(the pipeline with probes only, then the report).
"""

from __future__ import annotations

from umae_eval.options import (
    BackendOpt,
    BatchSizeOpt,
    BootstrapOpt,
    AnalysisCkptsArg,
    AnalysisDataOpt,
    DataModeOpt,
    DeviceOpt,
    DrawsOpt,
    FeatureDtypeOpt,
    FeaturesOpt,
    KOpt,
    LabelFractionOpt,
    LabelOpt,
    MaxTestOpt,
    MaxTrainOpt,
    MaxTrainPerClassOpt,
    MethodsOpt,
    NormOpt,
    NumHeadsOpt,
    OutOpt,
    FinalNormOpt,
    LayersOpt,
    PoolOpt,
    ProbePathOpt,
    ProtocolOpt,
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


def probe(
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
    """Probe frozen features: mean classifier, linear probe, kNN (accuracy in %, 95% intervals).

    Writes results.json, accuracy.csv, intervals.csv, figures/ and report.html into --out.

    Example:  umae probe mae.pth umae.pth --data ../shared/data/cifar10-jpeg.tar.gz --k 10,20,200

    Example:  umae probe mae.pth --data demo --layers 3,6,-1 --pool cls+avg --final-norm off

    Example:  umae probe --features my_features.npz --k 20   (features from your own pipeline)
    """
    from umae_eval.analysis_command import analyse_checkpoints, analyse_features
    from umae_eval.feature_options import check_feature_options

    given = dict(pool=pool, layers=layers, final_norm=final_norm, trust_pickle=trust_pickle, num_heads=num_heads,
                 norm=norm, data_mode=data_mode, workers=workers, skip_bad_images=skip_bad_images,
                 feature_dtype=feature_dtype, batch_size=batch_size)
    from_files = check_feature_options(features, ckpts, data, given, methods)  # refusals before any other check
    config = analysis_config(pool=pool, layers=layers, final_norm=final_norm, methods=methods, k=k, temperature=temperature, protocol=protocol,
                             backend=backend, probe_path=probe_path, device=device, batch_size=batch_size, seed=seed, bootstrap=bootstrap,
                             label_fraction=label_fraction, shots=shots, draws=draws)
    if from_files:
        analyse_features("probe", "umae probe: frozen-feature accuracy", config, features,
                         label=label, out=out, max_train=max_train, max_test=max_test,
                         max_train_per_class=max_train_per_class)
        return
    analyse_checkpoints("probe", "umae probe: frozen-feature accuracy", config, ckpts, data, label=label, out=out,
                        trust_pickle=trust_pickle, loader=loader_options(num_heads, norm), max_train=max_train,
                        max_test=max_test, data_opts=data_options(data_mode, workers, skip_bad_images,
                                                                  max_train_per_class, feature_dtype))
