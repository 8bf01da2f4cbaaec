"""benchmarks/probe_speed.py runs, compares like with like, and records what it measured."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("probe_speed", ROOT / "benchmarks" / "probe_speed.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _check_record(out: dict, md: str) -> None:
    lp = out["linear_protocol"]
    for side in ("torch", "sklearn"):
        assert 0.0 <= lp[side]["accuracy"] <= 100.0 and lp[side]["iterations"] > 0
    # both sides searched the same grid and were scored on the same test set
    assert lp["torch"]["settings"]["weight_decays"] == lp["sklearn"]["settings"]["weight_decays"]
    s = out["summary"]
    assert s["linear_protocol_speedup"] > 0
    assert s["goal_met"] == (s["linear_protocol_speedup"] >= 10 and abs(s["linear_protocol_accuracy_gap"]) <= 0.5)
    assert out["knn"]["faiss"]["accuracy_k20"] == pytest.approx(out["knn"]["torch"]["accuracy_k20"], abs=0.5)
    assert ("met" if s["goal_met"] else "NOT met") in md and out["command"] in md


def test_quick_synthetic_run_writes_json_and_markdown(bench, tmp_path: Path) -> None:
    js, md = tmp_path / "p.json", tmp_path / "p.md"
    assert bench.main(["--quick", "--json", str(js), "--md", str(md)]) == 0
    out = json.loads(js.read_text())
    assert out["source"].startswith("synthetic")
    _check_record(out, md.read_text())


def test_real_features_through_a_checkpoint(bench, tmp_path: Path) -> None:
    from ckpt_factory import make_official_encoder

    ckpt = tmp_path / "enc.pth"
    make_official_encoder(ckpt, depth=1)
    rng = np.random.default_rng(0)
    y_train, y_test = np.arange(300) % 3, np.arange(90) % 3
    # three colour classes, so the probes have something to find
    x_train = np.clip(rng.normal(60, 30, (300, 32, 32, 3)) + 120 * np.eye(3)[y_train][:, None, None, :], 0, 255)
    x_test = np.clip(rng.normal(60, 30, (90, 32, 32, 3)) + 120 * np.eye(3)[y_test][:, None, None, :], 0, 255)
    data = tmp_path / "d.npz"
    np.savez(data, x_train=x_train.astype(np.uint8), y_train=y_train, x_test=x_test.astype(np.uint8), y_test=y_test)
    js, md = tmp_path / "r.json", tmp_path / "r.md"
    assert bench.main(["--checkpoint", str(ckpt), "--data", str(data), "--json", str(js), "--md", str(md)]) == 0
    out = json.loads(js.read_text())
    assert "enc.pth" in out["source"] and "official-encoder" in out["source"]
    assert out["shape"]["train"] == [300, 192] and out["shape"]["test"] == [90, 192]
    _check_record(out, md.read_text())
