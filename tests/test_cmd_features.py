"""`umae probe / collapse-report / compare --features` end to end on planted features.

The numbers are checked against implementations written here (numpy, scikit-learn): the mean
classifier and the weighted kNN exactly, the linear probe against scikit-learn's logistic
regression within a few points; every format gives the same numbers, float16 the same as the
float32 copy of its values; results.json records where the features came from. A run stopped by
SIGINT through the installed ``umae`` leaves neither ``--out`` nor a hidden stage.
"""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from feature_files import CLASS_NAMES, WRITERS, planted, write_npy_folder, write_npz, write_safetensors
from umae_eval.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _results(out: Path) -> dict:
    return json.loads((out / "results.json").read_text())


def _mean_classifier(a: dict) -> float:
    """Nearest normalised train class mean by cosine (Arora et al.), in float64."""
    x, y = a["train_features"].astype(np.float64), a["train_labels"]
    means = np.stack([x[y == c].mean(axis=0) for c in range(int(y.max()) + 1)])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    t = a["test_features"].astype(np.float64)
    t /= np.linalg.norm(t, axis=1, keepdims=True)
    return 100.0 * float(np.mean(np.argmax(t @ means.T, axis=1) == a["test_labels"]))


def _knn(a: dict, k: int, temperature: float = 0.07) -> float:
    """Weighted kNN vote exp(cos / T) over scikit-learn's exact cosine neighbours."""
    from sklearn.neighbors import NearestNeighbors

    nn = NearestNeighbors(n_neighbors=k, metric="cosine", algorithm="brute").fit(a["train_features"].astype(np.float64))
    dist, idx = nn.kneighbors(a["test_features"].astype(np.float64))
    w = np.exp((1.0 - dist) / temperature)
    votes = np.zeros((len(idx), int(a["train_labels"].max()) + 1))
    np.add.at(votes, (np.arange(len(idx))[:, None], a["train_labels"][idx]), w)
    return 100.0 * float(np.mean(votes.argmax(axis=1) == a["test_labels"]))


def _effective_rank(x: np.ndarray) -> float:
    """Roy & Vetterli on the centred features."""
    s = np.linalg.svd(x - x.mean(axis=0), compute_uv=False)
    p = s / s.sum()
    p = p[p > 0]
    return float(np.exp(-(p * np.log(p)).sum()))


@pytest.fixture(scope="module")
def planted_npz(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    a = planted(seed=11, n_train=400, n_test=200, spread=0.6)
    return write_npz(tmp_path_factory.mktemp("f") / "planted.npz", a, CLASS_NAMES), a


def test_probe_on_float16_npz_matches_independent_probes(planted_npz, tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    path, a = planted_npz
    out = tmp_path / "out"
    assert main(["probe", "--features", str(path), "--k", "10,20", "--bootstrap", "200", "--out", str(out)]) == 0
    res = _results(out)
    acc = res["results"]["checkpoints"]["planted"]["accuracies"]
    assert acc["mean_classifier_accuracy"] == pytest.approx(_mean_classifier(a), abs=1e-9)
    assert acc["knn_accuracy@10"] == pytest.approx(_knn(a, 10), abs=1e-9)
    assert acc["knn_accuracy@20"] == pytest.approx(_knn(a, 20), abs=1e-9)
    # the 'fast' objective is scikit-learn's with C = 1 / (weight decay * n) on standardised features:
    # refit at the weight decay umae chose, the two optima classify the test rows alike
    (linear,) = [p for p in res["results"]["checkpoints"]["planted"]["probes"] if p["method"] == "linear"]
    wd = linear["extras"]["chosen_weight_decay"]
    xtr, xte = a["train_features"].astype(np.float64), a["test_features"].astype(np.float64)
    mu, sd = xtr.mean(axis=0), xtr.std(axis=0)
    lr = LogisticRegression(C=1.0 / (wd * len(xtr)), tol=1e-8, max_iter=5000).fit((xtr - mu) / sd, a["train_labels"])
    sk = 100.0 * lr.score((xte - mu) / sd, a["test_labels"])
    assert 40.0 < sk < 95.0  # the planted classes are neither trivial nor hopeless
    assert acc["linear_accuracy"] == pytest.approx(sk, abs=1.0)  # at most 2 of 200 test rows on the boundary
    # provenance: where the features came from
    data = res["settings"]["data"]
    src = data["features"][0]
    assert data["source"] == "features" and data["class_names"] == CLASS_NAMES and data["n_test"] == 200
    assert src["format"] == "npz" and src["path"] == str(path) and src["dtype"] == "float16"
    assert src["files"] == [{"path": str(path), "bytes": path.stat().st_size,
                             "sha256": hashlib.sha256(path.read_bytes()).hexdigest()}]
    assert src["shapes"]["train_features"] == [400, 16] and src["memory_mapped"] is True
    assert res["settings"]["pool"] == "as saved (--features)" and res["settings"]["batch_size"] is None
    ck = res["settings"]["checkpoints"][0]
    assert ck["layout"] == "features" and ck["sha256"] == src["files"][0]["sha256"]
    assert res["results"]["checkpoints"]["planted"]["feature_spec"]["source"] == "features file"
    assert "planted" in (out / "report.html").read_text()


def test_every_format_gives_the_same_numbers(tmp_path: Path) -> None:
    """float16 in five formats, and the float32 copy of the same values: identical accuracies and ranks."""
    a = planted(seed=12, n_train=200, n_test=100, spread=0.7)
    paths = {fmt: w(tmp_path / fmt, a, CLASS_NAMES) for fmt, w in WRITERS.items() for _ in [(tmp_path / fmt).mkdir()]}
    a32 = {k: v.astype(np.float32) if "features" in k else v for k, v in a.items()}
    paths["float32-npy"] = write_npy_folder(tmp_path / "f32", a32, CLASS_NAMES)
    seen = {}
    for fmt, p in paths.items():
        out = tmp_path / f"out-{fmt}"
        assert main(["probe", "--features", str(p), "--methods", "mean,knn", "--k", "10", "--bootstrap", "100",
                     "--out", str(out)]) == 0
        res = _results(out)
        (entry,) = res["results"]["checkpoints"].values()
        seen[fmt] = entry["accuracies"]
        assert res["settings"]["data"]["features"][0]["format"] == fmt.replace("-compressed", "").replace(
            "float32-npy", "npy-folder")
    first = seen["npz"]
    assert first["knn_accuracy@10"] == pytest.approx(_knn(a, 10), abs=1e-9)
    assert all(v == first for v in seen.values()), seen


@pytest.mark.slow  # two t-SNE maps and the full report: ~35 s on a busy 2-core machine
def test_compare_on_features(tmp_path: Path) -> None:
    """Two 'encoders' of the same images (float16 .npz, float32 .safetensors): paired intervals, ranks
    against the closed form, maps, the representation metrics without the encoder-only ones."""
    a = planted(seed=13, n_train=300, n_test=160, spread=0.8)
    rng = np.random.default_rng(0)
    b = {k: (v.astype(np.float32) * 0.5 + rng.standard_normal(v.shape).astype(np.float32) * 0.4) if "features" in k
         else v for k, v in a.items()}
    pa, pb = write_npz(tmp_path / "enc_a.npz", a), write_safetensors(tmp_path / "enc_b.safetensors", b, CLASS_NAMES)
    out = tmp_path / "cmp"
    assert main(["compare", "--features", str(pa), "--features", str(pb), "--label", "A", "--label", "B",
                 "--k", "10", "--per-class", "20", "--bootstrap", "200", "--out", str(out)]) == 0
    res = _results(out)
    cks = res["results"]["checkpoints"]
    assert list(cks) == ["A", "B"]
    assert cks["A"]["effective_rank"] == pytest.approx(_effective_rank(a["test_features"].astype(np.float64)), rel=1e-5)
    assert cks["B"]["effective_rank"] == pytest.approx(_effective_rank(b["test_features"].astype(np.float64)), rel=1e-5)
    assert cks["B"]["accuracies"]["knn_accuracy@10"] == pytest.approx(_knn(b, 10), abs=1e-9)
    assert res["settings"]["data"]["class_names"] == CLASS_NAMES  # from B's file, A has none
    assert [s["format"] for s in res["settings"]["data"]["features"]] == ["npz", "safetensors"]
    assert cks["A"]["maps"] and cks["A"]["maps"][0]["method"] == "tsne"
    assert "masked_views" not in cks["A"]  # needs an encoder: skipped, and said so
    rep = res["results"]["representation_metrics"]
    assert "participation_ratio" in rep["intervals"]["A"] and "lidar_masked" not in rep["intervals"]["A"]
    assert "A vs B" in rep["pairs"]
    assert any("--features" in n for n in res["results"]["summary"]["sentences"])
    assert res["results"]["summary"]["comparisons"]  # paired differences over the same test images


def test_collapse_report_on_a_test_subset(tmp_path: Path) -> None:
    a = planted(seed=16, n_train=100, n_test=160)
    pa = write_npz(tmp_path / "enc_a.npz", a)
    out2 = tmp_path / "coll"
    assert main(["collapse-report", "--features", str(pa), "--embed", "none", "--bootstrap", "100",
                 "--max-test", "100", "--out", str(out2)]) == 0
    res2 = _results(out2)
    assert res2["settings"]["data"]["n_test"] == 100 and res2["settings"]["data"]["n_test_available"] == 160
    (c,) = res2["results"]["checkpoints"].values()
    assert "accuracies" not in c and c["n_features"] == 100
    # the masked views were not measured: no empty alignment / uniformity figure stands in for them
    assert (out2 / "figures" / "ranks.svg").exists() and not (out2 / "figures" / "alignment-uniformity.svg").exists()


def test_max_train_per_class_subsets_features(tmp_path: Path) -> None:
    a = planted(seed=14, n_train=200, n_test=60)
    p = write_npz(tmp_path / "a.npz", a)
    out = tmp_path / "out"
    assert main(["probe", "--features", str(p), "--methods", "mean", "--max-train-per-class", "10",
                 "--bootstrap", "100", "--out", str(out)]) == 0
    data = _results(out)["settings"]["data"]
    assert data["n_train"] == 40 and data["n_train_available"] == 200


def test_lowshot_and_protocol_matrix_on_features(tmp_path: Path) -> None:
    a = planted(seed=17, n_train=120, n_test=60)
    p = write_npz(tmp_path / "a.npz", a)
    out = tmp_path / "out"
    assert main(["probe", "--features", str(p), "--methods", "mean,knn", "--k", "10", "--shots", "5", "--draws", "2",
                 "--bootstrap", "100", "--out", str(out)]) == 0
    res = _results(out)
    words = {q["name"]: q["words"] for q in res["results"]["protocol_matrix"]["protocols"]}
    assert words["knn_accuracy@10"] == "kNN accuracy (k=10), features as saved"
    assert "knn_accuracy@5-shot" in words and "lowshot" in res["results"]["checkpoints"]["a"]


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
            "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


def test_sigint_midway_leaves_nothing(tmp_path: Path) -> None:
    """Stopped while the maps are drawn: exit 130, one 'interrupted' line, no --out, no hidden stage."""
    a = planted(seed=15, n_train=3000, n_test=3000, dim=64, classes=10)
    p = write_npz(tmp_path / "big.npz", a)
    proc = subprocess.Popen(["umae", "compare", "--features", str(p), "--per-class", "300", "--out", "out"],
                            cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.monotonic() + 300
        while not any(".partial-" in q.name for q in tmp_path.iterdir()):
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "the staged output never appeared"
            time.sleep(0.05)
        time.sleep(1.0)  # into the work (features read, probes / maps running)
        assert proc.poll() is None, "finished before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert [line for line in err.splitlines() if "interrupted" in line] == ["interrupted (SIGINT)"]
    assert "Traceback" not in err
    assert sorted(q.name for q in tmp_path.iterdir()) == ["big.npz"]
