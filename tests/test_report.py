"""The shared report writer and the figure functions: escaping, self-containment, settings."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from umae_eval.report import figures as F
from umae_eval.report.writer import HtmlReport, _script_json, write_outputs

EVIL = ["<img src=x onerror=alert(1)>", "</script><script>alert(1)</script>", "a&b <!-- c"]


def _report_with_everything() -> HtmlReport:
    rep = HtmlReport("title <b>x</b>", command="compare")
    rep.add_settings({"data": EVIL[0], "k": [10, 20], "nested": {"pool": "cls"}})
    rep.add_table("table " + EVIL[1], pd.DataFrame({"name": EVIL, "acc": [1.0, 2.5, 3.0], "n": [1, 2, 3]}),
                  caption=EVIL[2], settings={"seed": 0, "path": EVIL[0]})
    labels = np.array([0, 1, 2, 0, 1, 2])
    rep.add_figure("map", F.embedding_figure(np.zeros((6, 2)), labels, EVIL, title="t-SNE " + EVIL[1]),
                   settings={"per_class": 2, "seed": 0})
    rep.add_figure("sv", F.singular_values_figure({EVIL[1]: np.array([1.0, 0.1, 0.0])}))
    rep.add_text("a paragraph " + EVIL[0] + "\n\nsecond")
    return rep


def test_user_strings_never_become_markup() -> None:
    html = _report_with_everything().render()
    assert "<img src=x" not in html and "<b>x</b>" not in html and "<!-- c" not in html
    assert "</script><script>alert" not in html and "<script>alert" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    # two figures + plotly.js + the print helper: four scripts, all closed by their own end tag
    assert html.count("<script") == html.count("</script>") == 4


def test_figure_json_is_script_safe_and_round_trips() -> None:
    text = _script_json({"name": EVIL[1], "x": [1.5, float("nan")], "sep": "\u2028"})
    assert "<" not in text and ">" not in text and "&" not in text and "\u2028" not in text
    back = json.loads(text.replace("NaN", "null"))
    assert back["name"] == EVIL[1] and back["sep"] == "\u2028"


def test_plotly_labels_are_escaped_for_plotly_text() -> None:
    fig = F.embedding_figure(np.zeros((3, 2)), np.array([0, 1, 2]), EVIL, title="m")
    names = [t.name for t in fig.data[1:]]  # data[0] holds the points, one legend entry per class after it
    # plotly renders a subset of HTML in labels; escaped, it shows the literal characters instead
    assert names == ["&lt;img src=x onerror=alert(1)&gt;", "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;",
                     "a&amp;b &lt;!-- c"]
    assert fig.layout.legend.itemsizing == "constant"


def test_report_is_self_contained_with_plotly_once(tmp_path: Path) -> None:
    rep = _report_with_everything()
    rep.add_figure("third", F.rank_bars_figure({"a": {"effective_rank": 3.0, "rankme": 4.0}}))
    html = rep.render()
    assert rep.n_figures == 3 and html.count("<div class='umae-figure'>") == 3
    assert html.count("Plotly.newPlot(") == 3
    assert html.count("plotly.js (basic - minified) v") == 1  # the basic bundle, inlined exactly once
    assert len(html.encode()) < 2_000_000
    assert "<script src" not in html and "<link" not in html and "cdn.plot.ly" not in html.split("</head>")[1]
    assert html.count("class='figsettings'") == 2  # map + table carry their settings; sv had none


def test_the_full_bundle_only_when_a_trace_type_needs_it() -> None:
    """scatter / bar draw with the vendored basic bundle (1.2 MB); anything else gets plotly's full one."""
    import hashlib

    import plotly.graph_objects as go
    from plotly.offline import get_plotlyjs

    from umae_eval.report.writer import plotly_js

    vendored = Path(F.__file__).with_name("vendor") / "plotly-basic.min.js"
    digest = hashlib.sha256(vendored.read_bytes()).hexdigest()
    assert digest == "99784e3abfb07b142a15e521a439e6d9addceadb3f79553fd24c72774f0649ba"  # npm, unchanged
    assert plotly_js({"scatter", "bar"}) == vendored.read_text() and len(plotly_js({"scatter"})) < 1_300_000
    assert plotly_js({"scatter", "heatmap"}) == get_plotlyjs()
    rep = HtmlReport("t", command="probe")
    rep.add_figure("heat", go.Figure(go.Heatmap(z=[[1, 2], [3, 4]])))
    assert get_plotlyjs()[:200] in rep.render()


def test_no_figures_means_no_plotly(tmp_path: Path) -> None:
    rep = HtmlReport("t", command="probe")
    rep.add_text("nothing to plot")
    assert "<script" not in rep.render()


def test_figure_settings_go_under_the_figure_and_into_layout_meta() -> None:
    rep = HtmlReport("t", command="collapse-report")
    fig = F.singular_values_figure({"a": np.array([1.0, 0.5])})
    rep.add_figure("sv", fig, settings={"pool": "cls", "sha256": "ab" * 32, "k": [10, 20]})
    html = rep.render()
    assert "pool=cls; sha256=" + "ab" * 32 + "; k=10, 20" in html
    assert fig.layout.meta["umae_settings"]["pool"] == "cls"


def test_write_outputs_writes_json_csv_html(tmp_path: Path) -> None:
    rep = _report_with_everything()
    df = pd.DataFrame({"checkpoint": ["a", "b"], "linear_accuracy": [50.0, 60.0]})
    written = write_outputs(tmp_path / "out", "probe", {"pool": "cls"}, {"x": np.float32(1.5)}, {"accuracy": df}, rep)
    assert set(written) == {"accuracy", "report", "results", "figures"}
    res = json.loads(written["results"].read_text())
    assert res["command"] == "probe" and res["settings"] == {"pool": "cls"} and res["results"] == {"x": 1.5}
    assert "torch" in res["versions"] and res["created"]
    assert res["project"]["version"] and res["project"]["revision"]
    assert pd.read_csv(written["accuracy"]).equals(df)
    page = written["report"].read_text()
    assert page.startswith("<!DOCTYPE html>")
    # every file written is linked from the page, figures included
    stems = sorted(p.stem for p in written["figures"].glob("*.pdf"))
    assert stems == ["map", "sv"]
    for name in ["results.json", "accuracy.csv"] + [f"figures/{s}.{e}" for s in stems for e in ("pdf", "svg", "png")]:
        assert f"href='{name}'" in page, name


def test_singular_values_figure_is_log_scale_and_drops_zeros() -> None:
    fig = F.singular_values_figure({"random init": np.array([1.0, 0.5, 0.0]), "mae": np.array([1.0, 0.1, 0.01])})
    assert fig.layout.yaxis.type == "log"
    assert [t.name for t in fig.data] == ["random init", "mae"]
    assert list(fig.data[0].y) == [1.0, 0.5] and list(fig.data[0].x) == [1, 2]


def test_embedding_figure_draws_points_in_seeded_random_order_with_a_class_key() -> None:
    """All points in one trace, in a seeded permutation (no class on top of all others), each with
    its class's colour and shape; one legend entry per class, in class order."""
    labels = np.arange(40) % 4
    coords = np.stack([np.arange(40.0), np.zeros(40)], axis=1)
    fig = F.embedding_figure(coords, labels, ["plane", "car", "bird", "cat"], title="t-SNE")
    pts = fig.data[0]
    order = np.random.default_rng(0).permutation(40)
    assert list(pts.x) == list(coords[order, 0]) and list(pts.customdata) == list(order)
    assert list(pts.marker.color) == [F.CLASS_COLORS_10[c] for c in labels[order]]
    assert list(pts.marker.symbol) == [F.CLASS_SYMBOLS[c] for c in labels[order]]
    assert [t.name for t in fig.data[1:]] == ["plane", "car", "bird", "cat"]
    assert [t.marker.symbol for t in fig.data[1:]] == list(F.CLASS_SYMBOLS[:4])
    # the same seed, the same picture
    again = F.embedding_figure(coords, labels, ["plane", "car", "bird", "cat"], title="t-SNE")
    assert list(again.data[0].x) == list(pts.x)


def test_one_colour_per_checkpoint_role_in_every_figure() -> None:
    """MAE, U-MAE, random init and a smoke run keep their role's colour whatever the order; a second
    checkpoint of a role gets the next colour of the fixed order, never a role's."""
    roles = {"U-MAE e20": "U-MAE", "random init": "untrained", "MAE e20": "MAE", "smoke": "smoke run",
             "U-MAE λ=0.1": "U-MAE"}
    colors = F.checkpoint_colors(roles)
    assert colors["MAE e20"] == F.ROLE_COLORS["MAE"] and colors["U-MAE e20"] == F.ROLE_COLORS["U-MAE"]
    assert colors["random init"] == F.ROLE_COLORS["untrained"] and colors["smoke"] == F.ROLE_COLORS["smoke run"]
    assert colors["U-MAE λ=0.1"] == F.OTHER_COLORS[0] and len(set(colors.values())) == 5
    sv = {n: np.array([1.0, 0.5]) for n in reversed(list(roles))}
    figs = [F.singular_values_figure(sv, colors=colors),
            F.rank_bars_figure({n: {"effective_rank": 3.0} for n in roles}, colors=colors),
            F.alignment_uniformity_figure({n: (0.5, -2.0) for n in roles}, colors=colors),
            F.training_curve_figure({n: {"epoch": [1], "effective_rank": [2.0]} for n in roles},
                                    metric="effective_rank", y_title="r", title="t", colors=colors)]
    for fig in figs:
        for t in fig.data:
            c = t.line.color if t.type == "scatter" and t.mode and "lines" in t.mode else t.marker.color
            assert c == colors[t.name], (t.name, c)


def test_training_curve_skips_runs_without_the_metric() -> None:
    curves = {"mae": {"epoch": [1, 2], "effective_rank": [5.0, 4.0]}, "other": {"epoch": [1], "loss": [1.0]}}
    fig = F.training_curve_figure(curves, metric="effective_rank", y_title="effective rank", title="Fig. 1c")
    assert [t.name for t in fig.data] == ["mae"] and list(fig.data[0].y) == [5.0, 4.0]


@pytest.mark.parametrize("make,n_missing", [
    (lambda: F.accuracy_figure({"a": {"linear_accuracy": 50.0, "knn_accuracy@20": 40.0},
                                "b": {"linear_accuracy": 60.0}}), 1),
    (lambda: F.rank_bars_figure({"a": {"effective_rank": 3.0, "rankme": 4.0}}), 0),
    (lambda: F.alignment_uniformity_figure({"a": (0.5, -2.0)}), 0),
])
def test_bar_and_scatter_figures_build(make, n_missing: int) -> None:  # type: ignore[no-untyped-def]
    fig = make()
    assert isinstance(fig, go.Figure) and len(fig.data) >= 1
    if fig.data[0].type == "bar":
        # one bar per checkpoint and measure; a missing value is a gap (NaN), never a silent 0
        ys = [list(t.y) for t in fig.data]
        assert sum(np.isnan(v) for y in ys for v in y) == n_missing


def test_tables_use_words_and_one_number_format_per_column() -> None:
    from umae_eval.report.tables import formatted, header

    df = pd.DataFrame({"checkpoint": ["a", "b", "c"], "linear_accuracy": [27.0, 27.5, 27.25],
                       "knn_accuracy@20": [30.0, 31.0, 29.0], "effective_rank": [6.861, 12.3, 150.2],
                       "lam": [0.01, 0.0, float("nan")], "epochs": [200, 3, 0], "beyond_noise": [True, False, True]})
    heads, rows = formatted(df)
    assert heads == ["checkpoint", "linear (%)", "kNN k=20 (%)", "effective rank", "λ", "epochs", "beyond noise"]
    cols = list(zip(*[[t for t, _ in r] for r in rows]))
    assert cols[1] == ("27.0", "27.5", "27.2") and cols[2] == ("30.0", "31.0", "29.0")  # percent: one decimal
    assert cols[3] == ("6.9", "12.3", "150.2")  # one format: three digits of the median, for the whole column
    assert cols[4] == ("0.01", "0.00", "–") and cols[5] == ("200", "3", "0") and cols[6] == ("yes", "no", "yes")
    assert header("knn_accuracy@20_lo") == "kNN k=20 95% low" and header("some_new_field") == "some new field"


def test_page_has_toc_anchors_viewport_print_css_and_collapsed_sections() -> None:
    rep = HtmlReport("t", command="compare")
    rep.add_heading("Summary")
    rep.add_sentences(["A is 1.0 points above B <b>."], verdict=True)
    rep.add_figure("Fig. 1b", F.singular_values_figure({"a": np.array([1.0, 0.5])}))
    with rep.collapsed("Settings, versions and provenance"):
        rep.add_settings({"seed": 0})
    html = rep.render()
    assert "<meta name='viewport' content='width=device-width, initial-scale=1'>" in html
    assert "<nav class='toc'" in html and "href='#summary'" in html and "id='summary'" in html
    assert "href='#fig-1b'" in html and "href='#settings-versions-and-provenance'" in html
    assert "<details id='settings-versions-and-provenance'>" in html
    assert "@media print" in html and ".modebar" in html and "break-inside:avoid" in html
    assert "@media (max-width:900px)" in html
    assert "A is 1.0 points above B &lt;b&gt;." in html
    assert "toImageButtonOptions" in html and '"format": "svg"' in html


def test_sweep_verdict_calls_a_boundary_argmin_no_sweet_spot() -> None:
    from umae_eval.report.sweep import sweet_text, verdict_sentences

    ratios = [0.0, 0.25, 0.5, 0.75]
    assert sweet_text(0.0, 0.0, 0.0, ratios).startswith("no interior minimum (smallest at ρ = 0")
    grid = [round(0.1 * i, 1) for i in range(1, 10)]
    assert sweet_text(0.7, 0.6, 0.8, grid) == "ρ = 0.7 (95% 0.6 to 0.8)"
    # an interval over (nearly) the whole range places no minimum: 'not identified', not 'sweet spot at 0.7'
    for lo, hi in ((0.1, 0.9), (0.2, 0.8)):
        assert sweet_text(0.7, lo, hi, grid).startswith("not identified (smallest at ρ = 0.7"), (lo, hi)
    assert sweet_text(0.5, 0.25, 0.75, ratios).startswith("not identified")
    table = pd.DataFrame([{"estimator": "all-pairs", "sweet_spot": 0.0, "sweet_lo": 0.0, "sweet_hi": 0.0,
                           "intra_falls": False, "inter_falls": True, "relative_falls_then_rises": False,
                           "sweet_in_0.6_0.8": False, "reproduces_paper_shape": False}])
    (line,) = verdict_sentences(table, ratios)
    assert line.startswith("all-pairs (the paper's text): no interior minimum") and "sweet spot 0" not in line


def test_sweep_verdict_says_not_identified_for_a_minimum_spanning_the_range() -> None:
    from umae_eval.report.sweep import sweet_frame, verdict_sentences

    grid = [round(0.1 * i, 1) for i in range(1, 10)]
    row = {"estimator": "shared-mask", "sweet_spot": 0.7, "sweet_lo": 0.1, "sweet_hi": 0.9, "intra_falls": True,
           "inter_falls": True, "relative_falls_then_rises": True, "sweet_in_0.6_0.8": True,
           "reproduces_paper_shape": True}
    (line,) = verdict_sentences(pd.DataFrame([row]), grid)
    assert "sweet spot not identified" in line and "sweet spot at" not in line
    assert "does not reproduce the paper's shape" in line
    frame = sweet_frame(pd.DataFrame([row]), grid)
    assert frame["minimum in 0.6-0.8"].tolist() == ["not identified"]
    assert frame["reproduces the paper's shape"].tolist() == [False]
    (line,) = verdict_sentences(pd.DataFrame([{**row, "sweet_lo": 0.6, "sweet_hi": 0.8}]), grid)
    assert "sweet spot at ρ = 0.7 (95% 0.6 to 0.8)" in line and "reproduces the paper's shape" in line


def test_lambda_sweep_on_an_ordered_log_axis() -> None:
    """λ > 0 in increasing order on a log axis whatever the input order, each with its interval; λ = 0
    (MAE) as a dashed line with a band, not a point a log axis cannot hold."""
    from umae_eval.report.static import to_matplotlib

    pts = {"U-MAE λ=0.1": (0.1, 40.0, 38.0, 42.0), "MAE": (0.0, 44.0, 43.0, 45.0),
           "U-MAE λ=0.001": (0.001, 45.0, 44.0, 46.5), "U-MAE λ=0.01": (0.01, 46.0, 45.0, 47.0)}
    fig = F.lambda_figure(pts, y_title="linear accuracy (%)")
    assert fig.layout.xaxis.type == "log"
    join = next(t for t in fig.data if t.mode == "lines" and t.x[0] is not None)
    assert list(join.x) == [0.001, 0.01, 0.1] and list(join.y) == [45.0, 46.0, 40.0]
    marks = {t.name: t for t in fig.data if t.mode == "markers"}
    assert set(marks) == {"U-MAE λ=0.1", "U-MAE λ=0.001", "U-MAE λ=0.01"}
    assert list(marks["U-MAE λ=0.1"].error_y.arrayminus) == [2.0] and list(marks["U-MAE λ=0.1"].error_y.array) == [2.0]
    assert [s.y0 for s in fig.layout.shapes if s.type == "line"] == [44.0]
    ax = to_matplotlib(fig).axes[0]
    assert ax.get_xscale() == "log" and any(abs(p.get_height() - 2.0) < 1e-9 for p in ax.patches)  # the band
