"""What an analysis command prints: one line per loaded checkpoint, the verdict, tables that fit 80
columns (numbers with their 95% intervals), the files."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
from rich.table import Table

from umae_eval.progress import say, stdout


def announce(subjects: Sequence[Any]) -> None:
    """Say what each loaded checkpoint is, one line each (layout, arch, params, sha256), and warn
    where a file's metadata contradicts its weights."""
    for s in subjects:
        say(f"{s.name}: {s.info.summary()}")
        if s.encoder is not None:  # features read from files have no weights to contradict
            warn_metadata_conflicts(s.encoder)


def warn_metadata_conflicts(loaded: Any) -> None:
    """One warning line when the file's metadata contradicts its weights (the weights are used)."""
    from rich.markup import escape

    from umae_eval.checkpoint_checks import metadata_conflicts
    from umae_eval.progress import console

    conflicts = metadata_conflicts(loaded.info.layout, loaded.info.metadata or {}, loaded.info.arch)
    if conflicts:
        console.print(f"[yellow]warning:[/] {escape(str(loaded.info.path))}: its metadata contradicts its "
                      f"weights ({escape('; '.join(conflicts))}); the model is built from the weights: check "
                      "the file", highlight=False, soft_wrap=True)


def _short_header(column: str) -> str:
    """Terminal column headers: ``knn_accuracy@20`` -> ``kNN@20``, ``linear_accuracy`` -> ``linear``."""
    if column.startswith("knn_accuracy@"):
        return "kNN@" + column.split("@", 1)[1]
    return {"mean_classifier_accuracy": "mean clf", "linear_accuracy": "linear", "attentive_accuracy": "attentive",
            "effective_rank": "eff. rank", "rankme": "RankMe", "alignment": "align", "uniformity": "unif",
            "linear_accuracy_lo": "lo", "linear_accuracy_hi": "hi"}.get(column, column)


def print_outputs(title: str, df: pd.DataFrame, written: Mapping[str, Path], float_format: str = "{:.2f}",
                  sentences: Sequence[str] = ()) -> None:
    """The summary sentences, a rich table of the main numbers and the paths written, on stdout."""
    for line in sentences:
        stdout.print(line, highlight=False, soft_wrap=True)
    table = Table(title=title)
    for col in df.columns:
        numeric = pd.api.types.is_numeric_dtype(df[col])
        table.add_column(_short_header(str(col)), justify="right" if numeric else "left",
                         no_wrap=col == "checkpoint", overflow="fold")
    for _, row in df.iterrows():
        table.add_row(*[float_format.format(v) if isinstance(v, float) else str(v) for v in row.tolist()])
    stdout.print(table)
    for key, path in written.items():
        stdout.print(f"{key}: {path}", highlight=False, soft_wrap=True)


def _bracketed(iv: Any) -> str:
    """``'40.0 [37.1, 43.0]'``: 17 characters for any percentage, so three fit in 80 columns."""
    from umae_eval.pipeline.summary import one_decimal

    return f"{one_decimal(iv.estimate)} [{one_decimal(iv.lo)}, {one_decimal(iv.hi)}]"


def summary_tables(summary: Any) -> list[Table]:
    """The verdict's numbers as terminal tables that fit 80 columns: accuracies (the headline
    probes: linear, one kNN, mean classifier) and ranks, each 'estimate [95% interval]', best
    first. Number columns never wrap; a long checkpoint name folds inside its own column."""
    from rich import box

    out = []
    rows = summary.headlines
    acc = [m for m in ("linear_accuracy", *[m for h in rows for m in h.accuracies if m.startswith("knn")],
                       "mean_classifier_accuracy") if any(m in h.accuracies for h in rows)]
    acc = list(dict.fromkeys(acc))[:3]
    ranks = [m for m in ("effective_rank", "rankme") if any(m in h.ranks for h in rows)]
    for title, names, values in (
            (f"Accuracy, % [95% interval], {summary.n_test:,} test images", acc, lambda h, m: h.accuracies.get(m)),
            ("Rank [95% interval]", ranks, lambda h, m: h.rank_intervals.get(m))):
        if not names:
            continue
        table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1))
        table.add_column("checkpoint", overflow="fold", min_width=8)
        for m in names:
            table.add_column(_short_header(m), justify="right", no_wrap=True)
        for h in rows:
            cells = []
            for m in names:
                iv = values(h, m)
                if iv is not None:
                    cells.append(_bracketed(iv))
                elif m in h.ranks:
                    cells.append(f"{h.ranks[m]:.1f}")
                else:
                    cells.append("–")
            table.add_row(h.name, *cells)
        out.append(table)
    return out


def print_analysis(res: Any, written: Mapping[str, Path]) -> None:
    """The verdict sentences, the headline numbers with intervals (80 columns), the files written.

    All measures (every probe, collapse measures) are in the CSV files and the report."""
    for line in res.summary.sentences():
        stdout.print(line, highlight=False, soft_wrap=True)
    tables = summary_tables(res.summary)
    if not tables:  # nothing with an interval (e.g. probes off and no ranks): the plain table
        _print_plain(res)
    for table in tables:
        stdout.print(table)
    from umae_eval.report.attention import attention_lines
    from umae_eval.report.finetuned import finetuned_table

    tuned = finetuned_table(res)  # a table of its own: never a row among the frozen probes
    if tuned is not None:
        stdout.print(tuned)
        for c in res.checkpoints:
            if c.finetuned is not None:
                stdout.print(f"{c.name}: {c.finetuned.sentence}", highlight=False, soft_wrap=True, markup=False)
    for line in attention_lines(res):
        stdout.print(line, highlight=False, soft_wrap=True, markup=False)
    for key, path in written.items():
        stdout.print(f"{key}: {path}", highlight=False, soft_wrap=True)


def _print_plain(res: Any) -> None:
    from umae_eval.pipeline import frames as T

    coll = T.collapse_frame(res)
    if coll.empty:
        return
    keep = ["checkpoint", "effective_rank", "rankme", "alignment", "uniformity"]
    df = coll[[c for c in keep if c in coll.columns]]
    table = Table(title="Collapse measures")
    for col in df.columns:
        table.add_column(_short_header(str(col)), justify="left" if col == "checkpoint" else "right",
                         overflow="fold" if col == "checkpoint" else "ellipsis", no_wrap=col != "checkpoint")
    for _, row in df.iterrows():
        table.add_row(*[f"{v:.4g}" if isinstance(v, float) else str(v) for v in row.tolist()])
    stdout.print(table)


def sweep_table(sweet: pd.DataFrame, ratios: list[float], space: str) -> Table:
    """The mask-ratio sweep's sweet spots for an 80-column terminal: argmin with its 95% interval
    ('end': at an end of the range, no interior minimum; 'n.i.': not identified, its interval spans
    (nearly) the whole range), the checks as yes/no. ``sweet`` is ``export.sweet_spot_table``."""
    from umae_eval.report.sweep import _identified, is_boundary

    table = Table(title=f"mask-ratio sweep ({space} space): argmin of intra/inter",
                  caption="end: argmin at an end of the range; n.i.: not identified (interval spans the range); "
                          "falls: intra/inter d(first) > d(last); dip: ratio falls then rises; paper: the paper's "
                          "shape with an identified minimum in [0.6, 0.8]")
    for col in ("estimator", "argmin", "95% CI", "falls", "dip", "paper"):
        table.add_column(col, no_wrap=True)
    yes = {True: "yes", False: "no"}
    for _, row in sweet.iterrows():
        ratio = float(row["sweet_spot"])
        mark = " end" if is_boundary(ratio, ratios) else "" if _identified(row, ratios) else " n.i."
        table.add_row(str(row["estimator"]), f"{ratio:.3g}{mark}", f"{row['sweet_lo']:.3g}-{row['sweet_hi']:.3g}",
                      f"{yes[bool(row['intra_falls'])]}/{yes[bool(row['inter_falls'])]}",
                      yes[bool(row["relative_falls_then_rises"])],
                      yes[bool(row["reproduces_paper_shape"]) and _identified(row, ratios)])
    return table
