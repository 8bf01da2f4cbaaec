"""`umae collapse-report`: dimensional collapse of each checkpoint's features, as in the paper.

Spectra (centred and raw; Fig. 1b), effective rank, RankMe, alpha-ReQ, feature std, alignment
and uniformity of two masked views, the U-MAE uniformity value, t-SNE/UMAP maps (Fig. 3a) and,
where a checkpoint's run folder has ``metrics.jsonl``, the curves along training (Fig. 1c, 3b).
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any

import numpy as np
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
from umae_eval.errors import UmaeError
from umae_eval.staging import begin_output
from umae_eval.progress import rich_progress, say

EmbedOpt = Annotated[str, typer.Option("--embed", help="Feature maps to draw: tsne, umap, tsne,umap or none.")]
PerClassOpt = Annotated[int, typer.Option("--per-class", min=1, help="Test images per class in each map.")]
RandomInitOpt = Annotated[bool, typer.Option(
    "--random-init", help="Add the first checkpoint's architecture, untrained, as a baseline (Fig. 1b).")]
MaskRatioOpt = Annotated[float, typer.Option(
    "--mask-ratio", help="Mask ratio of the two masked views used for alignment/uniformity.")]
MaxViewsOpt = Annotated[int, typer.Option(
    "--max-views", min=2, help="Test images (seeded subset) encoded as two masked views each.")]


def parse_embed(embed: str) -> tuple[str, ...]:
    """``'none'`` -> (), else the validated comma list of map methods."""
    if str(embed).strip().lower() in ("none", "no", "off", ""):
        return ()
    return A.parse_choices(embed, A.MAP_METHODS, "--embed")


@dataclass
class CollapseResult:
    """Everything collapse-report measures for one checkpoint."""

    spectrum: A.SpectrumStats
    views: A.ViewGeometry
    maps: list[A.FeatureMap] = field(default_factory=list)
    curves: dict[str, list[float]] | None = None

    def scalars(self) -> dict[str, float]:
        return {**self.spectrum.scalars(), **self.views.scalars()}

    def to_json(self) -> dict[str, Any]:
        """JSON-safe: scalars, both spectra, view settings, map settings (coordinates go to CSV)."""
        sp = self.spectrum
        return {
            **self.scalars(),
            "alpha_req_fit_range": list(sp.alpha_req_fit_range),
            "n_features": sp.n,
            "dim": sp.dim,
            "spectrum_settings": sp.settings,
            "singular_values_centered": sp.singular_values_centered.tolist(),
            "singular_values_raw": sp.singular_values_raw.tolist(),
            "masked_views": {"mask_ratio": self.views.mask_ratio, "n_images": self.views.n_images,
                             "seed": self.views.seed},
            "maps": [m.settings for m in self.maps],
            "training_curves": self.curves,
        }


def run_collapse_stage(
    subjects: Sequence[A.Subject],
    data: A.DataSubset,
    *,
    feats: Mapping[str, A.FeatureSet] | None,
    pool: str,
    embed: Sequence[str],
    per_class: int,
    mask_ratio: float,
    max_views: int,
    device: str,
    batch_size: int,
    seed: int,
    timings: dict[str, float],
) -> dict[str, CollapseResult]:
    """Spectrum, masked-view geometry, maps and training curves for each subject."""
    if not 0.0 <= mask_ratio < 1.0:
        raise UmaeError(f"--mask-ratio {mask_ratio}: must be in [0, 1), e.g. --mask-ratio 0.75")
    if "umap" in embed and A.umap_compiles():
        say("UMAP compiles its code on first use: about 15 s before the first map")
    view_idx = A.subset_indices(len(data.y_test), max_views, seed + 2)
    x_views = data.x_test if view_idx is None else data.x_test[view_idx]
    out: dict[str, CollapseResult] = {}
    for s in subjects:
        fs = (feats or {}).get(s.name)
        if fs is None:
            with A.timed(timings, f"features:{s.name}"):
                fs = A.compute_features(s, data, pool=pool, device=device, batch_size=batch_size,  # type: ignore[arg-type]
                                        with_train=False, progress=rich_progress)
        with A.timed(timings, f"spectrum:{s.name}"):
            spectrum = A.spectrum_stats(fs.test)
        with A.timed(timings, f"masked_views:{s.name}"):
            views = A.masked_view_geometry(s, x_views, mask_ratio=mask_ratio, seed=seed, pool=pool,  # type: ignore[arg-type]
                                           device=device, batch_size=batch_size, progress=rich_progress)
        maps = []
        for method in embed:
            say(f"{s.name}: {method} map of up to {per_class} test images per class")
            with A.timed(timings, f"map_{method}:{s.name}"):
                maps.extend(A.feature_maps(fs, methods=(method,), per_class=per_class, seed=seed,
                                           progress=rich_progress))
        out[s.name] = CollapseResult(spectrum, views, maps, A.read_training_curves(s.info.run_dir))
    return out


def collapse_frame(results: Mapping[str, CollapseResult], subjects: Sequence[A.Subject]) -> pd.DataFrame:
    """One row per checkpoint: the scalar collapse measures."""
    rows = []
    for s in subjects:
        if s.name in results:
            rows.append({"checkpoint": s.name, "layout": s.info.layout, **results[s.name].scalars()})
    return pd.DataFrame(rows)


def spectra_frame(results: Mapping[str, CollapseResult]) -> pd.DataFrame:
    """Long table of singular values: checkpoint, index (1-based), centred, raw."""
    parts = []
    for name, r in results.items():
        c, raw = r.spectrum.singular_values_centered, r.spectrum.singular_values_raw
        n = max(len(c), len(raw))
        parts.append(pd.DataFrame({
            "checkpoint": name, "index": np.arange(1, n + 1),
            "centered": np.pad(c, (0, n - len(c)), constant_values=np.nan),
            "raw": np.pad(raw, (0, n - len(raw)), constant_values=np.nan),
        }))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def maps_frame(results: Mapping[str, CollapseResult], class_names: Sequence[str]) -> pd.DataFrame:
    """Long table of map coordinates: checkpoint, method, x, y, label, class_name."""
    parts = []
    for name, r in results.items():
        for m in r.maps:
            parts.append(pd.DataFrame({
                "checkpoint": name, "method": m.method, "x": m.coords[:, 0], "y": m.coords[:, 1],
                "label": m.labels, "class_name": [class_names[int(c)] for c in m.labels],
            }))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def add_collapse_sections(report: Any, results: Mapping[str, CollapseResult], frame: pd.DataFrame,
                          settings: Mapping[str, Any], class_names: Sequence[str]) -> None:
    """Collapse table, spectra (Fig. 1b), rank bars, alignment/uniformity, maps (Fig. 3a), curves."""
    from umae_eval.report import figures as F

    data = settings["data"]
    feat = {"features": f"test split, pool={settings['pool']}", "n_features": data["n_test"],
            "data": data["spec"], "fingerprint": data["fingerprint"][:16], "seed": settings["seed"]}
    prov = provenance(settings)
    feat.update(prov)
    line = settings_line(settings, ("pool", "seed", "data")) + f" · N={data['n_test']} test images"
    views = {"mask_ratio": settings["mask_ratio"], "n_images": settings["max_views_used"],
             "pool": settings["pool"], "seed": settings["seed"], "data": data["spec"], **prov}
    report.add_table("Collapse measures", frame, float_format="{:.4g}",
                     caption="effective_rank: Roy & Vetterli on centred features; rankme: RankMe (eps 1e-7) "
                             "on raw features; alpha_req: power-law decay of the covariance spectrum; "
                             "feature_std: std of L2-normalised features x sqrt(D) (1 = no collapse). "
                             "alignment/uniformity: Wang & Isola on two masked views of the same test "
                             "images; umae_uniformity_code/paper: the U-MAE regulariser's two forms.",
                     settings={**feat, **{f"views.{k}": v for k, v in views.items() if k not in prov}})
    report.add_figure("Singular values, centred features (Fig. 1b)", F.singular_values_figure(
        {n: r.spectrum.singular_values_centered for n, r in results.items()}, settings_line=line),
        caption="Sorted singular values of the centred test-feature matrix, normalised to the largest. "
                "A faster drop means fewer used dimensions (more dimensional collapse).", settings=feat)
    report.add_figure("Singular values, raw features", F.singular_values_figure(
        {n: r.spectrum.singular_values_raw for n, r in results.items()},
        title="Normalised singular values, uncentred features", settings_line=line),
        caption="The same without centring (what RankMe sees).", settings=feat)
    report.add_figure("Effective rank and RankMe", F.rank_bars_figure(
        {n: r.spectrum.scalars() for n, r in results.items()}, settings_line=line), settings=feat)
    report.add_figure("Alignment and uniformity of masked views", F.alignment_uniformity_figure(
        {n: (r.views.alignment, r.views.uniformity) for n, r in results.items()},
        settings_line=settings_line(settings, ("mask_ratio", "pool", "seed")) + f" · {views['n_images']} images"),
        settings=views)
    for name, r in results.items():
        for m in r.maps:
            method = {"tsne": "t-SNE", "umap": "UMAP"}.get(m.method, m.method)
            report.add_figure(f"{method} of {name} (Fig. 3a)", F.embedding_figure(
                m.coords, m.labels, class_names, title=f"{method}: {name}",
                settings_line=f"{m.settings['n_points']} test images, ≤{m.settings['per_class']} per class · "
                              f"pool={settings['pool']} · seed={m.settings['seed']}"),
                settings={**m.settings, **prov})
    curves = {n: r.curves for n, r in results.items() if r.curves}
    if curves:
        metrics = [("effective_rank", "effective rank", "Effective rank along training (Fig. 1c)"),
                   ("linear_accuracy", "linear accuracy (%)", "Linear accuracy along training (Fig. 3b)"),
                   ("knn_accuracy", "kNN accuracy (%)", "Online kNN accuracy along training (Fig. 3b)"),
                   ("mean_classifier_accuracy", "mean classifier accuracy (%)",
                    "Online mean-classifier accuracy along training")]
        for metric, y_title, title in metrics:
            per = A.curve_for(curves, metric)  # type: ignore[arg-type]
            if per:
                report.add_figure(title, F.training_curve_figure(per, metric=metric, y_title=y_title, title=title,
                                                                 settings_line="from each run's metrics.jsonl"),
                                  settings={"source": "metrics.jsonl", "runs": list(per), **prov})


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
) -> None:
    """Measure dimensional collapse: spectra, effective rank, RankMe, alignment/uniformity, maps.

    Writes results.json, collapse.csv, singular_values.csv, maps.csv and report.html into --out.

    Example:  umae collapse-report mae.pth umae.pth --data demo --random-init --embed tsne
    """
    t_start = time.perf_counter()
    pool = check_choice(pool, ("cls", "avg"), "--pool")
    methods = parse_embed(embed)
    if not 0.0 <= mask_ratio < 1.0:
        raise UmaeError(f"--mask-ratio {mask_ratio}: must be in [0, 1), e.g. --mask-ratio 0.75")
    stage = begin_output(out_dir_for(out, "collapse-report"))  # refuses an unwritable --out now
    timings: dict[str, float] = {}
    with A.timed(timings, "load_checkpoints"):
        subjects = load_subjects_announced(ckpts, label=label, trust_pickle=trust_pickle, seed=seed,
                                           num_heads=num_heads, norm=norm, random_init=random_init,
                                           mask_ratio=mask_ratio)
    with A.timed(timings, "load_data"):
        ds = A.load_data(data, max_train=max_train, max_test=max_test, seed=seed, progress=rich_progress,
                         **data_options(data_mode, workers, skip_bad_images, max_train_per_class, feature_dtype))
    results = run_collapse_stage(subjects, ds, feats=None, pool=pool, embed=methods, per_class=per_class,
                                 mask_ratio=mask_ratio, max_views=max_views, device=device,
                                 batch_size=batch_size, seed=seed, timings=timings)
    settings = base_settings(subjects, ds, data, pool=pool, embed=list(methods), per_class=per_class,
                             random_init=random_init, mask_ratio=mask_ratio, max_views=max_views,
                             max_views_used=min(max_views, len(ds.y_test)), seed=seed,
                             device=resolve_device_name(device), batch_size=batch_size)
    frame = collapse_frame(results, subjects)
    timings["total"] = time.perf_counter() - t_start
    payload = {"checkpoints": {n: r.to_json() for n, r in results.items()}, "timings_s": timings}
    tables = {"collapse": frame, "singular_values": spectra_frame(results)}
    maps = maps_frame(results, ds.images.class_names)
    if len(maps):
        tables["maps"] = maps
    from umae_eval.report.writer import HtmlReport, write_outputs

    report = HtmlReport("umae collapse-report: dimensional collapse of features", command="collapse-report")
    add_common_sections(report, settings, subjects)
    add_collapse_sections(report, results, frame, settings, ds.images.class_names)
    written = stage.commit(write_outputs(stage.path, "collapse-report", settings, payload, tables, report))
    print_outputs("Collapse measures", frame[["checkpoint", "layout", "effective_rank", "rankme", "alpha_req",
                                              "feature_std", "alignment", "uniformity"]], written,
                  float_format="{:.4g}")
