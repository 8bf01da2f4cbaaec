"""The summary panel that opens every analysis report: the verdict first.

Per checkpoint: its recipe and headline numbers (linear, kNN, mean classifier with 95%
bootstrap intervals over test images; effective rank; RankMe; the paper's number where the
setting matches); then the paired differences between checkpoints with their intervals, and
one plain sentence per comparison. Built from :class:`umae_eval.pipeline.AnalysisResults`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import pandas as pd

from umae_eval.pipeline import AnalysisResults
from umae_eval.pipeline.intervals import Interval
from umae_eval.pipeline.summary import RANK_NAMES, metric_words, one_decimal
from umae_eval.report.writer import HtmlReport


@dataclass
class Preface:
    """What opens a summary before this run's own numbers (umae demo: the full study first).

    ``text``: paragraphs (blank lines split them); ``table``: the study's numbers (optional) and
    its ``table_caption``; ``seed_table`` / ``seed_caption``: its differences over pre-training
    seeds (optional, shown first); ``finetune_table`` / ``finetune_caption``: its fine-tuning runs
    (optional, shown next); ``check``: what this run's numbers are, read against the study
    (shown above them).
    """

    text: str
    table: pd.DataFrame | None = None
    table_caption: str = ""
    check: str = ""
    seed_table: pd.DataFrame | None = None  # the study over pre-training seeds, when it has one
    seed_caption: str = ""
    finetune_table: pd.DataFrame | None = None  # its fine-tuning runs, when it has them
    finetune_caption: str = ""


def report_colors(res: AnalysisResults) -> dict[str, str]:
    """One colour per checkpoint for every figure of the report, by role (MAE, U-MAE, untrained,
    a checkpoint not compared such as demo's smoke run) from the recipe; a fixed order otherwise."""
    from umae_eval.report.figures import _role_from_name, checkpoint_colors

    not_compared = set(res.summary.table_only)
    # no recipe recorded (a bare encoder): the role its name gives, as any figure drawn without
    # this map would guess, so the two can never disagree
    return checkpoint_colors({c.name: "smoke run" if c.name in not_compared else (c.recipe.method or
                                                                                  _role_from_name(c.name))
                              for c in res.checkpoints})


def signed_decimal(x: float) -> str:
    """``'+3.7'`` / ``'-0.4'``: a difference to one decimal, signed unless it rounds to 0."""
    return f"{x:+.1f}" if round(x, 1) != 0 else one_decimal(x)


def brackets(lo: float, hi: float) -> str:
    """``'[37.1, 43.0]'``: an interval's ends to one decimal, as every bracketed number shows them."""
    return f"[{one_decimal(lo)}, {one_decimal(hi)}]"


def bracketed(estimate: float, lo: float, hi: float, *, signed: bool = False) -> str:
    """``'40.0 [37.1, 43.0]'`` (``signed``: ``'+3.7 [0.4, 7.0]'``): a number and its 95% interval, short."""
    head = signed_decimal(estimate) if signed else one_decimal(estimate)
    return f"{head} {brackets(lo, hi)}"


_STUDY_MEASURES = {"linear": "linear probe", "knn@20": "kNN k=20", "mean": "mean classifier"}


def study_frame(numbers: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> pd.DataFrame:
    """The full-test-split study's accuracies as a table: one row per probe, each checkpoint and
    each paired difference as ``'estimate [lo, hi]'`` (``study.json``'s ``numbers``)."""
    rows = []
    for key, per in numbers.items():
        row: dict[str, Any] = {"probe (full test split)": _STUDY_MEASURES.get(key, key)}
        for name, v in per.items():
            value = v.get("accuracy", v.get("difference"))
            lo, hi = v["ci95"]
            row[name.replace(" - ", " − ")] = bracketed(float(value), float(lo), float(hi),
                                                        signed="difference" in v)
        rows.append(row)
    return pd.DataFrame(rows)


def _iv(iv: Interval | None) -> str:
    return "–" if iv is None else f"{one_decimal(iv.estimate)} ({one_decimal(iv.lo)} to {one_decimal(iv.hi)})"


def headline_frame(res: AnalysisResults) -> pd.DataFrame:
    """The panel's table: one row per checkpoint, best first; accuracies as 'estimate (lo to hi)'."""
    metrics = []
    for h in res.summary.headlines:
        metrics.extend(m for m in h.accuracies if m not in metrics)
    rows = []
    for h in res.summary.headlines:
        row: dict[str, Any] = {"checkpoint": h.name, "recipe": h.recipe.label() or "not recorded"}
        for m in metrics:
            row[f"{metric_words(m)}, % (95% interval)"] = _iv(h.accuracies.get(m))
        for m in RANK_NAMES:
            if m in h.rank_intervals:
                row[f"{metric_words(m)} (95% interval)"] = _iv(h.rank_intervals[m])
            elif m in h.ranks:
                row[metric_words(m)] = h.ranks[m]
        if h.dim:
            row["feature dims"] = h.dim
        if any(x.reference for x in res.summary.headlines):
            row["paper, linear %"] = (f"{h.reference.linear_accuracy:.1f} ({h.reference.dataset} "
                                      f"{h.reference.backbone}, Table 1)") if h.reference else "–"
        rows.append(row)
    return pd.DataFrame(rows)


def differences_table(res: AnalysisResults) -> pd.DataFrame:
    """One row per paired comparison and metric: difference (points for accuracies), interval, verdict."""
    rows = [{"comparison": f"{c.better} − {c.worse}",
             "measure": metric_words(c.metric) + ("" if c.metric in RANK_NAMES else ", points"),
             "difference": round(c.difference.estimate, 1),
             "95% interval": f"{one_decimal(c.difference.lo)} to {one_decimal(c.difference.hi)}",
             "verdict": "beyond noise" if c.beyond_noise else "within noise"}
            for c in res.summary.comparisons]
    return pd.DataFrame(rows)


def add_summary(report: HtmlReport, res: AnalysisResults, fig_settings: Mapping[str, Any],
                preface: Preface | None = None, colors: Mapping[str, str] | None = None) -> None:
    """The summary section: sentences, headline table, differences, accuracy bars with intervals.

    ``preface`` (optional) is shown first: what a fuller study found, before this run's numbers,
    which then read as a consistency check. ``colors``: one colour per checkpoint.
    """
    from umae_eval.report import figures as F

    s = res.summary
    report.add_heading("Summary")
    if s.claims:
        report.add_table("", pd.DataFrame([{"claim": c.claim, "paper": c.paper, "here (95% interval)": c.here,
                                            "verdict": c.verdict} for c in s.claims]),
                         caption="The paper's claims that this run can check, only where its setting matches "
                                 "(Table 1's row for the dataset, backbone and method; the MAE / U-MAE "
                                 "comparisons when one of each is analysed). Intervals: paired bootstrap over "
                                 "the test images only, not probe fit or pre-training seed.")
    if preface:
        report.add_heading("What the full study found", level=3)
        report.add_text(preface.text)
        if preface.seed_table is not None and len(preface.seed_table):
            report.add_table("", preface.seed_table, caption=preface.seed_caption)
        if preface.finetune_table is not None and len(preface.finetune_table):
            report.add_table("", preface.finetune_table, caption=preface.finetune_caption)
        if preface.table is not None and len(preface.table):
            report.add_table("", preface.table, caption=preface.table_caption)
        report.add_heading("On these test images: a consistency check", level=3)
        if preface.check:
            report.add_text(preface.check)
    report.add_sentences(s.sentences(), verdict=not preface)
    n_test = f"{s.n_test:,} test images"
    has_ranks = any(h.ranks for h in s.headlines)
    ranks_cap = (f" Effective rank (Roy & Vetterli, centred) and RankMe (raw) of the test features, with 95% "
                 f"intervals from {s.n_boot_ranks:,} resamples of the same test images (fewer than for the "
                 f"accuracies: each costs two eigen-decompositions per checkpoint), centred on the estimate "
                 f"because a resample repeats rows, which lowers a rank by itself." if s.n_boot_ranks else
                 " Effective rank (Roy & Vetterli) and RankMe of the test features." if has_ranks else "")
    has_accuracies = any(h.accuracies for h in s.headlines)
    cap = (f"Best first. {'Accuracies in % ' if has_accuracies else 'Measures '}on the {n_test}"
           + (f" with 95% bootstrap intervals over the test images ({s.n_boot:,} resamples)"
              if has_accuracies else "")
           + ": intervals say how much the numbers would move on another sample of test images, not how "
             "much they would move with another pre-training or probe seed." + ranks_cap)
    if s.table_only:
        cap += f" Not compared (a table row only): {', '.join(s.table_only)}."
    if s.reference_note:
        cap += " " + s.reference_note
    report.add_table("", headline_frame(res), caption=cap)
    if s.comparisons:
        diffs = differences_table(res)
        main = diffs[[c.metric == s.metric for c in s.comparisons]] if s.metric else diffs
        report.add_table(f"Differences in {metric_words(s.metric) if s.metric else 'accuracy'}", main, level=3,
                         caption="Paired bootstrap: both checkpoints are resampled on the same test images, "
                                 "so the interval is that of the difference itself; it covers test-image "
                                 "resampling only, not the probe fit or the pre-training seed. 'Within noise' = "
                                 "the 95% interval includes 0. Each interval is a marginal 95% one, not "
                                 "corrected for the number of comparisons. All measures: differences.csv and "
                                 "below.")
        rest = diffs.drop(main.index)
        if len(rest):
            with report.collapsed("Differences in the other measures", level=3):
                report.add_table("", rest)
    if s.headlines and has_accuracies:
        values = {h.name: {m: iv.estimate for m, iv in h.accuracies.items()} for h in s.headlines}
        bounds = {h.name: {m: (iv.lo, iv.hi) for m, iv in h.accuracies.items()} for h in s.headlines}
        line = f"{n_test} · error bars: 95% bootstrap intervals · pool={res.config.pool} · seed={res.config.seed}"
        report.add_figure("Accuracy with 95% intervals", F.accuracy_figure(
            values, intervals=bounds, title="Test accuracy of probes on frozen features", settings_line=line,
            chance=100.0 / len(res.class_names) if res.class_names else None, colors=colors),
            settings=fig_settings, level=3, name="accuracy")
