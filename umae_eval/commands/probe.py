"""`umae probe`: mean classifier, linear probe and kNN on frozen features of each checkpoint.

Also holds the probe stage (options, running, tables) that ``compare`` reuses; the pieces every
checkpoint-analysis command shares live in :mod:`umae_eval.commands.shared`.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from typing import Annotated, Any

import pandas as pd
import typer

from umae_eval import analysis as A
from umae_eval.commands.common import (
    BatchSizeOpt,
    DataModeOpt,
    DataOpt,
    DeviceOpt,
    FeatureDtypeOpt,
    MaxTrainPerClassOpt,
    NormOpt,
    NumHeadsOpt,
    OutOpt,
    SeedOpt,
    SkipBadOpt,
    TrustPickleOpt,
    WorkersOpt,
    data_options,
)
from umae_eval.commands.shared import (
    CkptsArg,
    LabelOpt,
    MaxTestOpt,
    MaxTrainOpt,
    PoolOpt,
    add_common_sections,
    base_settings,
    check_choice,
    load_subjects_announced,
    out_dir_for,
    print_outputs,
    provenance,
    resolve_device_name,
    settings_line,
)
from umae_eval.progress import rich_progress, say
from umae_eval.staging import begin_output

# --------------------------------------------------------------------------- shared options

MethodsOpt = Annotated[str, typer.Option("--methods", help="Probes to run, comma-separated: mean, linear, knn.")]
KOpt = Annotated[str, typer.Option("--k", help="Neighbour counts of the kNN probe, comma-separated.")]
TemperatureOpt = Annotated[float, typer.Option("--temperature", min=1e-6,
                                               help="Temperature of the weighted kNN vote (InstDisc/DINO).")]
ProtocolOpt = Annotated[str, typer.Option("--protocol", help="Linear probe recipe: fast (quick, default) or "
                                                             "mae (the MAE paper's BatchNorm + LARS recipe).")]
BackendOpt = Annotated[str, typer.Option("--backend", help="Linear probe backend: torch or sklearn.")]



# --------------------------------------------------------------------------- probe work


def probe_options(methods: str, k: str, protocol: str, backend: str, pool: str) -> dict[str, Any]:
    """Validate the probe options; returns methods (tuple), ks (tuple), protocol, backend, pool."""
    return {
        "methods": A.parse_choices(methods, A.PROBE_METHODS, "--methods"),
        "ks": A.parse_ints(k, "--k"),
        "protocol": check_choice(protocol, ("fast", "mae"), "--protocol"),
        "backend": check_choice(backend, ("torch", "sklearn"), "--backend"),
        "pool": check_choice(pool, ("cls", "avg"), "--pool"),
    }


def accuracy_frame(per_ckpt: Mapping[str, A.ProbeSummary], subjects: Sequence[A.Subject]) -> pd.DataFrame:
    """One row per checkpoint: name, layout, sha256 prefix, then each accuracy column (percent)."""
    rows = []
    for s in subjects:
        if s.name not in per_ckpt:
            continue
        rows.append({"checkpoint": s.name, "layout": s.info.layout, "sha256": s.info.sha256[:12],
                     **per_ckpt[s.name].accuracies})
    return pd.DataFrame(rows)


def add_probe_sections(report: Any, acc: pd.DataFrame, settings: Mapping[str, Any]) -> None:
    """The accuracy table and bar chart."""
    from umae_eval.report import figures as F

    fig_settings = {k: settings[k] for k in ("pool", "methods", "k", "temperature", "protocol", "backend", "seed")
                    if k in settings}
    fig_settings["data"] = settings["data"]["spec"]
    fig_settings["n_train/n_test"] = f"{settings['data']['n_train']}/{settings['data']['n_test']}"
    fig_settings.update(provenance(settings))
    report.add_table("Accuracy (%)", acc,
                     caption="Test accuracy of probes on frozen features: mean classifier (cosine to "
                             "class means, Sec. 4.1), linear probe, weighted kNN per k.",
                     settings=fig_settings)
    cols = [c for c in acc.columns if c.endswith("accuracy") or "accuracy@" in c]
    per = {row["checkpoint"]: {c: row[c] for c in cols} for _, row in acc.iterrows()}
    report.add_figure("Accuracy by probe", F.accuracy_figure(
        per, settings_line=settings_line(settings, ("pool", "protocol", "seed", "data"))), settings=fig_settings)


def run_probe_stage(subjects: Sequence[A.Subject], data: A.DataSubset, opts: Mapping[str, Any], *,
                    temperature: float, device: str, batch_size: int, seed: int,
                    timings: dict[str, float]) -> tuple[dict[str, A.FeatureSet], dict[str, A.ProbeSummary]]:
    """Features + probes for each subject, with progress on screen and stage timings recorded."""
    feats: dict[str, A.FeatureSet] = {}
    probes: dict[str, A.ProbeSummary] = {}
    probe_device = resolve_device_name(device)
    for s in subjects:
        with A.timed(timings, f"features:{s.name}"):
            feats[s.name] = A.compute_features(s, data, pool=opts["pool"], device=device,
                                               batch_size=batch_size, progress=rich_progress)
        say(f"{s.name}: probing ({', '.join(opts['methods'])}) on {len(data.y_train)} train / "
            f"{len(data.y_test)} test features")
        with A.timed(timings, f"probes:{s.name}"):
            probes[s.name] = A.run_probes(feats[s.name], methods=opts["methods"], ks=opts["ks"],
                                          temperature=temperature, protocol=opts["protocol"],
                                          backend=opts["backend"], seed=seed, device=probe_device,
                                          progress=rich_progress)
    return feats, probes


# --------------------------------------------------------------------------- the command


def probe(
    ckpts: CkptsArg,
    data: DataOpt,
    pool: PoolOpt = "cls",
    methods: MethodsOpt = "mean,linear,knn",
    k: KOpt = "10,20,200",
    temperature: TemperatureOpt = 0.07,
    protocol: ProtocolOpt = "fast",
    backend: BackendOpt = "torch",
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
    """Probe frozen features: mean classifier, linear probe, kNN (accuracy in %).

    Writes results.json, accuracy.csv and report.html into --out.

    Example:  umae probe mae.pth umae.pth --data ../shared/data/cifar10-jpeg.tar.gz --k 10,20,200
    """
    t_start = time.perf_counter()
    opts = probe_options(methods, k, protocol, backend, pool)
    stage = begin_output(out_dir_for(out, "probe"))  # refuses an unwritable --out before the work
    timings: dict[str, float] = {}
    with A.timed(timings, "load_checkpoints"):
        subjects = load_subjects_announced(ckpts, label=label, trust_pickle=trust_pickle, seed=seed,
                                           num_heads=num_heads, norm=norm)
    with A.timed(timings, "load_data"):
        ds = A.load_data(data, max_train=max_train, max_test=max_test, seed=seed, progress=rich_progress,
                         **data_options(data_mode, workers, skip_bad_images, max_train_per_class, feature_dtype))
    _, probes = run_probe_stage(subjects, ds, opts, temperature=temperature, device=device,
                                batch_size=batch_size, seed=seed, timings=timings)

    settings = base_settings(subjects, ds, data, pool=opts["pool"], methods=list(opts["methods"]),
                             k=list(opts["ks"]), temperature=temperature, protocol=opts["protocol"],
                             backend=opts["backend"], seed=seed, device=resolve_device_name(device),
                             batch_size=batch_size)
    acc = accuracy_frame(probes, subjects)
    timings["total"] = time.perf_counter() - t_start
    results = {
        "checkpoints": {name: {"accuracies": p.accuracies, "probes": p.results, "seconds": p.seconds}
                        for name, p in probes.items()},
        "timings_s": timings,
    }
    from umae_eval.report.writer import HtmlReport, write_outputs

    report = HtmlReport("umae probe: frozen-feature accuracy", command="probe")
    add_common_sections(report, settings, subjects)
    add_probe_sections(report, acc, settings)
    written = stage.commit(write_outputs(stage.path, "probe", settings, results, {"accuracy": acc}, report))
    print_outputs("Accuracy (%)", acc.drop(columns=["sha256"]), written)
