"""The analysis report (probe, collapse-report, compare, demo) built from one :class:`AnalysisResults`.

Order on the page: the summary (verdict, intervals, differences, the paper's numbers), the
checkpoints' recipes, the probe results, the collapse measures and spectra (Fig. 1b), the maps
side by side (Fig. 3a), the curves along training (Fig. 1c, 3b), then settings, versions and
provenance in collapsed sections. :func:`analysis_tables` gives the CSV files.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from umae_eval.pipeline import AnalysisResults
from umae_eval.pipeline import frames as T
from umae_eval.pipeline.curves import curve_for
from umae_eval.report import extra_metrics
from umae_eval.report.summary import Preface, add_summary, report_colors
from umae_eval.report.writer import HtmlReport

_COLLAPSE_CAPTION = (
    "effective rank: Roy & Vetterli on centred features; RankMe (eps 1e-7) on raw features; α-ReQ: "
    "power-law decay of the covariance spectrum; feature std: std of L2-normalised features x sqrt(D) "
    "(1 = no collapse). alignment / uniformity: Wang & Isola on two masked views of the same test images; "
    "U-MAE term: the regulariser's two forms (code: normalised features incl. diagonal; paper: Eq. 11).")


def provenance(settings: Mapping[str, Any]) -> dict[str, str]:
    """Which checkpoints (layout + sha256 prefix) and library versions produced a figure/table."""
    from umae_eval.provenance import project_revision, versions

    v = versions()
    ckpts = "; ".join(f"{c['name']}: {c['layout']} sha256 {T.short_hash(str(c['sha256']))}"
                      for c in settings.get("checkpoints", []))
    return {"checkpoints": ckpts,
            "versions": ", ".join([f"umae {v.get('umae', '?')} ({project_revision()['revision']})"]
                                  + [f"{k} {v[k]}" for k in ("torch", "timm") if k in v])}


def settings_line(settings: Mapping[str, Any], keys: Sequence[str]) -> str:
    """``'pool=cls · seed=0 · data=demo'``: the settings a figure depends on, for its subtitle."""
    parts = []
    for k in keys:
        v = settings.get(k)
        if isinstance(v, Mapping):
            v = v.get("spec", v)
        if isinstance(v, (list, tuple)):
            v = ",".join(map(str, v))
        parts.append(f"{k}={v}")
    return " · ".join(parts)


def report_settings(settings: Mapping[str, Any]) -> dict[str, Any]:
    """A flat view of ``settings`` for the settings table (checkpoints get their own table)."""
    flat: dict[str, Any] = {}
    for key, value in settings.items():
        if key == "checkpoints":
            continue
        if key == "data" and isinstance(value, Mapping):
            for k, v in value.items():
                if k in ("class_names", "class_ids") and isinstance(v, list) and len(v) > 20:
                    v = v[:20] + [f"... ({len(v)} classes)"]
                flat[f"data.{k}"] = v
        else:
            flat[key] = value
    return flat


def checkpoint_files_frame(res: AnalysisResults) -> pd.DataFrame:
    """Where each checkpoint came from: full sha256, normalisation, path, run folder."""
    rows = []
    for c in res.checkpoints:
        info = c.subject.info
        rows.append({"checkpoint": c.name, "sha256": info.sha256,
                     "mean / std": f"{tuple(round(v, 4) for v in info.mean)} / {tuple(round(v, 4) for v in info.std)}"
                     if len(info.mean) else "",  # features read from files: no image normalisation
                     "path": info.path, "run folder": info.run_dir or "", "recipe source": c.recipe.source})
    return pd.DataFrame(rows)


def analysis_tables(res: AnalysisResults) -> dict[str, pd.DataFrame]:
    """The CSV files of an analysis, by file stem."""
    out: dict[str, pd.DataFrame] = {"checkpoints": T.recipe_frame(res)}
    ranking = T.ranking_frame(res)
    if not ranking.empty and len(res.checkpoints) > 1:
        out["ranking"] = ranking
    acc = T.accuracy_frame(res)
    if not acc.empty:
        out["accuracy"] = acc
    ivs = T.intervals_frame(res)
    if len(ivs):
        out["intervals"] = ivs
    if res.summary.comparisons:
        out["differences"] = T.differences_frame(res)
    coll = T.collapse_frame(res)
    if not coll.empty:
        out["collapse"] = coll
        out["singular_values"] = T.spectra_frame(res)
    maps = T.maps_frame(res)
    if len(maps):
        out["maps"] = maps
    out.update(extra_metrics.results_tables(res))
    from umae_eval.report.layers import layers_frame, matrix_frame

    from umae_eval.report.attention import attention_frame
    from umae_eval.report.finetuned import finetuned_frame

    for stem, frame in (("layers", layers_frame(res)), ("protocol_matrix", matrix_frame(res)),
                        ("finetuned_classifiers", finetuned_frame(res)), ("attention_stats", attention_frame(res))):
        if not frame.empty:
            out[stem] = frame
    return out


def _probe_section(rep: HtmlReport, res: AnalysisResults, settings: Mapping[str, Any], prov: Mapping[str, str]) -> None:
    acc = T.accuracy_frame(res)
    if acc.empty:
        return
    fig_settings = {k: settings[k] for k in ("pool", "methods", "k", "temperature", "protocol", "backend", "seed")
                    if k in settings}
    fig_settings["data"] = settings["data"]["spec"]
    fig_settings["n_train/n_test"] = f"{settings['data']['n_train']}/{settings['data']['n_test']}"
    _lambda_section(rep, res, fig_settings)
    rep.add_table("Accuracy of every probe (%)", acc.drop(columns=["layout", "sha256"]),
                  caption="Test accuracy of probes on frozen features: mean classifier (cosine to class means, "
                          "Sec. 4.1), linear probe, weighted kNN for each k. Intervals: see the summary and "
                          "intervals.csv.", settings={**fig_settings, **prov})


def _lambda_section(rep: HtmlReport, res: AnalysisResults, fig_settings: Mapping[str, Any]) -> None:
    """A λ sweep (two or more λ > 0 among MAE / U-MAE checkpoints) on an ordered log axis."""
    from umae_eval.pipeline.summary import metric_words
    from umae_eval.report import figures as F

    metric = res.summary.metric
    lams = {h.name: h.recipe.lam for h in res.summary.headlines
            if h.recipe.method in ("MAE", "U-MAE") and h.recipe.lam is not None and metric in h.accuracies}
    if metric is None or len({v for v in lams.values() if v > 0}) < 2:
        return
    points = {h.name: (float(lams[h.name]), h.accuracies[metric].estimate, h.accuracies[metric].lo,
                       h.accuracies[metric].hi) for h in res.summary.headlines if h.name in lams}
    rep.add_figure(f"{metric_words(metric).capitalize()} against λ", F.lambda_figure(
        points, y_title=f"{metric_words(metric)} (%)", colors=report_colors(res),
        settings_line=f"{res.summary.n_test:,} test images · error bars: 95% bootstrap intervals"),
        caption="The uniformity weight λ in its order, on a log axis; λ = 0 (MAE) as a dashed line with its "
                "interval as a band.", settings=fig_settings, name="lambda-sweep", level=3)


def _collapse_section(rep: HtmlReport, res: AnalysisResults, settings: Mapping[str, Any],
                      prov: Mapping[str, str]) -> None:
    from umae_eval.report import figures as F

    colors = report_colors(res)
    coll = T.collapse_frame(res)
    if coll.empty:
        return
    data = settings["data"]
    feat = {"features": f"test split, pool={settings['pool']}", "n_features": data["n_test"],
            "data": data["spec"], "fingerprint": data["fingerprint"][:16], "seed": settings["seed"], **prov}
    line = settings_line(settings, ("pool", "seed", "data")) + f" · N={data['n_test']} test images"
    views = {"mask_ratio": settings["mask_ratio"], "n_images": settings["max_views_used"],
             "pool": settings["pool"], "seed": settings["seed"], "data": data["spec"], **prov}
    pts = {c.name: (c.views.alignment, c.views.uniformity) for c in res.checkpoints if c.views is not None}
    rep.add_table("Collapse measures", coll.drop(columns=["layout"]), caption=_COLLAPSE_CAPTION,
                  settings={**feat, **{f"views.{k}": v for k, v in views.items() if k not in prov and pts}})
    spectra = {c.name: c.spectrum for c in res.checkpoints if c.spectrum is not None}
    rep.add_figure("Singular values, centred features (Fig. 1b)", F.singular_values_figure(
        {n: s.singular_values_centered for n, s in spectra.items()}, settings_line=line, colors=colors),
        caption="Sorted singular values of the centred test-feature matrix, normalised to the largest. "
                "A faster drop means fewer used dimensions (more dimensional collapse).", settings=feat,
        name="fig1b-singular-values")
    rep.add_figure("Singular values, raw features", F.singular_values_figure(
        {n: s.singular_values_raw for n, s in spectra.items()},
        title="Normalised singular values, uncentred features", settings_line=line, colors=colors),
        caption="The same without centring (what RankMe sees).", settings=feat, name="singular-values-raw")
    bounds = {h.name: {m: (iv.lo, iv.hi) for m, iv in h.rank_intervals.items()} for h in res.summary.headlines}
    rank_line = line + (f" · error bars: 95% bootstrap intervals ({res.summary.n_boot_ranks} resamples)"
                        if res.summary.n_boot_ranks else "")
    rep.add_figure("Effective rank and RankMe", F.rank_bars_figure(
        {n: s.scalars() for n, s in spectra.items()}, settings_line=rank_line,
        intervals=bounds if res.summary.n_boot_ranks else None, colors=colors), settings=feat, name="ranks")
    if pts:  # none when every subject was read from files (--features): no encoder to view images with
        rep.add_figure("Alignment and uniformity of masked views", F.alignment_uniformity_figure(
            pts, settings_line=settings_line(settings, ("mask_ratio", "pool", "seed")) + f" · {views['n_images']} images",
            colors=colors),
            caption="Alignment (mean squared distance between the two views' normalised features) is read with "
                    "uniformity: features that all coincide have perfect alignment 0 and the worst uniformity 0, "
                    "so a low alignment alone is no merit. Lower uniformity = more uniform; Wang & Isola's good "
                    "region is low on both axes.",
            settings=views, name="alignment-uniformity")
    _maps_section(rep, res, settings, prov)
    _curves_section(rep, res, prov, colors)


def _maps_section(rep: HtmlReport, res: AnalysisResults, settings: Mapping[str, Any], prov: Mapping[str, str]) -> None:
    from umae_eval.report import figures as F

    for method in res.config.embed:
        panels = [(c.name, m) for c in res.checkpoints for m in c.maps if m.method == method]
        if not panels:
            continue
        words = {"tsne": "t-SNE", "umap": "UMAP"}.get(method, method)
        m0 = panels[0][1]
        names, shown = _shown_classes(m0.settings, res.class_names)
        panels = [(name, replace(m, labels=shown(m.labels))) for name, m in panels]
        line = (f"{m0.settings['n_points']} test images, {m0.settings['per_class_used']} · pool={settings['pool']} · "
                f"seed={m0.settings['seed']}")
        figs = [F.embedding_figure(m.coords, m.labels, names, test_index=m.test_index, legend=False,
                                   title=f"{name}", settings_line=f"10-NN accuracy in the map: {m.knn_accuracy:.1f}%")
                for name, m in panels]
        combined = F.maps_figure([(f"{name}<br>{m.knn_accuracy:.1f}% 10-NN accuracy in the map", m.coords, m.labels,
                                   m.test_index)
                                  for name, m in panels], names,
                                 title=f"{words} of test features (Fig. 3a)", settings_line=line)
        colors = F.class_colors(len(names))
        glyphs = [F.SYMBOL_GLYPHS[s] for s in F.class_symbols(len(names))]
        swatches = list(zip(names, colors, glyphs)) if len(names) <= 40 else []
        caption = (f"{words} of each checkpoint's test features, side by side with equal axes; the score above "
                   f"each map is the leave-one-out 10-NN accuracy of the points inside the 2-D map (how well "
                   f"the classes separate in what you see). Hover a point for its class and test-image index "
                   f"(maps.csv has them all).")
        if len(names) < len(res.class_names):
            caption += (f" {len(names)} of the {len(res.class_names)} classes, drawn at random from seed "
                        f"{m0.settings['seed']} (--map-classes), the same in every map: {', '.join(names)}.")
        if not swatches:
            caption += f" {len(names)} classes: colours cycle through hues; the tooltip names the class."
        rep.add_figure_grid(f"{words} maps (Fig. 3a)", figs, caption=caption, swatches=swatches,
                            settings={**m0.settings, **prov}, static=combined, name=f"fig3a-{method}")


def _shown_classes(settings: Mapping[str, Any], class_names: Sequence[str]
                   ) -> tuple[list[str], Callable[[np.ndarray], np.ndarray]]:
    """The names of the classes a map shows and the relabelling of its points to 0..N-1, so that
    --map-classes 10 of 100 classes gets the 10-class colour-blind palette with marker shapes."""
    ids = [int(c) for c in settings.get("map_class_ids") or range(len(class_names))]
    if ids == list(range(len(class_names))):
        return list(class_names), lambda labels: labels
    lookup = np.full(max(max(ids) + 1, len(class_names)), -1, dtype=np.int64)
    lookup[ids] = np.arange(len(ids))
    return [str(class_names[c]) for c in ids], lambda labels: lookup[np.asarray(labels, dtype=np.int64)]


def _curves_section(rep: HtmlReport, res: AnalysisResults, prov: Mapping[str, str],
                    colors: Mapping[str, str]) -> None:
    from umae_eval.report import figures as F

    chance = 100.0 / len(res.class_names) if res.class_names else None
    curves = {c.name: c.curves for c in res.checkpoints if c.curves}
    if not curves:
        return
    n_eval = {c.name: c.eval_images for c in res.checkpoints if c.curves}
    src = {"source": "metrics.jsonl", "runs": list(curves), **prov}
    per = curve_for(curves, "effective_rank")
    if per:
        rep.add_figure("Effective rank along training (Fig. 1c)", F.training_curve_figure(
            per, metric="effective_rank", y_title="effective rank", title="Effective rank along training (Fig. 1c)",
            settings_line="from each run's metrics.jsonl (features of its held-out eval images)", colors=colors),
            settings=src, name="fig1c-effective-rank")
    lin = curve_for(curves, "linear_accuracy")
    knn = curve_for(curves, "knn_accuracy")
    if lin or knn:
        both: dict[str, dict[str, list[float]]] = {}
        for n in curves:
            if n not in lin and n not in knn:
                continue
            both[n] = dict(lin.get(n, {"epoch": knn[n]["epoch"]}))
            if n in knn:
                both[n].update({"knn_accuracy:epoch": knn[n]["epoch"], "knn_accuracy": knn[n]["knn_accuracy"]})
        metric = "linear_accuracy" if lin else "knn_accuracy"
        sizes = ", ".join(f"{n}: {v:,}" for n, v in n_eval.items() if v) or "unknown"
        title = "Linear-probe accuracy along training (Fig. 3b)" if lin else "kNN accuracy along training"
        rep.add_figure(title, F.training_curve_figure(
            both, metric=metric, extra_metric="knn_accuracy" if lin else None,
            y_title="online test accuracy (%)", title=title, eval_images=n_eval, colors=colors, chance=chance,
            settings_line=f"online probes in metrics.jsonl · solid: linear probe ('fast' L-BFGS), dashed: kNN · "
                          f"test images per point: {sizes}"),
            caption="Online evaluation during pre-training on each run's fixed held-out images; bands: 95% Wilson "
                    "intervals for that number of images.", settings=src, name="fig3b-linear-accuracy")
    per = curve_for(curves, "mean_classifier_accuracy")
    if per:
        rep.add_figure("Mean-classifier accuracy along training", F.training_curve_figure(
            per, metric="mean_classifier_accuracy", y_title="online mean-classifier accuracy (%)",
            title="Online mean-classifier accuracy along training", eval_images=n_eval, colors=colors, chance=chance,
            settings_line="from each run's metrics.jsonl"), settings=src, name="mean-classifier-along-training")


def analysis_report(res: AnalysisResults, settings: Mapping[str, Any], *, command: str, title: str,
                    preface: Preface | None = None) -> HtmlReport:
    """The whole page: summary first, then recipes, probes, collapse, maps, curves, settings.

    ``preface`` (umae demo: what the full study of these encoders found) opens the summary.
    """
    from umae_eval.provenance import versions

    rep = HtmlReport(title, command=command)
    prov = provenance(settings)
    fig_settings = {"data": settings["data"]["spec"], "pool": settings["pool"], "seed": settings["seed"],
                    "bootstrap_resamples": settings.get("bootstrap_resamples"), **prov}
    add_summary(rep, res, fig_settings, preface=preface, colors=report_colors(res))
    rep.add_table("Checkpoints", T.recipe_frame(res),
                  caption="The training recipe each file records (umae metadata or MAE/U-MAE training args; "
                          "'not recorded' for bare encoders and timm files), the layout detected when loading, "
                          "and the sha256 of the file's bytes (full hashes under Provenance).")
    _probe_section(rep, res, settings, prov)
    from umae_eval.report.attention import add_attention_section
    from umae_eval.report.finetuned import add_finetuned_section
    from umae_eval.report.layers import add_layers_section

    add_finetuned_section(rep, res, prov)  # apart from the frozen-feature probes, under its own heading

    add_layers_section(rep, res, settings, prov)
    _collapse_section(rep, res, settings, prov)
    extra_metrics.results_section(rep, res, settings, prov, colors=report_colors(res))
    add_attention_section(rep, res, settings, prov, colors=report_colors(res))
    with rep.collapsed("Settings, versions and provenance"):
        rep.add_settings(report_settings(settings))
        rep.add_table("Checkpoint files", checkpoint_files_frame(res), level=3)
        rep.add_settings(versions(), title="Versions")
        timings = {k: f"{v:.2f} s" for k, v in res.timings.items()}
        rep.add_settings(timings, title="Timings")
    return rep


def write_analysis(out_dir: Any, command: str, res: AnalysisResults, *, title: str, preface: Preface | None = None,
                   **extra_settings: Any) -> dict[str, Any]:
    """results.json, the CSV tables, figures/ and report.html of one analysis; returns the paths.

    ``extra_settings`` (e.g. ``random_init=True``) are recorded with the options in results.json.
    """
    from umae_eval.report.writer import write_outputs

    settings = res.settings(**extra_settings)
    report = analysis_report(res, settings, command=command, title=title, preface=preface)
    results = res.to_json()
    if preface:
        results["preface"] = preface.text + ("\n\n" + preface.check if preface.check else "")
    return write_outputs(out_dir, command, settings, results, analysis_tables(res), report)
