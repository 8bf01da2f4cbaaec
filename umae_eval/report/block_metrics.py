"""The report's representation metrics by block (``--layers`` with several blocks), and their CSVs.

- ``representation_by_block.csv``: checkpoint, block, metric, value, 95% low / high (centred
  bootstrap over images; empty for the label metrics), resamples, images, definition;
- ``representation_block_differences.csv``: paired differences ``b - a`` per block and metric;
- figures ``by-block-<metric>``: two metrics side by side, a line per checkpoint in its page
  colour (``report_colors``), 95% error bars.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from umae_eval.metrics.suite import METRIC_DEFINITIONS

#: The figures: two metrics each, side by side.
FIGURE_PAIRS: tuple[tuple[str, str], ...] = (("participation_ratio", "stable_rank"), ("rankme_paper", "rankme_pca"),
                                             ("collapse_std_ratio", "alpha_req"), ("lidar_masked", "fourier_high"),
                                             ("nc1", "cdnv"))
#: Short panel titles.
PANEL_WORDS: dict[str, str] = {
    "participation_ratio": "participation ratio", "stable_rank": "stable rank",
    "rankme_paper": "RankMe (paper: uncentred)", "rankme_pca": "RankMe (centred PCA)",
    "collapse_std_ratio": "collapse std × √D", "alpha_req": "α-ReQ", "lidar_masked": "LiDAR (masked views)",
    "fourier_high": "Δ log amplitude (high freq.)", "nc1": "NC1 (test labels)", "cdnv": "CDNV (test labels)",
}


def _by_block(res: Any) -> dict[str, dict[int, Any]]:
    return {c.name: c.block_extra for c in res.checkpoints if getattr(c, "block_extra", None)}


def block_frame(res: Any) -> pd.DataFrame:
    """One row per checkpoint, block and metric (``block_metrics.block_rows``) with its definition."""
    from umae_eval.pipeline.block_metrics import block_rows

    rows = block_rows(_by_block(res))
    return pd.DataFrame([{**r, "definition": METRIC_DEFINITIONS.get(r["metric"], "")} for r in rows])


def block_differences_frame(res: Any) -> pd.DataFrame:
    """Paired differences ``b - a`` at every block both checkpoints read."""
    from umae_eval.pipeline.block_metrics import block_differences

    return pd.DataFrame(block_differences(_by_block(res)))


def block_figure(frame: pd.DataFrame, metrics: tuple[str, str], *, settings_line: str = "",
                 colors: Mapping[str, str] | None = None) -> go.Figure:
    """Two panels side by side: each metric by block, a line per checkpoint, 95% error bars where resampled."""
    from plotly.subplots import make_subplots

    from umae_eval.report.figures import _LAYOUT, _colors_for, label

    names = [str(n) for n in dict.fromkeys(frame["checkpoint"])]
    fig = make_subplots(rows=1, cols=2, horizontal_spacing=0.14,
                        subplot_titles=tuple(PANEL_WORDS.get(m, m) for m in metrics))
    palette = _colors_for(names, colors)
    for name in names:
        for col, m in enumerate(metrics, start=1):
            pts = frame[(frame.checkpoint == name) & (frame.metric == m)].sort_values("block")
            if pts.empty:
                continue
            ys = [float(v) for v in pts["value"]]
            has_iv = bool(pts["lo"].notna().all())
            err = dict(type="data", visible=True, color=palette[name],
                       array=[float(h) - y for h, y in zip(pts["hi"], ys)],
                       arrayminus=[y - float(lo) for lo, y in zip(pts["lo"], ys)]) if has_iv else None
            fig.add_trace(go.Scatter(x=[int(b) for b in pts["block"]], y=ys, mode="lines+markers", name=label(name),
                                     legendgroup=label(name), showlegend=col == 1, error_y=err,
                                     line=dict(color=palette[name], width=2), marker=dict(size=6)), row=1, col=col)
    title = f"{PANEL_WORDS.get(metrics[0], metrics[0])} and {PANEL_WORDS.get(metrics[1], metrics[1])} by block"
    if settings_line:
        title += f"<br><sup>{label(settings_line)}</sup>"
    fig.update_layout(title=dict(text=title, x=0.01), **_LAYOUT)
    fig.update_xaxes(title_text="block (0-based, as --layers)", tickformat="d", dtick=1)
    return fig


def results_block_tables(res: Any) -> dict[str, pd.DataFrame]:
    """The section's CSVs by file stem (none without several blocks)."""
    out = {"representation_by_block": block_frame(res),
           "representation_block_differences": block_differences_frame(res)}
    return {k: v for k, v in out.items() if not v.empty}


def add_block_section(rep: Any, res: Any, settings: Mapping[str, Any], colors: Mapping[str, str] | None = None) -> None:
    """The by-block figures (one per metric pair present) and the table of paired differences."""
    frame = block_frame(res)
    if frame.empty:
        return
    first = next(iter(next(iter(_by_block(res).values())).values())).settings
    line = (f"N={first.get('n')} test images · LiDAR {first.get('lidar_images')} images x {first.get('lidar_views')} "
            f"masked views · error bars: 95% bootstrap over images")
    caption = ("Each block's output read as the feature (one forward pass for all blocks; the masked views read every "
               f"block in one masked pass). Intervals: {first.get('spectral_resamples')} resamples of the test images "
               f"for the spectrum measures, {first.get('lidar_resamples')} of the LiDAR images (a bounded budget, "
               "README 'Representation metrics'), centred on the estimate; NC1 and CDNV use the test labels and have "
               "none. representation_by_block.csv holds every value; the deepest block repeats the main "
               "table's values.")
    for pair in FIGURE_PAIRS:
        if frame["metric"].isin(pair).any():
            words = f"{PANEL_WORDS.get(pair[0], pair[0])} and {PANEL_WORDS.get(pair[1], pair[1])} by block"
            rep.add_figure(words[0].upper() + words[1:],
                           block_figure(frame, pair, settings_line=line, colors=colors), level=3, caption=caption,
                           settings=settings, name=f"by-block-{pair[0].replace('_', '-')}")
    diffs = block_differences_frame(res)
    if not diffs.empty:
        rep.add_table("Representation metrics by block: paired differences", diffs, level=3,
                      caption="b − a at each block, both checkpoints resampled on the same images; beyond "
                              "test-image noise when the 95% interval excludes 0 (not corrected for the number "
                              "of blocks and metrics).", settings=settings)

