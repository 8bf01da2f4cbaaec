"""``umae runs``: one table of training runs and their online curves overlaid.

Takes plain data (``RunInfo.to_dict()`` rows and per-metric curves, built by
:mod:`trainer.runinfo` in the command), so the report does not import the trainer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from umae_eval.report.writer import HtmlReport

#: metrics.jsonl key -> (figure title, y axis title); the figures' order.
CURVE_TITLES = {
    "loss": ("Training loss", "loss (recon + lambda x unif)"),
    "effective_rank": ("Effective rank along training (Fig. 1c)", "effective rank"),
    "linear_accuracy": ("Online linear probe (Fig. 3b)", "linear accuracy (%)"),
    "knn_accuracy": ("Online kNN", "kNN accuracy (%)"),
    "mean_classifier_accuracy": ("Online mean classifier", "mean-classifier accuracy (%)"),
}
_COLUMNS = (("loss", "loss", 4), ("effective_rank", "erank", 1), ("linear_accuracy", "linear", 1),
            ("knn_accuracy", "kNN", 1), ("mean_classifier_accuracy", "mean", 1))


def _fmt(value: float | None, digits: int) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def method_label(method: str | None, lam: float | None) -> str:
    """``MAE``, ``U-MAE 0.01`` (the lambda), or the trainer's method name for other methods."""
    if method == "mae":
        return "MAE" if not lam else f"U-MAE {lam:g}"
    return str(method or "?")


def runs_table(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """One row per run (from ``RunInfo.to_dict()``): recipe, progress, newest online figures, status.

    Short headers so that the table fits 80 terminal columns.
    """
    out = []
    for r in rows:
        planned = r.get("epochs_planned")
        row = {"run": r["name"], "method": method_label(r.get("method"), r.get("lam")),
               "epochs": f"{r['epochs_done']}/{planned if planned is not None else '?'}"}
        row.update({head: _fmt(r["last"].get(key), digits) for key, head, digits in _COLUMNS})
        row["status"] = r["status"]
        out.append(row)
    return pd.DataFrame(out, columns=["run", "method", "epochs"] + [h for _, h, _ in _COLUMNS] + ["status"])


def runs_report(rows: Sequence[Mapping[str, Any]], curves: Mapping[str, Mapping[str, Mapping[str, list[float]]]],
                settings: dict[str, Any]) -> tuple[HtmlReport, dict[str, pd.DataFrame], dict[str, Any]]:
    """The page, its tables and results.json's ``results`` for ``umae runs --out``.

    ``curves`` maps a metrics.jsonl key -> ``{run name: {'epoch': [...], key: [...]}}``.
    """
    from umae_eval.report.figures import training_curve_figure

    table = runs_table(rows)
    rep = HtmlReport("Training runs", command="runs")
    counts = table["status"].value_counts().to_dict()
    rep.add_sentences([f"{len(rows)} runs: " + ", ".join(f"{n} {s}" for s, n in counts.items()) + ". "
                       "Online figures are measured during training on held-out images (metrics.jsonl). "
                       "Status: finished = all planned epochs done; running = a file of the run changed "
                       "within max(10 min, 3 x its slowest epoch); stopped = neither (continue it with "
                       "--resume auto)."])
    rep.add_table("Runs", table)
    for key, (title, y_title) in CURVE_TITLES.items():
        if not curves.get(key):
            continue
        fig = training_curve_figure(curves[key], metric=key, y_title=y_title, title=title)
        rep.add_figure(title, fig, caption="one line per run; 'ref:' marks --reference runs",
                       settings=settings, name=f"runs-{key}")
    with rep.collapsed("Settings"):
        rep.add_settings(settings)
    return rep, {"runs": table}, {"runs": list(rows)}
