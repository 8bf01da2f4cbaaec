"""The report's layer-wise section and protocol matrix, from one :class:`AnalysisResults`.

- :func:`layer_figure`: accuracy and effective rank by block, a line per checkpoint, 95% error bars.
- :func:`layers_frame` / :func:`matrix_frame`: the CSV tables ``layers.csv`` and ``protocol_matrix.csv``.
- :func:`add_layers_section`: the matrix table with its sentences, then the layer-wise figure and table.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from umae_eval.pipeline import AnalysisResults
from umae_eval.report.summary import report_colors
from umae_eval.report.writer import HtmlReport


def layers_frame(res: AnalysisResults) -> pd.DataFrame:
    """One row per checkpoint, block and measure: estimate and 95% interval, with the feature spec."""
    if res.layers is None:
        return pd.DataFrame()
    spec = {c.name: c.spec for c in res.checkpoints}
    rows = [{**r, "pool": spec[r["checkpoint"]].get("pool"), "final_norm": spec[r["checkpoint"]].get("final_norm"),
             "best_block": res.layers.best[r["checkpoint"]].block if r["checkpoint"] in res.layers.best else None}
            for r in res.layers.rows]
    return pd.DataFrame(rows)


def matrix_frame(res: AnalysisResults) -> pd.DataFrame:
    """The protocol matrix in long form: checkpoint, protocol, accuracy, lo, hi, draws, spec."""
    if res.matrix is None:
        return pd.DataFrame()
    return pd.DataFrame(res.matrix.rows())


def _wide_matrix(res: AnalysisResults) -> pd.DataFrame:
    """Checkpoint x protocol, each cell 'estimate (lo to hi)' (± draw spread for low-shot)."""
    assert res.matrix is not None
    m = res.matrix
    rows = []
    for n in m.checkpoints:
        row: dict[str, Any] = {"checkpoint": n}
        for p in m.protocols:
            cell = m.cells.get((n, p["name"]))
            if cell is None:
                continue
            iv = cell["accuracy"]
            text = f"{iv.estimate:.1f} ({iv.lo:.1f} to {iv.hi:.1f})"
            if cell["spread"] is not None:
                text += f" ± {cell['spread']:.1f} over {len(cell['draws'])} draws"
            row[matrix_column(p["name"])] = text
        rows.append(row)
    return pd.DataFrame(rows)


def matrix_column(protocol: str) -> str:
    """A short column title for a protocol name: ``knn_accuracy@10%`` -> ``kNN, 10% labels``."""
    base, _, tail = protocol.partition("@")
    words = {"linear_accuracy": "linear", "mean_classifier_accuracy": "mean classifier",
             "attentive_accuracy": "attentive", "knn_accuracy": "kNN"}.get(base, base.replace("_", " "))
    if not tail:
        return words
    if tail.isdigit():
        return f"{words} k={tail}"
    if tail == "best_block":
        return f"{words}, best block"
    return f"{words}, {tail} labels" if tail.endswith("%") else f"{words}, {tail}"


def layer_figure(rows: Sequence[Mapping[str, Any]], names: Sequence[str], metric: str, *,
                 settings_line: str = "", colors: Mapping[str, str] | None = None) -> go.Figure:
    """Two panels side by side: ``metric`` (percent) and effective rank by block, a line per checkpoint.

    ``rows``: :attr:`LayerSummary.rows` (checkpoint, block, metric, estimate, lo, hi).
    """
    from plotly.subplots import make_subplots

    from umae_eval.pipeline.summary import metric_words
    from umae_eval.report.figures import _LAYOUT, _colors_for, label

    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.12,
                        subplot_titles=(label(metric_words(metric)) + " (%)", "effective rank"))
    palette = _colors_for(list(names), colors)  # the checkpoint's colour in every figure
    for name in names:
        color = palette[name]
        for col, m in ((1, metric), (2, "effective_rank")):
            pts = sorted((r for r in rows if r["checkpoint"] == name and r["metric"] == m), key=lambda r: r["block"])
            if not pts:
                continue
            ys = [float(r["estimate"]) for r in pts]
            has_iv = all(r["lo"] is not None for r in pts)
            err = dict(type="data", visible=True, color=color,
                       array=[float(r["hi"]) - y for r, y in zip(pts, ys)],
                       arrayminus=[y - float(r["lo"]) for r, y in zip(pts, ys)]) if has_iv else None
            fig.add_trace(go.Scatter(x=[r["block"] for r in pts], y=ys, mode="lines+markers", name=label(name),
                                     legendgroup=label(name), showlegend=col == 1, error_y=err,
                                     line=dict(color=color, width=2), marker=dict(size=6)), row=1, col=col)
    title = "Accuracy and effective rank by block"
    if settings_line:
        title += f"<br><sup>{label(settings_line)}</sup>"
    fig.update_layout(title=dict(text=title, x=0.01), **_LAYOUT)
    fig.update_xaxes(title_text="block (0-based)", tickformat="d", dtick=1)
    fig.update_yaxes(ticksuffix="%", row=1, col=1)
    fig.update_yaxes(rangemode="tozero", row=1, col=2)
    return fig


def add_layers_section(rep: HtmlReport, res: AnalysisResults, settings: Mapping[str, Any],
                       prov: Mapping[str, str]) -> None:
    """The protocol matrix (when it has cells) and the layer-wise figure and table (several blocks)."""
    base = {"data": settings["data"]["spec"], "layers": settings.get("layers"), "pool": settings.get("pool"),
            "final_norm": settings.get("final_norm"), "seed": settings.get("seed"),
            "bootstrap_resamples": settings.get("bootstrap_resamples"), **prov}
    if res.matrix is not None:
        m = res.matrix
        caption = ("Test accuracy (%) of every checkpoint under every protocol, with 95% bootstrap intervals "
                   f"over the {m.n_test:,} test images (shared resamples: differences are paired). "
                   + " ".join(f"{p['name']}: {p['words']}." for p in m.protocols))
        if m.differences:
            caption += " Paired differences: " + " ".join(m.sentences())
        rep.add_table("Protocol matrix", _wide_matrix(res), caption=caption, settings=base)
    if res.layers is None or res.layers.metric is None:
        return
    names = [c.name for c in res.checkpoints if c.blocks]
    line = (f"pool={settings.get('pool')} · final norm {settings.get('final_norm')} · "
            f"N={res.layers.n_test} test images · error bars: 95% bootstrap intervals")
    rep.add_figure("Accuracy and effective rank by block", layer_figure(
        res.layers.rows, names, res.layers.metric, settings_line=line, colors=report_colors(res)),
        caption="Each block's output read as the feature (one forward pass for all blocks). Best block per "
                "checkpoint: " + " ".join(res.layers.sentences()), settings=base, name="layers")
    frame = layers_frame(res)
    rep.add_table("Layer-wise measures", frame, caption="Per block: probe accuracies (%) and ranks, each with "
                  "its 95% interval (layers.csv).", settings=base, level=3)
