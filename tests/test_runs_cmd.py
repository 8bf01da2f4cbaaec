"""`umae runs`: the status of finished, running, stopped and empty runs; the page; bad paths."""

from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from trainer.runinfo import find_runs, read_run, run_status
from trainer.runlog import append_metrics, write_config
from umae_eval.cli import main
from umae_eval.errors import UmaeError

ROOT = Path(__file__).resolve().parents[1]
STUDY_RUNS = ROOT / "reports" / "cifar10-mae-vs-umae-cpu" / "runs"


def _run(folder: Path, epochs_planned: int, epochs_done: int, *, age_s: float, lam: float = 0.0) -> Path:
    folder.mkdir(parents=True)
    write_config(folder, {"preset": {"name": "tiny-test", "epochs": epochs_planned, "method": "mae"},
                          "method": "mae", "lam": lam})
    for e in range(1, epochs_done + 1):
        append_metrics(folder, {"epoch": e, "step": 4 * e, "loss": 1.0 / e, "effective_rank": 3.0 + e,
                                "train_s": 2.0, **({"linear_accuracy": 20.0 + e} if e % 2 == 0 else {})})
    old = time.time() - age_s
    for p in folder.iterdir():
        os.utime(p, (old, old))
    return folder


@pytest.fixture()
def runs_root(tmp_path: Path) -> Path:
    root = tmp_path / "runs"
    _run(root / "a-finished", 4, 4, age_s=7200)
    _run(root / "b-killed", 5, 2, age_s=7200, lam=0.01)
    _run(root / "c-running", 5, 3, age_s=5)
    (root / "nested" / "d-empty").mkdir(parents=True)
    write_config(root / "nested" / "d-empty", {"preset": {"epochs": 3}, "method": "mae", "lam": 0.0})
    (root / "not-a-run").mkdir()
    return root


def test_status_rule() -> None:
    recs = [{"epoch": 1, "train_s": 400.0}]
    now = 10_000.0
    assert run_status([], 5, now, now) == "empty"
    assert run_status([{"epoch": 5}], 5, 0.0, now) == "finished"
    assert run_status(recs, 5, now - 599, now) == "running"
    assert run_status(recs, 5, now - 1199, now) == "running"  # 3 x the slowest epoch (400 s) > 10 min
    assert run_status(recs, 5, now - 1201, now) == "stopped"


def test_find_runs_statuses_and_figures(runs_root: Path) -> None:
    found = {r.name: r for r in find_runs([runs_root])}
    assert set(found) == {"a-finished", "b-killed", "c-running", "d-empty"}
    assert {n: r.status for n, r in found.items()} == {"a-finished": "finished", "b-killed": "stopped",
                                                       "c-running": "running", "d-empty": "empty"}
    assert found["b-killed"].epochs_done == 2 and found["b-killed"].epochs_planned == 5
    assert found["c-running"].latest("linear_accuracy") == 22.0  # epoch 3 has no probe: epoch 2's
    assert found["c-running"].curve("linear_accuracy") == {"epoch": [2], "linear_accuracy": [22.0]}


def test_a_resume_that_extends_the_schedule_counts(tmp_path: Path) -> None:
    run = _run(tmp_path / "r", 4, 4, age_s=7200)
    config = json.loads((run / "config.json").read_text())
    config["resumes"] = [{"changed": {"epochs": [4, 8]}}]
    (run / "config.json").write_text(json.dumps(config))
    info = read_run(run, now=time.time() + 7200)
    assert info.epochs_planned == 8 and info.status == "stopped"


def test_cli_table_and_page(runs_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "page"
    assert main(["runs", str(runs_root), "--reference", str(STUDY_RUNS), "--out", str(out)]) == 0
    text = capsys.readouterr().out
    for name, status in (("a-finished", "finished"), ("b-killed", "stopped"), ("c-running", "running"),
                         ("d-empty", "empty"), ("ref: umae", "finished")):
        line = next(line for line in text.splitlines() if name in line)
        assert status in line, line
    assert "U-MAE 0.01" in text
    rows = list(csv.DictReader((out / "runs.csv").open()))
    assert len(rows) == 4 + 8  # four runs here, the eight committed study runs as references
    ref = next(r for r in rows if r["run"] == "ref: mae")
    assert (ref["epochs"], ref["erank"], ref["linear"]) == ("20/20", "41.2", "44.5")  # metrics.jsonl, epoch 20
    page = (out / "report.html").read_text()
    assert "Effective rank along training" in page and "ref: umae" in page
    assert json.loads((out / "results.json").read_text())["results"]["runs"][0]["status"] == "finished"
    assert sorted(p.name for p in (out / "figures").glob("*.pdf"))  # the curves as paper figures too


def _umae(*args: str) -> subprocess.CompletedProcess[str]:
    umae = shutil.which("umae")
    cmd = [umae, *args] if umae else [sys.executable, "-m", "umae_eval.cli", *args]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=120)


@pytest.mark.parametrize("make, message", [
    (lambda p: p / "missing", "no such folder; pass a run folder or a folder holding runs"),
    (lambda p: (p / "f.txt").write_text("x") and p / "f.txt", "not a folder; pass a run folder"),
    (lambda p: (p / "empty").mkdir() or p / "empty", "no training run inside (looked 3 levels down"),
])
def test_bad_paths_exit_2_with_one_line(tmp_path: Path, make, message: str) -> None:
    path = make(tmp_path)
    r = _umae("runs", str(path))
    assert r.returncode == 2, r.stderr
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0] and str(path.name) in lines[0], r.stderr
    assert "Traceback" not in r.stderr


def test_read_run_refuses_a_plain_folder(tmp_path: Path) -> None:
    with pytest.raises(UmaeError, match="not a training run folder"):
        read_run(tmp_path)
