"""`umae runs`: one table of the training runs under some folders, their curves overlaid in HTML."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from umae_eval.progress import stdout


def runs(
    paths: Annotated[list[Path], typer.Argument(
        metavar="PATH...", show_default=False,
        help="Run folders (config.json / metrics.jsonl inside) or folders holding runs (searched 3 levels down).")],
    reference: Annotated[Optional[list[Path]], typer.Option(
        "--reference", metavar="PATH", help="Runs to overlay as references, marked 'ref:' (repeatable), e.g. "
        "the CPU study's committed runs: reports/cifar10-mae-vs-umae-cpu/runs.")] = None,
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Also write report.html (curves overlaid), runs.csv and results.json into this folder.")] = None,
) -> None:
    """List training runs: method, lambda, epochs done, last loss, effective rank, online accuracies, status.

    Reads only config.json and metrics.jsonl, so it is safe on runs that are still training.
    Status: finished (all planned epochs), running (a file changed within max(10 min, 3 x the
    slowest epoch)), stopped (neither: continue with --resume auto), empty (no epoch yet).

    Examples:

      umae runs runs/

      umae runs runs/seed1 runs/seed2 --reference reports/cifar10-mae-vs-umae-cpu/runs --out reports/runs-page
    """
    from trainer.runinfo import CURVE_KEYS, find_runs
    from umae_eval.provenance import command_line
    from umae_eval.report import write_outputs
    from umae_eval.report.console import print_outputs
    from umae_eval.report.runs import runs_report, runs_table
    from umae_eval.staging import begin_output

    stage = begin_output(out) if out is not None else None  # an unwritable --out is refused before reading
    found = find_runs(paths) + (find_runs(reference, reference=True) if reference else [])
    rows = [r.to_dict() for r in found]
    print_outputs(f"{len(found)} training runs", runs_table(rows), {})
    if stage is None:
        return
    curves = {key: {r.display_name: c for r in found if (c := r.curve(key)) is not None} for key in CURVE_KEYS}
    settings = {"paths": [str(p) for p in paths], "reference": [str(p) for p in reference or []],
                "command_line": command_line()}
    rep, tables, results = runs_report(rows, curves, settings)
    written = stage.commit(write_outputs(stage.path, "runs", settings, results, tables, rep))
    stdout.print(str(written["report"]), highlight=False, soft_wrap=True)
