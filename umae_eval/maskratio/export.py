"""A sweep's results as JSON-safe dicts and long-format tables (for results.json and the CSVs)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from umae_eval.maskratio.estimators import FEATURE_ESTIMATORS, PIXEL_ESTIMATORS
from umae_eval.maskratio.stats import CurveSummary, Interval, sweet_spot_identified
from umae_eval.maskratio.sweep import SweepResult

__all__ = ["estimator_docs", "result_to_dict", "distance_table", "sweet_spot_table",
           "label_error_table", "graph_table", "series_estimator"]


def series_estimator(series: str) -> str:
    """``'shared-mask/l2'`` -> ``'shared-mask'``; pixel names unchanged."""
    return series.split("/", 1)[0]


def estimator_docs(space: str) -> dict[str, dict[str, str]]:
    """Formula and use of K for each estimator of ``space``."""
    table = PIXEL_ESTIMATORS if space == "pixel" else FEATURE_ESTIMATORS
    return {n: {"formula": e.formula, "views": e.views, "masks": e.masks} for n, e in table.items()}


def _interval(iv: Interval) -> dict[str, list[float]]:
    return {"mean": iv.mean.tolist(), "lo": iv.lo.tolist(), "hi": iv.hi.tolist()}


def _curve(c: CurveSummary) -> dict[str, Any]:
    return {
        "intra": _interval(c.intra),
        "inter": _interval(c.inter),
        "relative": _interval(c.ratio),
        "relative_change_from_first": _interval(c.ratio_change),
        "sweet_spot": {"mask_ratio": c.sweet_spot.ratio, "lo": c.sweet_spot.lo, "hi": c.sweet_spot.hi,
                       "identified": sweet_spot_identified(c.sweet_spot.ratio, c.sweet_spot.lo, c.sweet_spot.hi,
                                                           c.ratios.tolist()),
                       "bootstrap_frequency": c.sweet_spot.frequency},
        "shape": {"intra_falls": c.shape.intra_falls, "inter_falls": c.shape.inter_falls,
                  "relative_falls_then_rises": c.shape.ratio_dips,
                  "sweet_spot_in_0.6_0.8": c.shape.sweet_near_paper,
                  "reproduces_paper_shape": c.shape.reproduces},
        "n_intra_pairs": c.n_intra, "n_inter_pairs": c.n_inter, "n_boot": c.n_boot,
    }


def result_to_dict(result: SweepResult) -> dict[str, Any]:
    """The ``results`` part of results.json."""
    return {
        "space": result.space,
        "mask_ratio": result.ratios.tolist(),
        "num_patches": result.num_patches,
        "num_visible": result.num_visible,
        "estimators": estimator_docs(result.space),
        "distances": {name: _curve(c) for name, c in result.curves.items()},
        "label_error": {**_interval(result.label_error), "n_images": result.n_label_images},
        "graph": {
            "n_nodes": result.n_graph_nodes,
            "k": result.n_classes,
            "top_eigenvalues": [g.eigenvalues.tolist() for g in result.graph],
            "residual": [g.residual for g in result.graph],
            "residual_share": [g.residual_share for g in result.graph],
            "bandwidth": [g.bandwidth for g in result.graph],
            "same_class_edge_share": [g.same_class_edge_share for g in result.graph],
            "same_class_chance": [g.same_class_chance for g in result.graph],
        },
        "pair_counts": result.pair_counts,
        "timings": result.timings,
    }


def distance_table(result: SweepResult) -> pd.DataFrame:
    """One row per (estimator, mask ratio): intra, inter, relative with 95% intervals."""
    rows = []
    for name, c in result.curves.items():
        for r, rho in enumerate(result.ratios):
            rows.append({
                "estimator": name, "mask_ratio": float(rho), "num_visible": result.num_visible[r],
                "intra_mean": c.intra.mean[r], "intra_lo": c.intra.lo[r], "intra_hi": c.intra.hi[r],
                "inter_mean": c.inter.mean[r], "inter_lo": c.inter.lo[r], "inter_hi": c.inter.hi[r],
                "relative_mean": c.ratio.mean[r], "relative_lo": c.ratio.lo[r],
                "relative_hi": c.ratio.hi[r],
                "relative_change": c.ratio_change.mean[r], "relative_change_lo": c.ratio_change.lo[r],
                "relative_change_hi": c.ratio_change.hi[r],
            })
    return pd.DataFrame(rows)


def sweet_spot_table(result: SweepResult) -> pd.DataFrame:
    """One row per estimator: sweet spot, its interval and the shape checks."""
    rows = []
    for name, c in result.curves.items():
        rows.append({
            "estimator": name, "sweet_spot": c.sweet_spot.ratio, "sweet_lo": c.sweet_spot.lo,
            "sweet_hi": c.sweet_spot.hi,
            "sweet_identified": sweet_spot_identified(c.sweet_spot.ratio, c.sweet_spot.lo, c.sweet_spot.hi,
                                                      c.ratios.tolist()),
            "intra_falls": c.shape.intra_falls,
            "inter_falls": c.shape.inter_falls, "relative_falls_then_rises": c.shape.ratio_dips,
            "sweet_in_0.6_0.8": c.shape.sweet_near_paper,
            "reproduces_paper_shape": c.shape.reproduces,
        })
    return pd.DataFrame(rows)


def label_error_table(result: SweepResult) -> pd.DataFrame:
    """alpha per mask ratio with its 95% interval."""
    le = result.label_error
    return pd.DataFrame({"mask_ratio": result.ratios, "num_visible": result.num_visible,
                         "label_error": le.mean, "label_error_lo": le.lo, "label_error_hi": le.hi})


def graph_table(result: SweepResult) -> pd.DataFrame:
    """Graph summary per mask ratio (top eigenvalues as lambda_1..lambda_m columns)."""
    rows = []
    for rho, g in zip(result.ratios, result.graph):
        row: dict[str, Any] = {"mask_ratio": float(rho), "residual": g.residual,
                               "residual_share": g.residual_share, "bandwidth": g.bandwidth,
                               "same_class_edge_share": g.same_class_edge_share,
                               "same_class_chance": g.same_class_chance}
        for i, lam in enumerate(np.asarray(g.eigenvalues), start=1):
            row[f"lambda_{i}"] = float(lam)
        rows.append(row)
    return pd.DataFrame(rows)
