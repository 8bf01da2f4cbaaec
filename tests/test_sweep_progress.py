"""The mask-ratio sweep's work, stated before it starts, and one progress bar over the whole sweep
whose time remaining comes from completed units (umae_eval.maskratio.work, progress.PlannedProgress);
SIGTERM during the sweep cleans up like Ctrl-C, through the installed command."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from rich.console import Console

from test_maskratio_sweep import _toy_dataset
from umae_eval.maskratio.sweep import SweepConfig, run_sweep
from umae_eval.maskratio.work import sweep_plan
from umae_eval.progress import PlannedProgress

ROOT = Path(__file__).resolve().parents[1]


def test_the_plan_names_every_stage_the_sweep_runs_with_its_unit_count() -> None:
    """Each progress stage run_sweep opens is in the plan with the same number of units, so the
    overall bar's total is the sweep's whole work (no stage runs untimed)."""
    x_train, y_train, x_test, y_test = _toy_dataset()
    cfg = SweepConfig(ratios=[0.0, 0.25, 0.5, 0.75], views=3, pairs=12, patch_size=2, n_boot=50,
                      label_images=9, graph_images=6, graph_views=2, graph_top=5)
    seen: dict[str, int] = {}
    advanced: dict[str, int] = {}

    @contextlib.contextmanager
    def record(description: str, total: int | None = None) -> Iterator:
        seen[description] = int(total or 0)
        advanced[description] = 0

        def advance(n: int = 1) -> None:
            advanced[description] += n

        yield advance

    run_sweep(x_test, y_test, x_train, y_train, cfg, n_classes=3, progress=record)
    plan = sweep_plan(space="pixel", ratios=4, pairs=12, views=3, num_patches=16, n_classes=3, label_images=9,
                      graph_nodes=12, n_boot=50, series=len(cfg.estimators))
    assert list(seen) == list(plan.stages)  # same stages, same order
    assert seen == {k: n for k, (n, _) in plan.stages.items()}
    assert advanced == seen  # every stage finishes its units
    assert plan.summary.startswith("work: 2 x 12 pairs (intra, inter) x 4 ratios x 3 views = 288 masked view pairs")
    assert "bootstrap 50 resamples x 5 curves" in plan.summary


def test_planned_progress_advances_by_cost_and_corrects_a_changed_count() -> None:
    out = Console(file=io.StringIO(), width=120)
    stages = {"a": (10, 2.0), "b": (4, 5.0)}
    with PlannedProgress("run", stages, out=out) as p:
        task = p.bar.tasks[0]
        assert task.total == 10 * 2.0 + 4 * 5.0
        with p("a", total=10) as advance:
            advance(3)
            assert task.completed == 6.0
            advance(7)
        with p("b", total=2) as advance:  # fewer units than planned: the total follows
            assert task.total == 10 * 2.0 + 2 * 5.0
            advance(2)
        with p("not planned", total=5) as advance:  # its own bar only
            advance(5)
        assert task.completed == task.total == 30.0
        assert len(p.bar.tasks) == 1  # stage bars are removed when their stage ends


@pytest.mark.slow  # a sweep on the embedded demo set through the installed command (~20 s)
def test_sweep_states_its_work_then_sigterm_cleans_up(tmp_path: Path) -> None:
    exe = shutil.which("umae")
    assert exe
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    err_path = tmp_path / "stderr.txt"
    out = tmp_path / "sweep"
    with err_path.open("w") as err_file:
        proc = subprocess.Popen([exe, "mask-ratio-sweep", "--data", "demo", "--pairs", "1000", "--out", str(out)],
                                cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=err_file,
                                preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
        try:
            deadline = time.monotonic() + 300
            while "work: " not in err_path.read_text():
                assert proc.poll() is None, err_path.read_text()
                assert time.monotonic() < deadline, "no work line within 300 s"
                time.sleep(0.1)
            time.sleep(1.0)  # into the distance stage
            proc.send_signal(signal.SIGTERM)
            code = proc.wait(timeout=120)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    err = err_path.read_text()
    work = [ln for ln in err.splitlines() if ln.startswith("work: ")]
    assert work and "2 x 1,000 pairs (intra, inter) x 20 ratios x 8 views" in work[0], err
    assert code == 130, err
    lines = [ln for ln in err.splitlines() if "interrupted" in ln]
    assert len(lines) == 1 and lines[0].startswith("interrupted (SIGTERM)"), err
    assert "Traceback" not in err
    assert not out.exists() and not [p for p in tmp_path.iterdir() if ".partial-" in p.name]
