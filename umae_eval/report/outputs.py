"""Everything a command writes into its output folder: CSVs, ``figures/``, ``report.html`` and
``results.json``, in the order that lets the page link every file.

Apart from :mod:`umae_eval.report.writer` (the page itself) because it writes files and knows
the folder layout, which the page does not; the writer re-exports :func:`write_outputs`.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from umae_eval.provenance import atomic_write_json, atomic_write_text, results_envelope

if TYPE_CHECKING:
    from umae_eval.report.writer import HtmlReport

__all__ = ["write_outputs"]


def write_outputs(
    out_dir: str | Path,
    command: str,
    settings: Mapping[str, Any],
    results: Mapping[str, Any],
    tables: Mapping[str, pd.DataFrame] | None = None,
    report: HtmlReport | None = None,
    *,
    figures: bool = True,
) -> dict[str, Path]:
    """Write one CSV per table, ``figures/`` (PDF, SVG, PNG of each figure), ``report.html``
    (linking all of them) and ``results.json`` (settings, command line, revision, versions, results).

    Returns the paths written, keyed by ``'results'``, ``'report'``, ``'figures'`` and each table name.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for name, df in (tables or {}).items():
        written[name] = atomic_write_text(out / f"{name}.csv", df.to_csv(index=False))
    figure_files: list[Path] = []
    if report is not None and figures and report.static_figures:
        from umae_eval.report.static import export_figures

        figure_files = export_figures(report.static_figures, out / "figures", title=report.title)
        written["figures"] = out / "figures"
    if report is not None:
        report.files = (["results.json"] + [f"{n}.csv" for n in (tables or {})]
                        + [str(p.relative_to(out)) for p in figure_files])
        written["report"] = report.write(out / "report.html")
    written["results"] = atomic_write_json(
        out / "results.json", results_envelope(command, dict(settings), dict(results))
    )
    return written
