"""`umae probe`: mean classifier, linear probe and kNN on frozen features of each checkpoint.

Parses the options, runs :func:`umae_eval.pipeline.run_analysis` (probes only) and hands the
results to :func:`umae_eval.report.analysis.write_analysis`.
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
    FeatureDtypeOpt,
    KOpt,
    LabelOpt,
    MaxTestOpt,
    MaxTrainOpt,
    MaxTrainPerClassOpt,
    MethodsOpt,
    NormOpt,
    NumHeadsOpt,
    OutOpt,
    PoolOpt,
    ProtocolOpt,
    SeedOpt,
    SkipBadOpt,
    TemperatureOpt,
    TrustPickleOpt,
    WorkersOpt,
    analysis_config,
    check_encoder,
    check_labels,
    data_options,
    loader_options,
    out_dir_for,
)


def probe(
    ckpts: CkptsArg,
    data: DataOpt,
    pool: PoolOpt = "cls",
    methods: MethodsOpt = "mean,linear,knn",
    k: KOpt = "10,20,200",
    temperature: TemperatureOpt = 0.07,
    protocol: ProtocolOpt = "fast",
    backend: BackendOpt = "torch",
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
    """
    from umae_eval.analysis import load_data, load_subjects
    from umae_eval.pipeline import run_analysis, timed
    from umae_eval.progress import rich_progress, say
    from umae_eval.report.analysis import write_analysis
    from umae_eval.report.console import announce, print_analysis
    from umae_eval.staging import begin_output

    config = analysis_config(pool=pool, methods=methods, k=k, temperature=temperature, protocol=protocol,
                             backend=backend, device=device, batch_size=batch_size, seed=seed, bootstrap=bootstrap)
    check_labels(label)
    stage = begin_output(out_dir_for(out, "probe"))  # refuses an unwritable --out before the work
    timings: dict[str, float] = {}
    with timed(timings, "load_checkpoints"):
        subjects = load_subjects(ckpts, labels=label, trust_pickle=trust_pickle, seed=seed,
                                 **loader_options(num_heads, norm))
    for s in subjects:
        check_encoder(s.encoder)
    announce(subjects)
    with timed(timings, "load_data"):
        ds = load_data(data, max_train=max_train, max_test=max_test, seed=seed, progress=rich_progress,
                       **data_options(data_mode, workers, skip_bad_images, max_train_per_class, feature_dtype))
    res = run_analysis(subjects, ds, config, spec=data, progress=rich_progress, notify=say, timings=timings)
    written = stage.commit(write_analysis(stage.path, "probe", res, title="umae probe: frozen-feature accuracy"))
    print_analysis(res, written)
