"""figures/: every report figure as PDF, SVG and PNG (2x) that really holds a drawing."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from figure_checks import assert_pdf_draws, assert_svg_draws
from PIL import Image

from umae_eval.report import figures as F
from umae_eval.report.static import export_figures, to_matplotlib
from umae_eval.report.writer import StaticFigure


def _sweep():
    from umae_eval.maskratio.sweep import SweepConfig, run_sweep

    rng = np.random.default_rng(0)
    y_train, y_test = np.repeat(np.arange(3), 8), np.repeat(np.arange(3), 6)
    tint = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]])
    x_train = np.clip(tint[y_train][:, None, None, :] + rng.normal(0, 40, (24, 8, 8, 3)), 0, 255).astype(np.uint8)
    x_test = np.clip(tint[y_test][:, None, None, :] + rng.normal(0, 40, (18, 8, 8, 3)), 0, 255).astype(np.uint8)
    cfg = SweepConfig(ratios=[0.0, 0.25, 0.5, 0.75], views=2, pairs=12, patch_size=2, n_boot=30,
                      label_images=9, graph_images=6, graph_views=2, graph_top=5)
    return run_sweep(x_test, y_test, x_train, y_train, cfg, n_classes=3)


def _all_figures() -> dict[str, object]:
    from umae_eval.maskratio import figures as MF

    rng = np.random.default_rng(0)
    sv = {n: np.sort(rng.random(48))[::-1] for n in ("random init", "MAE", "U-MAE")}
    labels = np.arange(300) % 10
    many = np.arange(600) % 150
    curves = {"MAE": {"epoch": [1, 2, 3, 4], "linear_accuracy": [30.0, 33.0, 35.0, 36.0],
                      "knn_accuracy:epoch": [1, 2, 3, 4], "knn_accuracy": [25.0, 27.0, 28.0, 28.5]}}
    sweep = _sweep()
    return {
        "sv": F.singular_values_figure({k: v / v[0] for k, v in sv.items()}, settings_line="pool=cls · seed=0"),
        "ranks": F.rank_bars_figure({k: {"effective_rank": 10.0 + i, "rankme": 12.0} for i, k in enumerate(sv)}),
        "accuracy": F.accuracy_figure({"MAE": {"linear_accuracy": 35.3}, "U-MAE": {"linear_accuracy": 37.2}},
                                      intervals={"MAE": {"linear_accuracy": (32.4, 38.3)},
                                                 "U-MAE": {"linear_accuracy": (34.2, 40.2)}}),
        "align": F.alignment_uniformity_figure({"MAE": (0.5, -2.0), "U-MAE": (0.3, -3.0)}),
        "map": F.embedding_figure(rng.normal(size=(300, 2)), labels, [f"c{i}" for i in range(10)], title="t-SNE"),
        "map150": F.embedding_figure(rng.normal(size=(600, 2)), many, [f"c{i}" for i in range(150)], title="t-SNE"),
        "maps": F.maps_figure([(n, rng.normal(size=(300, 2)), labels, np.arange(300)) for n in ("a", "b", "c", "d")],
                              [f"c{i}" for i in range(10)], title="t-SNE maps"),
        "fig3b": F.training_curve_figure(curves, metric="linear_accuracy", extra_metric="knn_accuracy",
                                         y_title="accuracy (%)", title="Fig. 3b", eval_images={"MAE": 1000}),
        "fig2b": MF.intra_inter_figure(sweep, "note line 1<br>note line 2"),
        "fig2c": MF.relative_figure(sweep, "note"),
        "fig2c_change": MF.relative_change_figure(sweep, "note"),
        "label_error": MF.label_error_figure(sweep, "note"),
        "graph": MF.spectrum_figure(sweep, "note"),
    }


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    figs = _all_figures()
    folder = tmp_path_factory.mktemp("figures")
    statics = [StaticFigure(name, fig, f"title of {name}", {"seed": "0", "data": "demo"}) for name, fig in figs.items()]
    export_figures(statics, folder)
    return folder, list(figs)


def test_every_figure_is_written_as_pdf_svg_and_png(exported: tuple[Path, list[str]]) -> None:
    folder, names = exported
    assert names == NAMES
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        [f"{n}.{e}" for n in names for e in ("pdf", "svg", "png")] + ["captions.md"])


def test_captions_and_settings_go_to_captions_md_not_into_the_drawing(exported: tuple[Path, list[str]]) -> None:
    """No baked title or settings footer: they are in captions.md (and the metadata) instead."""
    import re

    folder, names = exported
    md = (folder / "captions.md").read_text()
    for name in names:
        assert f"## {name}\n\n**title of {name}.**" in md and "seed=0" in md
        svg = (folder / f"{name}.svg").read_text()
        texts = " ".join(re.findall(r"<text[^>]*>([^<]*)</text>", svg))
        assert f"title of {name}" not in texts and "seed=0" not in texts, name
    assert "note line 1 / note line 2" in md  # the sweep's settings stamp, moved out of the drawing


@pytest.mark.parametrize("name", ["sv", "accuracy", "maps", "fig2c", "graph"])
def test_figures_are_one_or_two_paper_columns_wide_with_text_of_7_pt_or_more(exported: tuple[Path, list[str]],
                                                                           name: str) -> None:
    import re

    from pypdf import PdfReader

    folder, _ = exported
    width_in = float(PdfReader(str(folder / f"{name}.pdf")).pages[0].mediabox.width) / 72.0
    assert min(abs(width_in - 3.25), abs(width_in - 6.75)) < 0.05, width_in
    svg = (folder / f"{name}.svg").read_text()
    sizes = [float(v) for v in re.findall(r"font(?:-size)?:\s*(?:[a-z]+\s+)*([0-9.]+)px", svg)]
    # text at 7 pt or more; only mathtext's sub- and superscripts (70% of their base) are smaller,
    # and their base is at least 8 pt, so a script is never under 5.6 pt (LaTeX's scriptsize of 8 pt is 6)
    small = {v for v in sizes if v < 7.0 - 1e-6}
    assert sizes and all(any(abs(v - 0.7 * b) < 0.05 and b >= 8.0 for b in sizes) for v in small), sorted(set(sizes))


NAMES = ["sv", "ranks", "accuracy", "align", "map", "map150", "maps", "fig3b", "fig2b", "fig2c", "fig2c_change",
         "label_error", "graph"]


@pytest.mark.parametrize("name", NAMES)
def test_pdf_and_svg_hold_a_drawing(exported: tuple[Path, list[str]], name: str) -> None:
    folder, _ = exported
    meta = assert_pdf_draws(folder / f"{name}.pdf", text=name != "map150")
    assert meta["/Title"] == f"title of {name}" and "seed=0" in meta["/Subject"] and "umae" in meta["/Creator"]
    assert_svg_draws(folder / f"{name}.svg", text=name != "map150")
    with Image.open(folder / f"{name}.png") as im:
        # 200 dpi at one column (3.25 in) or the text width (6.75 in)
        assert min(abs(im.width - 650), abs(im.width - 1350)) <= 6 and im.height >= 300, im.size


def test_scatter_points_and_bars_survive_the_conversion() -> None:
    """The redrawn figure holds the same data: every map point, every bar, each error bar's ends."""
    rng = np.random.default_rng(1)
    coords = rng.normal(size=(90, 2))
    fig = to_matplotlib(F.embedding_figure(coords, np.arange(90) % 3, ["a", "b", "c"], title="m"))
    pts = np.concatenate([c.get_offsets() for ax in fig.axes for c in ax.collections])
    assert len(pts) == 90 and np.allclose(np.sort(pts[:, 0]), np.sort(coords[:, 0]))
    acc = F.accuracy_figure({"A": {"linear_accuracy": 40.0}, "B": {"linear_accuracy": 30.0}},
                            intervals={"A": {"linear_accuracy": (37.0, 44.0)}, "B": {"linear_accuracy": (28.0, 33.0)}})
    ax = to_matplotlib(acc).axes[0]
    heights = sorted(p.get_height() for p in ax.patches)
    assert heights == [30.0, 40.0]
    segs = [s for c in ax.collections for s in c.get_segments()]
    ends = sorted((round(float(s[0][1]), 6), round(float(s[1][1]), 6)) for s in segs)
    assert ends == [(28.0, 33.0), (37.0, 44.0)]
    assert ax.get_ylim() == (0.0, 100.0)


def test_log_axis_has_decade_ticks_and_curve_axes_hold_every_line() -> None:
    """Fig. 1b's log axis is labelled by decades (plotly's dtick=1 there is not 'integer ticks'),
    and Fig. 3b's y range holds the dashed kNN line as well as the linear-probe bands."""
    sv = {"a": np.geomspace(1.0, 1e-3, 40), "b": np.geomspace(1.0, 1e-1, 40)}
    ax = to_matplotlib(F.singular_values_figure(sv)).axes[0]
    lo, hi = ax.get_ylim()
    ticks = [t for t in ax.get_yticks() if lo <= t <= hi]
    assert len(ticks) >= 3 and all(np.isclose(np.log10(t), round(np.log10(t))) for t in ticks), ticks
    assert hi < 2.0  # no 1.05 / 1.2 / 1.35 integer-locator ticks above sigma_1 / sigma_1 = 1
    curves = {"run": {"epoch": [2, 4, 6], "linear_accuracy": [40.0, 42.0, 44.0], "knn_accuracy": [20.0, 25.0, 30.0]}}
    fig = F.training_curve_figure(curves, metric="linear_accuracy", extra_metric="knn_accuracy", y_title="acc",
                                  title="Fig. 3b", eval_images={"run": 2000})
    y0, y1 = fig.layout.yaxis.range
    assert y0 <= 20.0 and y1 >= 44.0


def test_horizontal_error_bars_survive_the_conversion() -> None:
    """Fig. 2c's sweet-spot interval is an error_x bar on the page: the PDF/SVG/PNG draw it too."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=[0.7], y=[1.5], mode="markers",
                               error_x={"type": "data", "array": [0.1], "arrayminus": [0.05], "visible": True},
                               error_y={"type": "data", "array": [0.2], "arrayminus": [0.3], "visible": True}))
    ax = to_matplotlib(fig).axes[0]
    segs = [np.round(np.asarray(s), 6) for c in ax.collections if hasattr(c, "get_segments")
            for s in c.get_segments()]
    horizontal = [s for s in segs if s[0][1] == s[1][1]]
    vertical = [s for s in segs if s[0][0] == s[1][0]]
    assert [sorted([s[0][0], s[1][0]]) for s in horizontal] == [[0.65, 0.8]]
    assert [sorted([s[0][1], s[1][1]]) for s in vertical] == [[1.2, 1.7]]


@pytest.mark.parametrize("height", [300, 380, 900])
def test_a_panel_grid_legend_sits_below_every_x_title_at_any_height(height: int) -> None:
    """The legend under a row of panels starts below the lowest x title as drawn (CI caught 'block'
    under the 'MAE' entry of the 380-px attention entropy / NMI figure with a fixed offset)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    from umae_eval.report.visual_figures import entropy_nmi_figure
    from umae_eval.visual.attention_stats import StatSummary

    def stats(shift: float) -> dict[str, StatSummary]:
        m = np.linspace(1.0, 2.0, 6) + shift
        return {k: StatSummary(mean=m, lo=m - 0.1, hi=m + 0.1) for k in ("cls_entropy", "patch_entropy", "nmi")}

    plot = entropy_nmi_figure([("MAE", stats(0.0)), ("U-MAE", stats(0.5))], "note")
    plot.update_layout(height=height)
    fig = to_matplotlib(plot)
    renderer = FigureCanvasAgg(fig).get_renderer()
    (legend,) = fig.legends
    top = legend.get_window_extent(renderer).y1
    titles = [ax.xaxis.label.get_window_extent(renderer) for ax in fig.axes]
    assert all(ax.xaxis.label.get_text() == "block" for ax in fig.axes)
    assert top < min(t.y0 for t in titles), (top, [t.y0 for t in titles])
    assert sorted(t.get_text() for t in legend.get_texts()) == ["MAE", "U-MAE"]
