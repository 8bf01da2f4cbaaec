"""The tables of an analysis (written as CSV, shown in the report), built from :class:`AnalysisResults`.

Column names are the result names (``linear_accuracy``, ``effective_rank``, ...), the same as
in results.json; the report turns them into words when it shows them.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from umae_eval.pipeline.results import AnalysisResults


def short_hash(sha256: str) -> str:
    """The first 12 hex digits of a file hash; a non-hash id (``random-init-seed0``) unchanged."""
    s = str(sha256)
    return s[:12] if len(s) == 64 and all(ch in "0123456789abcdef" for ch in s) else s


def recipe_frame(res: AnalysisResults) -> pd.DataFrame:
    """One row per checkpoint: name, recipe (method, lambda, form, epochs, preset, mask ratio),
    layout, architecture, parameters, sha256."""
    rows = []
    for c in res.checkpoints:
        info, rc = c.subject.info, c.recipe
        rows.append({
            "checkpoint": c.name, "method": rc.method or "not recorded", "lam": rc.lam,
            "unif_form": rc.unif_form or "", "epochs": rc.epochs, "preset": rc.preset or "",
            "mask_ratio": rc.mask_ratio, "layout": info.layout, "architecture": info.arch.describe(),
            "params_m": round(info.n_params / 1e6, 3), "sha256": short_hash(info.sha256),
        })
    return pd.DataFrame(rows)


def accuracy_frame(res: AnalysisResults) -> pd.DataFrame:
    """One row per checkpoint: name, layout, sha256 prefix, then each accuracy (percent)."""
    rows = []
    for c in res.checkpoints:
        if c.probes is None:
            continue
        rows.append({"checkpoint": c.name, "layout": c.subject.info.layout,
                     "sha256": short_hash(c.subject.info.sha256), **c.probes.accuracies})
    return pd.DataFrame(rows)


def intervals_frame(res: AnalysisResults) -> pd.DataFrame:
    """Long table of the summary's accuracies and ranks: checkpoint, metric, estimate, lo, hi (95%)."""
    rows = [{"checkpoint": h.name, "metric": m, "estimate": iv.estimate, "lo": iv.lo, "hi": iv.hi}
            for h in res.summary.headlines for m, iv in {**h.accuracies, **h.rank_intervals}.items()]
    return pd.DataFrame(rows, columns=["checkpoint", "metric", "estimate", "lo", "hi"])


def differences_frame(res: AnalysisResults) -> pd.DataFrame:
    """One row per paired comparison: metric, better, worse, difference, lo, hi, beyond noise."""
    rows = [{"metric": c.metric, "better": c.better, "worse": c.worse, "difference": c.difference.estimate,
             "lo": c.difference.lo, "hi": c.difference.hi, "beyond_noise": c.beyond_noise}
            for c in res.summary.comparisons]
    return pd.DataFrame(rows, columns=["metric", "better", "worse", "difference", "lo", "hi", "beyond_noise"])


def collapse_frame(res: AnalysisResults) -> pd.DataFrame:
    """One row per checkpoint: the scalar collapse measures."""
    rows = [{"checkpoint": c.name, "layout": c.subject.info.layout, **c.collapse_scalars()}
            for c in res.checkpoints if c.spectrum is not None]
    return pd.DataFrame(rows)


def spectra_frame(res: AnalysisResults) -> pd.DataFrame:
    """Long table of singular values: checkpoint, index (1-based), centred, raw."""
    parts = []
    for r in res.checkpoints:
        if r.spectrum is None:
            continue
        c, raw = r.spectrum.singular_values_centered, r.spectrum.singular_values_raw
        n = max(len(c), len(raw))
        parts.append(pd.DataFrame({
            "checkpoint": r.name, "index": np.arange(1, n + 1),
            "centered": np.pad(c, (0, n - len(c)), constant_values=np.nan),
            "raw": np.pad(raw, (0, n - len(raw)), constant_values=np.nan),
        }))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def maps_frame(res: AnalysisResults) -> pd.DataFrame:
    """Long table of map coordinates: checkpoint, method, test_index, x, y, label, class_name."""
    parts = []
    for r in res.checkpoints:
        for m in r.maps:
            idx = m.test_index if m.test_index is not None else np.arange(len(m.labels))
            parts.append(pd.DataFrame({
                "checkpoint": r.name, "method": m.method, "test_index": idx,
                "x": m.coords[:, 0], "y": m.coords[:, 1], "label": m.labels,
                "class_name": [res.class_names[int(c)] for c in m.labels],
            }))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()


def ranking_frame(res: AnalysisResults) -> pd.DataFrame:
    """Best first by :attr:`AnalysisResults.ranked_by`: rank, checkpoint, accuracies with their
    95% interval ends, and the main collapse measures."""
    acc = accuracy_frame(res)
    key = res.ranked_by
    if key is None or acc.empty:
        return pd.DataFrame()
    keep = ["checkpoint", "effective_rank", "rankme", "alpha_req", "feature_std", "alignment", "uniformity"]
    coll = collapse_frame(res)
    table = acc.merge(coll[[c for c in keep if c in coll.columns]], on="checkpoint", how="left") \
        if not coll.empty else acc
    bounds = {h.name: h.accuracies.get(key) for h in res.summary.headlines}
    pos = table.columns.get_loc(key) + 1
    table.insert(pos, f"{key}_lo", [bounds[n].lo if bounds.get(n) else np.nan for n in table["checkpoint"]])
    table.insert(pos + 1, f"{key}_hi", [bounds[n].hi if bounds.get(n) else np.nan for n in table["checkpoint"]])
    table = table.sort_values(key, ascending=False, kind="stable").reset_index(drop=True)
    table.insert(0, "rank", range(1, len(table) + 1))
    return table
