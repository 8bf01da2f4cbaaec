"""benchmarks/metrics_cost.py runs in its quick mode, writes every measure, and pairs each baseline."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_quick_run_table_and_json(tmp_path: Path) -> None:
    out = tmp_path / "cost.json"
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "metrics_cost.py"), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0].split()[:2] == ["measure", "seconds"]
    rec = json.loads(out.read_text())
    assert (rec["n"], rec["d"], rec["isolation"]) == (1000, 32, "in-process")
    names = [r["measure"] for r in rec["rows"]]
    assert names[:2] == ["spectrum_scalars", "svd_baseline"] and "fourier" in names and len(names) == 18
    for r in rec["rows"]:
        assert r["seconds"] > 0 and r["peak_extra_mb"] >= 0
        if r["baseline_of"]:
            assert r["baseline_of"] in names and r["time_ratio_to_metric"] > 0
