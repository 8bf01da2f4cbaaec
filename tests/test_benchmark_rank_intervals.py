"""benchmarks/rank_intervals.py runs, times like with like, and both sides agree on the numbers."""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_table_and_json(tmp_path: Path) -> None:
    out = tmp_path / "rank.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "rank_intervals.py"), "--sizes", "300,600",
                           "--dims", "16", "--repeats", "1", "--out", str(out)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "speedup" in proc.stdout.splitlines()[0]
    rec = json.loads(out.read_text())
    assert [(r["n"], r["d"]) for r in rec["rows"]] == [(300, 16), (600, 16)]
    for r in rec["rows"]:
        assert r["max_rel_diff"] < 1e-9  # the weighted-Gram route and the copied rows agree
        assert r["baseline_s"] > 0 and r["gram_s"] > 0 and r["resamples"] == 200


def test_measure_uses_the_same_resample_on_both_sides() -> None:
    spec = importlib.util.spec_from_file_location("rank_intervals", ROOT / "benchmarks" / "rank_intervals.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    row = module.measure(400, 8, repeats=1, seed=3)
    assert row["max_rel_diff"] < 1e-9 and row["intervals_s_per_checkpoint"] == row["resamples"] * row["gram_s"]
