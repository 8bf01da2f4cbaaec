"""The mask-ratio sweep's report (Sec. 4.2, Fig. 2b/2c), built from a :class:`SweepResult`.

The verdict comes first: per estimator, whether the relative distance intra/inter has an
interior minimum (a sweet spot) or only its smallest value at a boundary ratio ("no interior
minimum"), and whether the paper's shape is reproduced; then Fig. 2c and 2b, the label error,
the augmentation graph; the estimators' definitions, the raw tables and the settings are in
collapsed sections.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from umae_eval.report.writer import HtmlReport

#: The estimator that follows the paper's text literally ("every pair of patches").
PAPER_ESTIMATOR = "all-pairs"


def _ratio_text(ratios: list[float]) -> str:
    if len(ratios) > 2:
        steps = {round(b - a, 6) for a, b in zip(ratios, ratios[1:])}
        if len(steps) == 1:
            return f"{ratios[0]:g}:{ratios[-1]:g}:{steps.pop():g} ({len(ratios)})"
    return ",".join(f"{r:g}" for r in ratios)


def figure_note(settings: dict[str, Any]) -> str:
    """The settings stamp written inside every figure (two lines)."""
    ck = settings.get("checkpoint")
    ck_text = f"{ck.get('name', Path(ck['path']).name)} sha256 {ck['sha256'][:12]}" if ck else "none (pixel space)"
    v = settings["versions"]
    line1 = (f"data={settings['data']['source']} ({settings['data']['fingerprint'][:12]}) · "
             f"space={settings['space']} · estimators={','.join(settings['estimators'])} · "
             f"patch={settings['patch_size']} (L={settings['num_patches']})")
    line2 = (f"pairs={settings['pairs']} intra + {settings['pairs']} inter · views K={settings['views']} · "
             f"seed={settings['seed']} · ratios={_ratio_text(settings['mask_ratios'])} · "
             f"bootstrap B={settings['bootstrap']} · checkpoint={ck_text} · "
             f"umae {v.get('umae', '?')}, torch {v.get('torch', '?')}")
    return f"{line1}<br>{line2}"


def _estimator_text(space: str, settings_scaling: str) -> str:
    from umae_eval.maskratio.estimators import FEATURE_ESTIMATORS, PIXEL_ESTIMATORS

    table = PIXEL_ESTIMATORS if space == "pixel" else FEATURE_ESTIMATORS
    head = ("Notation: a pair of images (a, b) cut into L patches a_i, b_i (" + settings_scaling + "); "
            "K mask draws k per pair and ratio; V_a^k, V_b^k are the visible patch sets of the two "
            "views (own masks, drawn independently, each keeping n = int(L(1 - rho)) patches chosen "
            "uniformly at random, MAE's rule); the shared mask of draw k is V^k = V_a^k. Each view's "
            "noise is drawn once and thresholded at every rho, so masks are nested across ratios."
            if space == "pixel" else
            "Notation: f(x, V) is the encoder's feature of image x seen through the visible patches V "
            "only (MAE's encoder input); dist is l2 or cosine distance (1 - cos); V_a^k, V_b^k are "
            "own masks, V^k = V_a^k the shared mask; K mask draws per pair and ratio.")
    lines = [head]
    for e in table.values():
        lines.append(f"{e.name}: {e.formula}; per pair: {e.views}.")
    lines.append("Relative distance = mean intra / mean inter. Intervals: bootstrap over pairs (intra "
                 "and inter resampled separately, each pair carrying its whole curve), 2.5-97.5 "
                 "percentiles. Sweet spot = argmin of the relative distance; its interval is that of "
                 "the argmin over the resamples. Shape checks (95% bootstrap): intra falls and inter "
                 "falls = d(first rho) - d(last rho) > 0; relative falls then rises = interior argmin "
                 "below both ends; near the paper = sweet spot in [0.6, 0.8].")
    return "\n\n".join(lines)


def _label_error_text(space: str) -> str:
    if space == "pixel":
        return ("Label error alpha (Thm 4.1) made concrete: mu_c = mean of the unmasked train images "
                "of class c (pixels in [0, 1], per patch); a masked view x1 with visible patches V is "
                "assigned y(x1) = argmin_c sum_{i in V} ||x_i - mu_{c,i}||^2; alpha(rho) = share of "
                "(test image, view) pairs with y(x1) != y(x). Raw pixels separate CIFAR-10 poorly, so "
                "alpha is high already at rho = 0; read how it grows with rho.")
    return ("Label error alpha (Thm 4.1): W_c = mean feature of one masked view (same rho) of each "
            "sampled train image of class c (the paper's W_y = E_{x1|y} f(x1)); y(x1) = argmin_c "
            "||f(x1) - W_c||^2; alpha(rho) = share of (test image, view) pairs with y(x1) != y(x).")


def _graph_text(space: str, k: int) -> str:
    dist = ("l2 between the zero-filled masked images (the masked-image distance)" if space == "pixel"
            else "l2 between the encoder features of the views")
    return (f"Augmentation graph on sampled views: nodes = class-balanced test images x graph views "
            f"(own MAE masks); view distance d_uv = {dist}; A_uv = exp(-d_uv^2 / (2 h^2)) with "
            f"h = median of d_uv over u < v at that rho (median heuristic), self-loops kept; "
            f"A_bar = D^-1/2 A D^-1/2, D = diag(A 1) (positive semi-definite, eigenvalues in [0, 1]). "
            f"Shown: its top eigenvalues per rho, the residual sum_(i>k) lambda_i^2 (Thm 4.2's lower "
            f"bound, k = {k} classes) and the share of edge weight between different images that "
            f"joins images of the same class (chance ~ 1/k).")


def _edge_share_sentence(result: Any) -> str:
    """The graph's same-class edge share read against its chance level."""
    import numpy as np

    share = np.array([g.same_class_edge_share for g in result.graph], dtype=float)
    chance = float(np.nanmean([g.same_class_chance for g in result.graph]))
    if not share.size or not np.isfinite(chance):
        return ""
    lo, hi = float(np.nanmin(share)), float(np.nanmax(share))
    where = ("above" if lo > chance else "below" if hi < chance else "around")
    return (f"Same-class edge share {lo:.3f} to {hi:.3f} across ratios, {where} chance {chance:.3f} (the share "
            f"of same-class pairs among pairs of different images: what a graph blind to class gives; drawn as a "
            f"dotted line). " + ("Near chance, the graph's edges carry little class information at these ratios."
                                 if abs(hi - chance) < 0.02 and abs(lo - chance) < 0.02 else ""))


def is_boundary(ratio: float, ratios: list[float]) -> bool:
    """True when the argmin is the first or last ratio swept: no interior minimum, no sweet spot."""
    return ratio <= min(ratios) + 1e-12 or ratio >= max(ratios) - 1e-12


def sweet_text(ratio: float, lo: float, hi: float, ratios: list[float]) -> str:
    """``'ρ = 0.7 (95% 0.65 to 0.75)'`` for an identified interior argmin, 'not identified (...)'
    when its interval spans (nearly) the whole range, else 'no interior minimum (...)'."""
    from umae_eval.maskratio.stats import sweet_spot_identified

    if is_boundary(ratio, ratios):
        return f"no interior minimum (smallest at ρ = {ratio:g}, an end of the range)"
    if not sweet_spot_identified(ratio, lo, hi, ratios):
        return (f"not identified (smallest at ρ = {ratio:g}, but its 95% interval {lo:g} to {hi:g} spans "
                f"(nearly) the whole range)")
    return f"ρ = {ratio:g} (95% {lo:g} to {hi:g})"


def _identified(r: Any, ratios: list[float]) -> bool:
    from umae_eval.maskratio.stats import sweet_spot_identified

    return sweet_spot_identified(float(r["sweet_spot"]), float(r["sweet_lo"]), float(r["sweet_hi"]), ratios)


def estimator_label(name: str) -> str:
    """The estimator's name, with the paper's reading marked."""
    return f"{name} (the paper's text)" if name == PAPER_ESTIMATOR else name


def verdict_sentences(table: pd.DataFrame, ratios: list[float]) -> list[str]:
    """One plain sentence per estimator from the sweet-spot table (the same order)."""
    out = []
    for _, r in table.iterrows():
        where = sweet_text(float(r["sweet_spot"]), float(r["sweet_lo"]), float(r["sweet_hi"]), ratios)
        shape = "reproduces the paper's shape (both distances fall, intra/inter falls then rises, minimum in " \
                "0.6-0.8)" if bool(r["reproduces_paper_shape"]) and _identified(r, ratios) \
            else "does not reproduce the paper's shape"
        parts = [f"intra {'falls' if r['intra_falls'] else 'does not fall'}",
                 f"inter {'falls' if r['inter_falls'] else 'does not fall'}"]
        spot = f"sweet spot at {where}" if _identified(r, ratios) else (
            where if is_boundary(float(r["sweet_spot"]), ratios) else f"sweet spot {where}")
        out.append(f"{estimator_label(str(r['estimator']))}: {spot}; {', '.join(parts)}; {shape}.")
    return out


def sweet_frame(table: pd.DataFrame, ratios: list[float]) -> pd.DataFrame:
    """The sweet-spot table for the page: the sweet spot as words, the checks as yes/no."""
    rows = []
    for _, r in table.iterrows():
        rows.append({"estimator": estimator_label(str(r["estimator"])),
                     "sweet spot (argmin of intra/inter)": sweet_text(float(r["sweet_spot"]), float(r["sweet_lo"]),
                                                                       float(r["sweet_hi"]), ratios),
                     "intra falls": bool(r["intra_falls"]), "inter falls": bool(r["inter_falls"]),
                     "falls then rises": bool(r["relative_falls_then_rises"]),
                     "minimum in 0.6-0.8": "no minimum" if is_boundary(float(r["sweet_spot"]), ratios)
                     else "not identified" if not _identified(r, ratios)
                     else ("yes" if bool(r["sweet_in_0.6_0.8"]) else "no"),
                     "reproduces the paper's shape": bool(r["reproduces_paper_shape"]) and _identified(r, ratios)})
    return pd.DataFrame(rows)


def sweep_report(result: Any, settings: dict[str, Any], tables: dict[str, pd.DataFrame], *,
                 n_classes: int) -> HtmlReport:
    """The page: verdict, Fig. 2c, Fig. 2b, label error, graph, then collapsed details."""
    from umae_eval.maskratio import figures

    space = settings["space"]
    ck = settings.get("checkpoint")
    ratios = [float(r) for r in settings["mask_ratios"]]
    note = figure_note(settings)
    fig_settings = {k: settings[k] for k in ("space", "estimators", "patch_size", "pairs", "views", "seed",
                                             "mask_ratios", "bootstrap")}
    fig_settings["checkpoint_sha256"] = ck["sha256"] if ck else "none"
    fig_settings["data_fingerprint"] = settings["data"]["fingerprint"][:12]
    fig_settings["versions"] = {k: settings["versions"].get(k, "?") for k in ("umae", "torch", "numpy")}

    rep = HtmlReport("Mask-ratio sweep (How Mask Matters, Sec. 4.2)", command="mask-ratio-sweep")
    rep.add_heading("Summary")
    what = (f"feature space of {ck.get('name', Path(ck['path']).name)}" if ck else "pixel space")
    rep.add_text(f"Distances between masked views of {settings['pairs']:,} same-class and {settings['pairs']:,} "
                 f"different-class test pairs ({what}), {settings['views']} mask draws each, at mask ratios "
                 f"{_ratio_text(ratios)}. The paper reports the minimum of intra/inter at ρ = 0.7.")
    rep.add_sentences(verdict_sentences(tables["sweet_spots"], ratios), verdict=True)
    rep.add_table("", sweet_frame(tables["sweet_spots"], ratios), settings=fig_settings,
                  caption="Sweet spot = argmin of mean intra / mean inter with the 95% bootstrap interval of the "
                          "argmin; an argmin at the first or last ratio is no sweet spot, and one whose interval "
                          "spans (nearly) the whole range (from the second ratio or below to the second-to-last "
                          "or above) is not identified. Checks: 95% bootstrap tests (README: Mask-ratio sweep).")
    rep.add_figure("Fig. 2c: relative distance intra / inter", figures.relative_figure(result, note),
                   caption="One panel per estimator, each with its 95% band (bootstrap over pairs); star = an "
                           "identified interior minimum with its 95% interval (horizontal bar); a minimum whose "
                           "interval spans (nearly) the whole range is marked 'not identified' instead; dashed: "
                           "the paper's 0.7.", settings=fig_settings,
                   name="fig2c-relative-distance")
    rep.add_figure("Fig. 2c (right): change of intra / inter from the first ratio",
                   figures.relative_change_figure(result, note),
                   caption="Paired bootstrap bands: each resample moves the whole curve, so a band above 0 is a "
                           "real rise.", settings=fig_settings, name="fig2c-change")
    rep.add_figure("Fig. 2b: intra- and inter-class distance", figures.intra_inter_figure(result, note),
                   caption="Mean distance between masked views of same-class and different-class pairs; bands: "
                           "95% bootstrap intervals over pairs.", settings=fig_settings, name="fig2b-distances")
    rep.add_heading("Label error α")
    rep.add_text(_label_error_text(space))
    rep.add_figure("Label error α per mask ratio", figures.label_error_figure(result, note), level=3,
                   caption=f"{result.n_label_images} test images x K={settings['views']} views; band: 95% "
                           "bootstrap over images.", settings=fig_settings, name="label-error")
    rep.add_heading("Augmentation graph spectrum")
    rep.add_text(_graph_text(space, n_classes))
    rep.add_text(_edge_share_sentence(result))
    rep.add_figure("Spectrum of the mask-induced augmentation graph", figures.spectrum_figure(result, note),
                   level=3, caption=f"{result.n_graph_nodes} nodes ({settings['graph_images']} images x "
                                    f"{settings['graph_views']} views).",
                   settings={**fig_settings, "graph_images": settings["graph_images"],
                             "graph_views": settings["graph_views"]}, name="graph-spectrum")
    with rep.collapsed("Estimators: definitions"):
        rep.add_text(_estimator_text(space, str(settings.get("pixel_scaling", ""))))
    with rep.collapsed("Raw tables (also the CSV files)"):
        rep.add_table("Distances per estimator and mask ratio", tables["distances"], level=3)
        rep.add_table("Label error per mask ratio", tables["label_error"], level=3)
        graph = tables["graph"]
        cols = [c for c in graph.columns if not c.startswith("lambda_")] + \
            [f"lambda_{i}" for i in range(1, 9) if f"lambda_{i}" in graph.columns]
        rep.add_table("Graph per mask ratio", graph[cols], level=3,
                      caption="The top eight eigenvalues; all of them are in graph.csv.")
    with rep.collapsed("Settings and versions"):
        flat = {k: v for k, v in settings.items() if k not in ("data", "checkpoint", "versions")}
        flat.update({f"data.{k}": v for k, v in settings["data"].items()})
        if ck:
            flat.update({f"checkpoint.{k}": v for k, v in ck.items()})
        rep.add_settings(flat)
        rep.add_settings(settings["versions"], title="Versions")
    return rep
