"""`umae compare`: probe + collapse measures for several checkpoints, one report, one ranking.

Checkpoints of mixed layouts (official MAE, U-MAE, timm, umae) can be compared in one call;
each gets a short display name (file stem, disambiguated, or ``--label``).
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Annotated, Optional

import pandas as pd
import typer

from umae_eval import analysis as A
from umae_eval.commands.collapse_report import (
    CollapseResult,
    EmbedOpt,
    MaskRatioOpt,
    MaxViewsOpt,
    PerClassOpt,
    RandomInitOpt,
    add_collapse_sections,
    collapse_frame,
    maps_frame,
    parse_embed,
    run_collapse_stage,
    spectra_frame,
)
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
from umae_eval.commands.probe import (
    BackendOpt,
    KOpt,
    MethodsOpt,
    ProtocolOpt,
    TemperatureOpt,
    accuracy_frame,
    add_probe_sections,
    probe_options,
    run_probe_stage,
)
from umae_eval.commands.shared import (
    CkptsArg,
    LabelOpt,
    MaxTestOpt,
    MaxTrainOpt,
    PoolOpt,
    add_common_sections,
    base_settings,
    load_subjects_announced,
    out_dir_for,
    print_outputs,
    provenance,
    resolve_device_name,
)
from umae_eval.errors import UmaeError
from umae_eval.staging import begin_output
from umae_eval.progress import rich_progress


def ranking_key(accuracy_columns: Sequence[str]) -> str:
    """The column that ranks checkpoints: linear accuracy, else kNN@20, else the first accuracy."""
    for preferred in ("linear_accuracy", A.knn_column(20), "mean_classifier_accuracy"):
        if preferred in accuracy_columns:
            return preferred
    if not accuracy_columns:
        raise UmaeError("--methods gave no accuracy to rank by; include linear, knn or mean")
    return accuracy_columns[0]


def ranking_frame(acc: pd.DataFrame, collapse: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """Accuracy + the main collapse measures per checkpoint, best first; returns (table, rank column)."""
    acc_cols = [c for c in acc.columns if c.endswith("accuracy") or "accuracy@" in c]
    key = ranking_key(acc_cols)
    keep = ["checkpoint", "effective_rank", "rankme", "alpha_req", "feature_std", "alignment", "uniformity"]
    table = acc.merge(collapse[[c for c in keep if c in collapse.columns]], on="checkpoint", how="left")
    table = table.sort_values(key, ascending=False, kind="stable").reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table, key


def compare(
    ckpts: CkptsArg,
    data: DataOpt,
    pool: PoolOpt = "cls",
    methods: MethodsOpt = "mean,linear,knn",
    k: KOpt = "10,20,200",
    temperature: TemperatureOpt = 0.07,
    protocol: ProtocolOpt = "fast",
    backend: BackendOpt = "torch",
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
    preface: Annotated[Optional[str], typer.Option("--preface", hidden=True,
                                                   help="A paragraph shown first (umae demo).")] = None,
) -> None:
    """Compare checkpoints: probes + collapse measures for each, ranked by linear accuracy.

    Writes results.json, report.html and CSVs (ranking, accuracy, collapse, singular_values, maps) into --out.

    Example:  umae compare mae.pth u-mae.pth vit_base_patch16_224.mae.safetensors --data demo --random-init
    """
    t_start = time.perf_counter()
    opts = probe_options(methods, k, protocol, backend, pool)
    maps = parse_embed(embed)
    if not 0.0 <= mask_ratio < 1.0:
        raise UmaeError(f"--mask-ratio {mask_ratio}: must be in [0, 1), e.g. --mask-ratio 0.75")
    stage = begin_output(out_dir_for(out, "compare"))  # refuses an unwritable --out now
    timings: dict[str, float] = {}
    with A.timed(timings, "load_checkpoints"):
        subjects = load_subjects_announced(ckpts, label=label, trust_pickle=trust_pickle, seed=seed,
                                           num_heads=num_heads, norm=norm, random_init=random_init,
                                           mask_ratio=mask_ratio)
    with A.timed(timings, "load_data"):
        ds = A.load_data(data, max_train=max_train, max_test=max_test, seed=seed, progress=rich_progress,
                         **data_options(data_mode, workers, skip_bad_images, max_train_per_class, feature_dtype))
    feats, probes = run_probe_stage(subjects, ds, opts, temperature=temperature, device=device,
                                    batch_size=batch_size, seed=seed, timings=timings)
    collapse: dict[str, CollapseResult] = run_collapse_stage(
        subjects, ds, feats=feats, pool=opts["pool"], embed=maps, per_class=per_class, mask_ratio=mask_ratio,
        max_views=max_views, device=device, batch_size=batch_size, seed=seed, timings=timings)

    settings = base_settings(
        subjects, ds, data, pool=opts["pool"], methods=list(opts["methods"]), k=list(opts["ks"]),
        temperature=temperature, protocol=opts["protocol"], backend=opts["backend"], embed=list(maps),
        per_class=per_class, random_init=random_init, mask_ratio=mask_ratio, max_views=max_views,
        max_views_used=min(max_views, len(ds.y_test)), seed=seed, device=resolve_device_name(device),
        batch_size=batch_size)
    acc = accuracy_frame(probes, subjects)
    cframe = collapse_frame(collapse, subjects)
    ranking, key = ranking_frame(acc, cframe)
    settings["ranked_by"] = key
    timings["total"] = time.perf_counter() - t_start
    results = {
        "ranked_by": key,
        "ranking": ranking["checkpoint"].tolist(),
        "checkpoints": {s.name: {"accuracies": probes[s.name].accuracies, "probes": probes[s.name].results,
                                 **collapse[s.name].to_json()} for s in subjects},
        "timings_s": timings,
    }
    if preface:
        results["preface"] = preface
    tables: dict[str, pd.DataFrame] = {"ranking": ranking, "accuracy": acc, "collapse": cframe,
                                       "singular_values": spectra_frame(collapse)}
    mframe = maps_frame(collapse, ds.images.class_names)
    if len(mframe):
        tables["maps"] = mframe
    from umae_eval.report.writer import HtmlReport, write_outputs

    report = HtmlReport("umae compare: probes and collapse measures", command="compare")
    if preface:
        report.add_heading("What this shows")
        report.add_text(preface)
    add_common_sections(report, settings, subjects)
    report.add_table(f"Ranking (by {key})", ranking.drop(columns=["sha256"]), float_format="{:.4g}",
                     caption="Best first. Accuracies in %, on frozen features of the test split.",
                     settings={"ranked_by": key, "pool": opts["pool"], "protocol": opts["protocol"],
                               "seed": seed, "data": data, **provenance(settings)})
    add_probe_sections(report, acc, settings)
    add_collapse_sections(report, collapse, cframe, settings, ds.images.class_names)
    written = stage.commit(write_outputs(stage.path, "compare", settings, results, tables, report))
    show = [c for c in ranking.columns if c not in ("sha256", "layout", "alpha_req", "feature_std")]
    print_outputs(f"Ranking (by {key})", ranking[show], written)

