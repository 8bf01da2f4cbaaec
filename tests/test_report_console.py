"""What the commands print fits an 80-column terminal: no number is ever wrapped."""

from __future__ import annotations

from rich.console import Console

from umae_eval.pipeline.intervals import Interval
from umae_eval.pipeline.recipe import Recipe
from umae_eval.pipeline.summary import Headline, Summary
from umae_eval.report.console import summary_tables


def _summary(names: list[str]) -> Summary:
    heads = []
    for i, name in enumerate(names):
        a = 100.0 - 7.3 * i  # 100.0 is the widest percentage
        heads.append(Headline(
            name, Recipe(), dim=96,
            accuracies={"linear_accuracy": Interval(a, a - 2.9, min(100.0, a + 3.0)),
                        "knn_accuracy@20": Interval(a - 1, a - 4.2, a + 1.1),
                        "mean_classifier_accuracy": Interval(a - 9.5, a - 12.0, a - 7.1)},
            ranks={"effective_rank": 79.9 - i, "rankme": 60.1},
            rank_intervals={"effective_rank": Interval(79.9 - i, 78.0 - i, 81.8 - i),
                            "rankme": Interval(60.1, 59.0, 61.3)}))
    return Summary("linear_accuracy", 10_000, 2000, heads, [])


def test_summary_tables_fit_80_columns_without_wrapping_a_number() -> None:
    names = ["U-MAE (CIFAR-10, 20 ep)", "MAE (CIFAR-10, 20 ep)", "random init",
             "smoke run (U-MAE, sample) with a very long label that must fold in its own column"]
    summary = _summary(names)
    console = Console(width=80, record=True, force_terminal=False, color_system=None)
    tables = summary_tables(summary)
    assert len(tables) == 2
    for table in tables:
        console.print(table)
    text = console.export_text()
    lines = text.splitlines()
    assert max(len(line) for line in lines) <= 80, "\n".join(lines)
    for h in summary.headlines:
        for iv in [*h.accuracies.values(), *h.rank_intervals.values()]:
            cell = f"{iv.estimate:.1f} [{iv.lo:.1f}, {iv.hi:.1f}]"
            assert any(cell in line for line in lines), (cell, text)
    for header in ("linear", "kNN@20", "mean clf", "eff. rank", "RankMe"):
        assert any(header in line for line in lines), header


def test_sweep_table_fits_80_columns_without_cutting_a_number() -> None:
    """The mask-ratio sweep's table (the longest estimator name, long interval ends, every kind of
    argmin: interior, at an end, not identified) at 80 columns: every number whole, nothing cut."""
    import pandas as pd

    from umae_eval.report.console import sweep_table

    ratios = [round(0.05 * i, 2) for i in range(20)]
    rows = [("all-pairs", 0.45, 0.05, 0.95, False, False, False, False),  # spans the range: n.i.
            ("aligned", 0.0, 0.0, 0.75375, False, False, False, False),  # an end
            ("closest-view", 0.7, 0.6537, 0.75375, True, True, True, True),  # identified
            ("masked-image", 0.95, 0.9, 0.95, True, True, False, False),
            ("shared-masked-image", 0.6, 0.123456, 0.754321, True, False, True, False)]
    sweet = pd.DataFrame(rows, columns=["estimator", "sweet_spot", "sweet_lo", "sweet_hi", "intra_falls",
                                        "inter_falls", "relative_falls_then_rises", "reproduces_paper_shape"])
    console = Console(width=80, record=True, force_terminal=False, color_system=None)
    console.print(sweep_table(sweet, ratios, "pixel"))
    lines = console.export_text().splitlines()
    assert max(len(line) for line in lines) <= 80 and not any("…" in line for line in lines), "\n".join(lines)
    cells = {r[0]: [c.strip() for c in line.split("│")[1:-1]] for r in rows for line in lines if f" {r[0]} " in line}
    assert cells["all-pairs"][:3] == ["all-pairs", "0.45 n.i.", "0.05-0.95"]
    assert cells["aligned"][:3] == ["aligned", "0 end", "0-0.754"]
    assert cells["closest-view"] == ["closest-view", "0.7", "0.654-0.754", "yes/yes", "yes", "yes"]
    assert cells["masked-image"][1] == "0.95 end"
    assert cells["shared-masked-image"] == ["shared-masked-image", "0.6", "0.123-0.754", "yes/no", "yes", "no"]
