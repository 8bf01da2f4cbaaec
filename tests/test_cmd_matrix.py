"""The protocol matrix end to end: `umae compare` of the shipped demo encoders on the demo data.

Through the installed `umae` command (a subprocess, as a user runs it): every protocol of the
matrix (headline probes on the feature spec, best block, attentive, low-shot), the layer-wise
figure and CSVs, and a feature spec recorded beside every number in results.json.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

ENCODERS = Path(__file__).resolve().parents[1] / "umae_eval" / "demo" / "encoders"
MAE = ENCODERS / "mae-cifar10-vit96x6-p4-e20.pth"
UMAE = ENCODERS / "u-mae-cifar10-vit96x6-p4-e20.pth"


def _umae(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    exe = Path(sys.executable).with_name("umae")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "umae_eval.cli"]
    return subprocess.run([*cmd, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=900)


@pytest.mark.slow
def test_compare_demo_encoders_gives_the_protocol_matrix(tmp_path: Path) -> None:
    out = tmp_path / "matrix"
    done = _umae("compare", str(MAE), str(UMAE), "--data", "demo", "--layers", "1,-1", "--pool", "cls+avg",
                 "--final-norm", "off", "--methods", "mean,linear,knn,attentive", "--label-fraction", "0.1",
                 "--shots", "2", "--draws", "2", "--max-train", "300", "--max-test", "200", "--embed", "none",
                 "--max-views", "50", "--bootstrap", "200", "--device", "cpu", "--out", str(out), cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    res = json.loads((out / "results.json").read_text())
    settings, results = res["settings"], res["results"]
    assert (settings["layers"], settings["pool"], settings["final_norm"]) == ("1,-1", "cls+avg", "off")
    assert (settings["label_fraction"], settings["shots"], settings["draws"]) == ([0.1], [2], 2)
    names = list(results["checkpoints"])
    assert len(names) == 2
    for name, ck in results["checkpoints"].items():
        spec = ck["feature_spec"]
        assert spec["blocks"] == [1, 5] and spec["main_block"] == 5 and spec["pool"] == "cls+avg"
        assert spec["final_norm"] == "off"
        assert [b["block"] for b in ck["layers"]] == [1, 5]
        assert all(b["feature_spec"]["block"] == b["block"] for b in ck["layers"])
        assert ck["lowshot"]["feature_spec"]["main_block"] == 5
        assert "attentive_accuracy" in ck["accuracies"]
        att = next(p for p in ck["probes"] if p["method"] == "attentive")
        assert att["settings"]["block"] == 5 and att["settings"]["token_cache"] == {"train": "cached",
                                                                                  "test": "cached"}
    matrix = results["protocol_matrix"]
    protocols = [p["name"] for p in matrix["protocols"]]
    for p in ("linear_accuracy", "knn_accuracy@20", "mean_classifier_accuracy", "linear_accuracy@best_block",
              "attentive_accuracy", "linear_accuracy@10%", "knn_accuracy@10%", "linear_accuracy@2-shot",
              "knn_accuracy@2-shot"):
        assert p in protocols, p
    for cell in matrix["cells"]:
        assert cell["lo"] <= cell["accuracy"] <= cell["hi"]
        assert cell["spec"]["pool"] and cell["spec"]["final_norm"] == "off" and cell["block"] is not None
    # the matrix agrees with the numbers each probe reported
    for name, ck in results["checkpoints"].items():
        cell = next(c for c in matrix["cells"] if c["checkpoint"] == name and c["protocol"] == "attentive_accuracy")
        assert abs(cell["accuracy"] - ck["accuracies"]["attentive_accuracy"]) < 1e-9
        low = next(e for e in ck["lowshot"]["results"] if e["result_name"] == "linear_accuracy@10%")
        cell = next(c for c in matrix["cells"] if c["checkpoint"] == name and c["protocol"] == "linear_accuracy@10%")
        assert abs(cell["accuracy"] - low["mean"]) < 1e-6 and cell["draws"] == 2
    diffs = matrix["differences"]
    assert len(diffs) == len(protocols) and all(d["baseline"] == names[0] and d["name"] == names[1] for d in diffs)
    assert all(d["sentence"].count(" minus ") == 1 for d in diffs)
    csv = pd.read_csv(out / "protocol_matrix.csv")
    assert set(csv["protocol"]) == set(protocols) and len(csv) == 2 * len(protocols)
    layers = pd.read_csv(out / "layers.csv")
    assert set(layers["block"]) == {1, 5} and {"linear_accuracy", "effective_rank"} <= set(layers["metric"])
    assert set(results["layers"]["best_block"]) == set(names)
    assert (out / "figures" / "layers.png").is_file()
    html = (out / "report.html").read_text()
    assert "Protocol matrix" in html and "Accuracy and effective rank by block" in html


@pytest.mark.slow  # six subprocesses of about 10 s each
def test_bad_spec_options_exit_2_with_one_line(tmp_path: Path) -> None:
    for args, message in (
        (("--layers", "9"), "--layers: block 9 does not exist in a ViT of 6 blocks; use 0 to 5"),
        (("--layers", "a,b"), "--layers 'a,b': give last, all, or comma-separated block indices"),
        (("--pool", "max"), "--pool 'max': choose one of cls, avg, cls+avg"),
        (("--final-norm", "maybe"), "--final-norm 'maybe': choose one of on, off"),
        (("--label-fraction", "2"), "--label-fraction 2: a fraction of the train labels lies in (0, 1]"),
        (("--methods", "linear,ridge"), "--methods: unknown value 'ridge'"),
    ):
        done = _umae("probe", str(MAE), "--data", "demo", "--max-train", "20", "--max-test", "20", "--device",
                     "cpu", "--out", str(tmp_path / "o"), *args, cwd=tmp_path)
        assert done.returncode == 2, (args, done.stderr)
        assert message in done.stderr, (args, done.stderr)
        assert "Traceback" not in done.stderr and not (tmp_path / "o").exists()


def test_bad_layers_text_exits_2_before_loading(tmp_path: Path) -> None:
    """The one fast exit-code check of the spec options (the rest: the slow test above)."""
    done = _umae("probe", str(tmp_path / "missing.pth"), "--data", "demo", "--layers", "3,x", "--out",
                 str(tmp_path / "o"), cwd=tmp_path)
    assert done.returncode == 2, done.stderr
    assert "--layers '3,x': give last, all, or comma-separated block indices" in done.stderr
    assert "Traceback" not in done.stderr and not (tmp_path / "o").exists()
