"""What an analysis command prints: one line per loaded checkpoint, the verdict, a table, the files."""

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
            "effective_rank": "eff. rank", "alignment": "align", "uniformity": "unif",
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


def print_analysis(res: Any, written: Mapping[str, Path]) -> None:
    """The verdict sentences, then the ranking (compare), accuracies (probe) or collapse measures."""
    from umae_eval.pipeline import frames as T

    ranking = T.ranking_frame(res)
    if not ranking.empty and len(res.checkpoints) > 1:
        show = [c for c in ranking.columns if c not in ("sha256", "layout", "alpha_req", "feature_std")]
        title, df, fmt = f"Ranking (by {res.ranked_by})", ranking[show], "{:.2f}"
    elif not T.accuracy_frame(res).empty:
        title, df, fmt = "Accuracy (%)", T.accuracy_frame(res).drop(columns=["sha256"]), "{:.2f}"
    else:
        coll = T.collapse_frame(res)
        keep = ["checkpoint", "layout", "effective_rank", "rankme", "alpha_req", "feature_std", "alignment",
                "uniformity"]
        title, df, fmt = "Collapse measures", coll[[c for c in keep if c in coll.columns]], "{:.4g}"
    print_outputs(title, df, written, float_format=fmt, sentences=res.summary.sentences())
