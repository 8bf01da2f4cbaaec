"""The report's representation-metrics section and its CSVs, from the stage's
:class:`~umae_eval.metrics.suite.MetricSet` per checkpoint and per pair.

- ``representation_metrics.csv``: checkpoint, metric, value, 95% low / high (centred bootstrap
  over images; empty for metrics that need labels), resamples, definition;
- ``representation_differences.csv``: paired differences between checkpoints;
- ``representation_pairs.csv``: CKA (biased, unbiased with interval) and mutual kNN per pair;
- ``fourier_by_block.csv``: the high-frequency log-amplitude and energy share after each block;
- ``cka_blocks.csv``: block x block CKA within each checkpoint and between each pair (``--layers``),
  each cell with its 95% interval (``cka_lo``, ``cka_hi``);
- the metrics by block (``--layers`` with several blocks): :mod:`umae_eval.report.block_metrics`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd
import plotly.graph_objects as go

from umae_eval.metrics.suite import METRIC_DEFINITIONS, MetricSet
from umae_eval.pipeline.intervals import Interval, centred_interval

#: Table order of the per-checkpoint metrics.
ORDER: tuple[str, ...] = ("participation_ratio", "stable_rank", "collapse_std_ratio", "rankme_paper", "rankme_pca",
                          "alpha_req", "lidar_masked", "lidar_masked_reptrix", "lidar_augmented",
                          "lidar_augmented_reptrix",
                          "fourier_high", "fourier_energy_share_high", "nc1", "cdnv", "nc2_etf_distance",
                          "nc2_equinorm", "nc4_agreement")


def metrics_frame(sets: Mapping[str, MetricSet], intervals: Mapping[str, Mapping[str, Interval]]) -> pd.DataFrame:
    """One row per checkpoint and metric: value, interval (where resampled), resamples, definition."""
    rows = []
    for name, ms in sets.items():
        for m in ORDER:
            if m not in ms.values:
                continue
            iv = intervals.get(name, {}).get(m)
            rows.append({"checkpoint": name, "metric": m, "value": ms.values[m],
                         "value_lo": iv.lo if iv else None, "value_hi": iv.hi if iv else None,
                         "resamples": int(len(ms.resamples[m])) if m in ms.resamples else 0,
                         "definition": METRIC_DEFINITIONS.get(m, "")})
    return pd.DataFrame(rows)


def wide_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """The page's table: one row per metric, a column per checkpoint with 'value (lo to hi)'."""
    if frame.empty:
        return frame
    def cell(r: pd.Series) -> str:
        v = f"{r['value']:.4g}"
        return v if pd.isna(r["value_lo"]) else f"{v} ({r['value_lo']:.4g} to {r['value_hi']:.4g})"
    f = frame.assign(cell=frame.apply(cell, axis=1))
    wide = f.pivot(index="metric", columns="checkpoint", values="cell")
    wide = wide.reindex([m for m in ORDER if m in wide.index])[list(dict.fromkeys(frame["checkpoint"]))]
    return wide.reset_index()


def differences_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """Paired differences ``b - a`` with their centred 95% intervals."""
    return pd.DataFrame(list(rows), columns=["metric", "a", "b", "difference", "lo", "hi", "beyond_noise",
                                             "resamples"])


def pairs_frame(pairs: Mapping[str, MetricSet]) -> pd.DataFrame:
    """CKA and mutual kNN per pair of checkpoints, the unbiased CKA and mutual kNN with intervals."""
    rows = []
    for ms in pairs.values():
        row: dict[str, Any] = {"a": ms.settings.get("a"), "b": ms.settings.get("b"),
                               "cka_linear": ms.values["cka_linear"]}
        for m in ("cka_unbiased", "mutual_knn"):
            row[m] = ms.values[m]
            if m in ms.resamples:
                iv = centred_interval(ms.values[m], ms.resamples[m])
                row[f"{m}_lo"], row[f"{m}_hi"] = iv.lo, iv.hi
        row.update(images=ms.settings["n"], k=ms.settings["k"], cka_batches=ms.settings.get("cka_batches"))
        rows.append(row)
    return pd.DataFrame(rows)


def fourier_frame(sets: Mapping[str, MetricSet]) -> pd.DataFrame:
    """High-frequency log-amplitude and energy share after each block, per checkpoint."""
    rows = [{"checkpoint": name, "block": b["block"], "high_frequency_log_amplitude": b["high_frequency_log_amplitude"],
             "energy_share_high": b["energy_share_high"], "images": b["n_images"]}
            for name, ms in sets.items() for b in ms.details.get("fourier_by_block", [])]
    return pd.DataFrame(rows)


def fourier_figure(frame: pd.DataFrame, settings_line: str = "", colors: Mapping[str, str] | None = None) -> go.Figure:
    """Lines by block: the relative log-amplitude of the highest frequency, one line per checkpoint.

    ``colors`` (checkpoint -> colour, ``report_colors``) keeps each checkpoint's colour of the page.
    """
    from umae_eval.report.figures import _base, _colors_for, label

    fig = _base("High-frequency amplitude of patch tokens by block", "block (0-based, as --layers)",
                "Δ log amplitude (highest frequency − DC)", settings_line)
    palette = {**_colors_for([str(n) for n in frame["checkpoint"].unique()], None), **(colors or {})}
    for name, part in frame.groupby("checkpoint", sort=False):
        fig.add_trace(go.Scatter(x=part["block"], y=part["high_frequency_log_amplitude"], mode="lines+markers",
                                 name=label(name), line=dict(color=palette[str(name)])))
    fig.update_xaxes(tickmode="linear", dtick=1)
    return fig


def cka_blocks_frame(sets: Mapping[str, MetricSet], pairs: Mapping[str, MetricSet]) -> pd.DataFrame:
    """Every block x block CKA value: within each checkpoint (a = b) and between each pair."""
    rows = []
    items = [(n, n, ms) for n, ms in sets.items()] + [(ms.settings.get("a"), ms.settings.get("b"), ms)
                                                       for ms in pairs.values()]
    for a, b, ms in items:
        cb = ms.details.get("cka_blocks")
        if not cb:
            continue
        for i, ba in enumerate(cb["blocks_a"]):
            for j, bb in enumerate(cb["blocks_b"]):
                rows.append({"a": a, "b": b, "block_a": ba, "block_b": bb, "cka": cb["matrix"][i][j],
                             "cka_lo": _cell(cb, "lo", i, j), "cka_hi": _cell(cb, "hi", i, j),
                             "batch_size": cb.get("batch_size"), "batches": cb.get("batches"),
                             "resamples": cb.get("resamples")})
    return pd.DataFrame(rows)


def _cell(cb: Mapping[str, Any], key: str, i: int, j: int) -> float | None:
    """One cell of ``cb[key]`` (the interval's ends), None where there is none."""
    rows = cb.get(key)
    return None if rows is None else rows[i][j]


def _cka_text(cb: Mapping[str, Any], i: int, j: int) -> str:
    v, lo, hi = cb["matrix"][i][j], _cell(cb, "lo", i, j), _cell(cb, "hi", i, j)
    if v is None:
        return "undefined (a constant block)"
    return f"{v:.3f}" + ("" if lo is None or hi is None else f" (95% interval {lo:.3f} to {hi:.3f})")


def cka_interval_caption(cb: Mapping[str, Any]) -> str:
    """What the intervals of a CKA matrix cover, and the widest one (for the figure's caption)."""
    if cb.get("lo") is None or not cb.get("resamples"):
        return f"No intervals: {cb.get('interval', 'not computed')}."
    widths = [(h - lo_, i, j) for i, (row_lo, row_hi) in enumerate(zip(cb["lo"], cb["hi"]))
              for j, (lo_, h) in enumerate(zip(row_lo, row_hi)) if lo_ is not None and h is not None]
    text = (f"Each cell's 95% interval (hover; cka_blocks.csv cka_lo / cka_hi) resamples the {cb['batches']} "
            f"minibatches of {cb['batch_size']} test images, the same images for both blocks: it covers "
            "test-image resampling only.")
    if widths:
        w, i, j = max(widths)
        text += f" Widest: ±{w / 2:.3f} (blocks {cb['blocks_a'][i]} x {cb['blocks_b'][j]})."
    return text


def cka_heatmap(cb: Mapping[str, Any], a: str, b: str, settings_line: str = "") -> go.Figure:
    """The block x block CKA matrix as coloured squares (drawn by the static renderer too)."""
    from umae_eval.report.figures import _base

    ba, bb = list(cb["blocks_a"]), list(cb["blocks_b"])
    title = f"CKA between the blocks of {a}" if a == b else f"CKA between the blocks of {a} and {b}"
    fig = _base(title, f"block of {b} (0-based)", f"block of {a} (0-based)", settings_line)
    xs = [x for _ in ba for x in bb]
    ys = [y for y in ba for _ in bb]
    vals = [v for row in cb["matrix"] for v in row]
    text = [_cka_text(cb, i, j) for i in range(len(ba)) for j in range(len(bb))]
    size = max(8.0, min(40.0, 320.0 / max(len(ba), len(bb))))
    fig.add_trace(go.Scatter(x=xs, y=ys, mode="markers", name="CKA", showlegend=False,
                             text=text, hovertemplate="%{y} x %{x}: %{text}<extra></extra>",
                             marker=dict(symbol="square", size=size, color=vals, colorscale="Viridis", cmin=0.0,
                                         cmax=1.0, showscale=True, colorbar=dict(title="CKA"))))
    fig.update_xaxes(tickmode="array", tickvals=bb)
    fig.update_yaxes(tickmode="array", tickvals=ba, scaleanchor="x")
    return fig


def tables(sets: Mapping[str, MetricSet], intervals: Mapping[str, Mapping[str, Interval]],
           differences: Sequence[Mapping[str, Any]], pairs: Mapping[str, MetricSet]) -> dict[str, pd.DataFrame]:
    """The CSVs of the section, by file stem (empty ones left out)."""
    out = {"representation_metrics": metrics_frame(sets, intervals),
           "representation_differences": differences_frame(differences),
           "representation_pairs": pairs_frame(pairs), "fourier_by_block": fourier_frame(sets),
           "cka_blocks": cka_blocks_frame(sets, pairs)}
    return {k: v for k, v in out.items() if not v.empty}


def add_section(rep: Any, sets: Mapping[str, MetricSet], intervals: Mapping[str, Mapping[str, Interval]],
                differences: Sequence[Mapping[str, Any]], pairs: Mapping[str, MetricSet],
                settings: Mapping[str, Any], colors: Mapping[str, str] | None = None) -> None:
    """Tables of values with intervals, paired differences, CKA per pair, and the Fourier lines."""
    if not sets:
        return
    first = next(iter(sets.values())).settings
    line = (f"{settings.get('data', '')} · N={first.get('n')} test images · LiDAR {first.get('lidar_images')} images x "
            f"{first.get('lidar_views')} views · Fourier {first.get('fourier_images')} images")
    caption = ("Label-free metrics carry 95% intervals: the bootstrap over images, centred on the estimate "
               "(representation_metrics.csv: definitions and resample counts). Neural-collapse measures use the "
               "test labels and have none. RankMe in two conventions: the paper's (uncentred singular values) "
               "and reptrix's (centred PCA ratios); LiDAR as the paper, reptrix's variant beside it.")
    rep.add_table("Representation metrics", wide_frame(metrics_frame(sets, intervals)), caption=caption,
                  settings={**settings, **{f"stage.{k}": v for k, v in first.items() if k != "conventions"}})
    diffs = differences_frame(differences)
    if not diffs.empty:
        rep.add_table("Representation metrics: paired differences", diffs, level=3,
                      caption="b − a, both checkpoints resampled on the same images; beyond noise when the "
                              "95% interval excludes 0.")
    pf = pairs_frame(pairs)
    if not pf.empty:
        rep.add_table("CKA and mutual kNN between checkpoints", pf, level=3,
                      caption="On the test features of the same images. Unbiased CKA's interval resamples its "
                              "minibatches of images; mutual kNN's the images (neighbours found once).")
    for a, b, ms in ([(n, n, m) for n, m in sets.items()]
                     + [(m.settings.get("a"), m.settings.get("b"), m) for m in pairs.values()]):
        cb = ms.details.get("cka_blocks")
        if cb:
            rep.add_figure(f"CKA block x block: {a}" if a == b else f"CKA block x block: {a} vs {b}",
                           cka_heatmap(cb, str(a), str(b), settings_line=line), level=3,
                           caption=f"{cb['estimator']}, on the test features of each block (cka_blocks.csv). "
                                   "1 = the same representation up to rotation and scale. "
                                   + cka_interval_caption(cb),
                           settings=settings, name="cka-blocks")
    ff = fourier_frame(sets)
    if not ff.empty:
        rep.add_figure("Token Fourier analysis by block", fourier_figure(ff, settings_line=line, colors=colors), level=3,
                       caption="Park et al.: log-amplitude of the 2-D FFT of each block's patch-token map at the "
                               "highest frequency, minus the DC term, mean over images and channels. Higher = more "
                               "high-frequency content.", settings=settings, name="fourier-by-block")


def _from_results(res: Any) -> tuple[dict[str, MetricSet], dict[str, MetricSet]]:
    sets = {c.name: c.extra for c in res.checkpoints if getattr(c, "extra", None) is not None}
    return sets, dict(getattr(res, "representation_pairs", {}) or {})


def results_tables(res: Any) -> dict[str, pd.DataFrame]:
    """:func:`tables` from an ``AnalysisResults`` (empty without the stage)."""
    from umae_eval.pipeline.extra_metrics import metric_differences, metric_intervals

    from umae_eval.report.block_metrics import results_block_tables

    sets, pairs = _from_results(res)
    return {**tables(sets, metric_intervals(sets), metric_differences(sets), pairs), **results_block_tables(res)} if sets else {}


def results_section(rep: Any, res: Any, settings: Mapping[str, Any], prov: Mapping[str, str] | None = None,
                    colors: Mapping[str, str] | None = None) -> None:
    """:func:`add_section` from an ``AnalysisResults``, its settings and provenance (checkpoints, versions)."""
    from umae_eval.pipeline.extra_metrics import metric_differences, metric_intervals

    sets, pairs = _from_results(res)
    if sets:
        fig_settings = {"data": settings["data"]["spec"], "pool": settings["pool"], "seed": settings["seed"],
                        **(prov or {})}
        add_section(rep, sets, metric_intervals(sets), metric_differences(sets), pairs, fig_settings, colors)
        from umae_eval.report.block_metrics import add_block_section

        add_block_section(rep, res, fig_settings, colors)
