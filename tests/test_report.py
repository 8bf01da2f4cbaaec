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
    names = [t.name for t in fig.data]
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
    from plotly.offline import get_plotlyjs

    assert html.count(get_plotlyjs()[:200]) == 1  # the library itself, inlined exactly once
    assert "<script src" not in html and "<link" not in html and "cdn.plot.ly" not in html.split("</head>")[1]
    assert html.count("class='figsettings'") == 2  # map + table carry their settings; sv had none


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


def test_embedding_figure_one_trace_per_class_in_class_order() -> None:
    labels = np.array([2, 0, 2, 1])
    coords = np.arange(8, dtype=float).reshape(4, 2)
    fig = F.embedding_figure(coords, labels, ["plane", "car", "bird"], title="t-SNE")
    assert [t.name for t in fig.data] == ["plane", "car", "bird"]
    assert list(fig.data[2].x) == [0.0, 4.0]


def test_training_curve_skips_runs_without_the_metric() -> None:
    curves = {"mae": {"epoch": [1, 2], "effective_rank": [5.0, 4.0]}, "other": {"epoch": [1], "loss": [1.0]}}
    fig = F.training_curve_figure(curves, metric="effective_rank", y_title="effective rank", title="Fig. 1c")
    assert [t.name for t in fig.data] == ["mae"] and list(fig.data[0].y) == [5.0, 4.0]


@pytest.mark.parametrize("make", [
    lambda: F.accuracy_figure({"a": {"linear_accuracy": 50.0, "knn_accuracy@20": 40.0}, "b": {"linear_accuracy": 60.0}}),
    lambda: F.rank_bars_figure({"a": {"effective_rank": 3.0, "rankme": 4.0}}),
    lambda: F.alignment_uniformity_figure({"a": (0.5, -2.0)}),
])
def test_bar_and_scatter_figures_build(make) -> None:  # type: ignore[no-untyped-def]
    fig = make()
    assert isinstance(fig, go.Figure) and len(fig.data) >= 1
    if fig.data[0].type == "bar":
        # a missing value is a gap (NaN), never a silent 0
        ys = [list(t.y) for t in fig.data]
        assert any(np.isnan(v) for y in ys for v in y) or len(ys[0]) == 1


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
    assert sweet_text(0.5, 0.25, 0.75, ratios) == "ρ = 0.5 (95% 0.25 to 0.75)"
    table = pd.DataFrame([{"estimator": "all-pairs", "sweet_spot": 0.0, "sweet_lo": 0.0, "sweet_hi": 0.0,
                           "intra_falls": False, "inter_falls": True, "relative_falls_then_rises": False,
                           "sweet_in_0.6_0.8": False, "reproduces_paper_shape": False}])
    (line,) = verdict_sentences(table, ratios)
    assert line.startswith("all-pairs (the paper's text): no interior minimum") and "sweet spot 0" not in line
