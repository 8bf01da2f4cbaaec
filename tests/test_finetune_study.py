"""Fine-tuning runs read back and compared: a rebuilt run scores exactly what it reported, the
per-image predictions give the run's own top-1, and the pair intervals match closed forms and an
independent resampling."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from umae_eval.data.choose import open_dataset
from umae_eval.pipeline.finetune_study import FinetuneRun, compare_finetune_runs, comparison_json

from ckpt_factory import make_official_encoder
from toy_images import toy_npz

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "OMP_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("fts")
    enc = d / "enc.pth"
    make_official_encoder(enc, embed_dim=64, num_heads=1, depth=3, patch_size=8)
    data = toy_npz(d / "toy.npz", seed=0)
    from umae_eval.cli import main

    common = [str(enc), "--data", str(data), "--preset", "cpu-demo", "--epochs", "1", "--batch-size", "16",
              "--workers", "0"]
    assert main(["finetune", *common, "--seed", "0", "--out", str(d / "ft-a")]) == 0
    assert main(["finetune", *common, "--seed", "1", "--freeze-blocks", "2", "--out", str(d / "ft-b")]) == 0
    return {"data": data, "a": d / "ft-a", "b": d / "ft-b", "enc": enc}


def _reported(folder: Path) -> float:
    return json.loads((folder / "results.json").read_text())["results"]["final"]["test_top1"]


def _run(encoder: str, seed: int, correct: np.ndarray, mode: str = "full") -> FinetuneRun:
    return FinetuneRun(f"{encoder}-{seed}", encoder, mode, seed, correct)


def test_pair_intervals_closed_forms_and_an_independent_resampling() -> None:
    rng = np.random.default_rng(5)
    n = 400
    c = {k: rng.random(n) < p for k, p in [(("MAE", 0), 0.6), (("MAE", 1), 0.62), (("U-MAE", 0), 0.58),
                                             (("U-MAE", 1), 0.65), (("random init", 0), 0.3)]}
    comp = compare_finetune_runs([_run(e, s, v) for (e, s), v in c.items()], n_boot=500, boot_seed=3)
    acc = {k: 100.0 * v.mean() for k, v in c.items()}
    assert [r.encoder for r in comp.runs] == ["random init", "MAE", "MAE", "U-MAE", "U-MAE"]
    per = {(p.a, p.b, p.seeds): p for p in comp.per_seed}
    assert per[("MAE", "U-MAE", (1,))].diff.estimate == pytest.approx(acc[("U-MAE", 1)] - acc[("MAE", 1)])
    assert ("random init", "MAE", (1,)) not in per  # no random-init run with seed 1
    (pooled,) = comp.pooled  # only MAE / U-MAE share two seeds
    d = [acc[("U-MAE", s)] - acc[("MAE", s)] for s in (0, 1)]
    assert pooled.diff.estimate == pytest.approx(np.mean(d))
    half = 12.7062047 * abs(d[0] - d[1]) / math.sqrt(2) / math.sqrt(2)  # t(1) * sd / sqrt(n), sd = |d0-d1|/sqrt2
    assert (pooled.over_seeds.lo, pooled.over_seeds.hi) == pytest.approx((np.mean(d) - half, np.mean(d) + half))
    # the pooled bootstrap, redone by hand: per-image fraction of seeds right, same indices for both
    idx_rng = np.random.default_rng(3)
    fa = (c[("MAE", 0)].astype(float) + c[("MAE", 1)]) / 2
    fb = (c[("U-MAE", 0)].astype(float) + c[("U-MAE", 1)]) / 2
    diffs = []
    for start in range(0, 500, 200):
        idx = idx_rng.integers(0, n, size=(min(200, 500 - start), n))
        diffs.append((fb[idx].mean(axis=1) - fa[idx].mean(axis=1)) * 100)
    lo, hi = np.percentile(np.concatenate(diffs), [2.5, 97.5])
    assert (pooled.diff.lo, pooled.diff.hi) == pytest.approx((lo, hi))
    doc = comparison_json(comp)
    assert doc["pooled"][0]["over_seeds"]["diffs"] == pytest.approx(d)
    assert json.loads(json.dumps(doc)) == doc


def test_identical_runs_differ_by_exactly_zero_and_bad_inputs_are_named() -> None:
    c = np.arange(50) % 3 == 0
    comp = compare_finetune_runs([_run("MAE", 0, c), _run("U-MAE", 0, c.copy())], n_boot=100)
    (p,) = comp.per_seed
    assert (p.diff.estimate, p.diff.lo, p.diff.hi) == (0.0, 0.0, 0.0)
    assert comp.pooled == ()
    with pytest.raises(ValueError, match="same test images; sizes \\[40, 50\\]"):
        compare_finetune_runs([_run("MAE", 0, c), _run("U-MAE", 0, c[:40])])
    with pytest.raises(ValueError, match="two runs of the same encoder, mode and seed: \\[\\('MAE', 'full', 0\\)\\]"):
        compare_finetune_runs([_run("MAE", 0, c), _run("MAE", 0, c)])
    with pytest.raises(ValueError, match="no fine-tuning runs"):
        compare_finetune_runs([])


def test_study_script_rescores_and_refuses_a_run_whose_numbers_differ(runs: dict[str, Path], tmp_path: Path) -> None:
    script = [sys.executable, str(ROOT / "scripts" / "study_finetune.py")]
    out = tmp_path / "out"
    done = subprocess.run(script + [str(runs["a"]), str(runs["b"]), str(tmp_path / "missing"),
                                    "--data", str(runs["data"]), "--out", str(out), "--n-boot", "50"],
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "missing: no results.json (run not finished); left out" in done.stderr
    doc = json.loads((out / "finetune.json").read_text())
    modes = {r["name"]: (r["encoder"], r["mode"], r["seed"]) for r in doc["runs"]}
    assert modes == {"ft-a": ("MAE", "full", 0), "ft-b": ("MAE", "last block", 1)}
    y = np.asarray(open_dataset(runs["data"]).y_test)
    for name in ("ft-a", "ft-b"):  # the saved predictions give each run's own reported top-1
        pred = np.load(out / "predictions" / f"{name}.npy")
        assert pred.shape == y.shape and 100.0 * float((pred == y).mean()) == pytest.approx(_reported(runs[name[3:]]))
    assert doc["runs"][0]["wall_s"] > 0 and doc["inputs"][0]["preset"] == "cpu-demo"
    assert len(doc["runs"][0]["epoch_train_s"]) == 1 and doc["runs"][0]["train_s"] == doc["runs"][0]["epoch_train_s"][0]
    # a pre-training checkpoint in a run folder is named
    pre = tmp_path / "ft-pre"
    pre.mkdir()
    (pre / "last.pth").write_bytes(runs["enc"].read_bytes())
    (pre / "results.json").write_text((runs["a"] / "results.json").read_text())
    done = subprocess.run(script + [str(pre), "--data", str(runs["data"]), "--out", str(tmp_path / "o3")],
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1 and "ft-pre/last.pth is not a `umae finetune` checkpoint" in done.stderr
    # a results.json that does not match the checkpoint stops the script, naming the folder
    bad = tmp_path / "ft-bad"
    bad.mkdir()
    (bad / "last.pth").write_bytes((runs["a"] / "last.pth").read_bytes())
    res = json.loads((runs["a"] / "results.json").read_text())
    res["results"]["final"]["test_top1"] += 1.0
    (bad / "results.json").write_text(json.dumps(res))
    done = subprocess.run(script + [str(bad), "--data", str(runs["data"]), "--out", str(tmp_path / "o2")],
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1
    assert "ft-bad: rescored top-1" in done.stderr and "differs from results.json" in done.stderr
    assert not (tmp_path / "o2").exists()


def test_a_run_whose_checkpoint_is_gone_is_compared_from_its_earlier_predictions(runs: dict[str, Path],
                                                                                 tmp_path: Path) -> None:
    script = [sys.executable, str(ROOT / "scripts" / "study_finetune.py"), "--data", str(runs["data"]),
              "--n-boot", "50"]
    out = tmp_path / "out"
    done = subprocess.run(script + [str(runs["a"]), str(runs["b"]), "--out", str(out)],
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    first = json.loads((out / "finetune.json").read_text())
    records = tmp_path / "records" / "ft-a"  # what the study commits: the run's records, no weights
    records.mkdir(parents=True)
    for name in ("config.json", "metrics.jsonl", "results.json"):
        (records / name).write_bytes((runs["a"] / name).read_bytes())
    done = subprocess.run(script + [str(records), str(runs["b"]), "--out", str(out)],
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1
    assert f"{records}: no last.pth to rescore and no earlier predictions of it in {out} (pass --reuse" in done.stderr
    done = subprocess.run(script + [str(records), str(runs["b"]), "--reuse", "--out", str(tmp_path / "none")],
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1 and f"--reuse: {tmp_path / 'none' / 'finetune.json'} not found" in done.stderr
    study = tmp_path / "study.json"
    study.write_text(json.dumps({"summary": "kept", "finetune": {"rows": []}}))
    done = subprocess.run(script + [str(records), str(runs["b"]), "--reuse", "--out", str(out),
                                    "--study-json", str(study)], env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    again = json.loads((out / "finetune.json").read_text())
    section = json.loads(study.read_text())
    assert section["summary"] == "kept"
    assert section["finetune"]["recipe"] == "umae finetune --preset cpu-demo (1 epochs, batch 16, MAE's augmentation)"
    assert section["finetune"]["source"] == str(out) and section["finetune"]["note"] == again["note"]
    assert section["finetune"]["rows"] == again["study_rows"] == []  # both runs MAE: no pair
    # the rows as the demo quotes them: rounded to 4 decimals, the rest kept
    spec = importlib.util.spec_from_file_location("study_finetune", ROOT / "scripts" / "study_finetune.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    row = {"mode": "full", "a": "MAE", "b": "U-MAE", "seeds": [0, 1], "diff": 0.8249999999999957,
           "boot_lo": 0.32500000000000284, "t_lo": None, "verdict": "v"}
    mod.update_study_json(study, {"study_rows": [row], "note": "n"}, out, [{"folder": str(runs["a"]), "epochs": 1}])
    assert json.loads(study.read_text())["finetune"]["rows"] == [{**row, "diff": 0.825, "boot_lo": 0.325}]
    bad = [{"folder": str(runs["a"]), "epochs": 1}, {"folder": str(runs["b"]), "epochs": 2}]
    with pytest.raises(SystemExit, match="the runs differ in preset or epochs"):
        mod.update_study_json(study, {"study_rows": [row], "note": "n"}, out, bad)
    for key in ("runs", "per_seed", "pooled", "study_rows"):
        assert again[key] == first[key], key
    inputs = {r["name"]: r for r in again["inputs"]}
    assert inputs["ft-a"]["predictions"].startswith("reused: rescored from last.pth")
    assert inputs["ft-a"]["checkpoint_sha256"] == first["inputs"][0]["checkpoint_sha256"]
    assert inputs["ft-b"]["predictions"] == "rescored from last.pth"
    # the earlier predictions are checked against the folder's own results.json
    res = json.loads((records / "results.json").read_text())
    res["results"]["final"]["test_top1"] += 1.0
    (records / "results.json").write_text(json.dumps(res))
    done = subprocess.run(script + [str(records), "--reuse", "--out", str(out)],
                          env=ENV, capture_output=True, text=True, timeout=600)
    assert done.returncode == 1 and "ft-a: earlier predictions' top-1" in done.stderr


def test_study_rows_one_per_pair_and_verdicts_worded_for_their_interval() -> None:
    n = 2000
    base = np.zeros(n, dtype=bool)
    base[: n // 2] = True

    def shifted(k: int) -> np.ndarray:  # base with k more (k > 0) or fewer images right
        c = base.copy()
        if k > 0:
            c[n // 2: n // 2 + k] = True
        else:
            c[n // 2 + k: n // 2] = False
        return c

    runs = [_run("MAE", 0, base), _run("MAE", 1, base), _run("U-MAE", 0, shifted(-200)),
            _run("U-MAE", 1, shifted(-190)),  # 10 and 9.5 points lower in both seeds
            _run("random init", 0, shifted(3), mode="last 2 blocks"), _run("MAE", 0, base, mode="last 2 blocks")]
    comp = compare_finetune_runs(runs, n_boot=300)
    rows = {(r["mode"], r["a"], r["b"]): r for r in comparison_json(comp)["study_rows"]}
    assert set(rows) == {("full", "MAE", "U-MAE"), ("last 2 blocks", "random init", "MAE")}
    full = rows[("full", "MAE", "U-MAE")]
    assert full["seeds"] == [0, 1] and full["diff"] == pytest.approx(-9.75)
    assert full["verdict"] == "U-MAE below MAE across fine-tuning seeds (t interval over 2 seeds excludes 0)"
    assert full["t_hi"] < 0 and full["boot_hi"] < 0
    last = rows[("last 2 blocks", "random init", "MAE")]
    assert last["seeds"] == [0] and last["t_lo"] is None and last["diff"] == pytest.approx(-0.15)
    assert last["verdict"] == "within test-image noise (one fine-tuning seed)"
    # opposite signs in the two seeds: beyond the test images' noise, not the seeds'
    comp = compare_finetune_runs([_run("MAE", 0, base), _run("MAE", 1, base), _run("U-MAE", 0, shifted(-300)),
                                  _run("U-MAE", 1, shifted(100))], n_boot=300)
    (row,) = comparison_json(comp)["study_rows"]
    assert row["boot_hi"] < 0 < row["t_hi"]
    assert row["verdict"] == "U-MAE below MAE beyond test-image noise, within fine-tuning-seed noise (2 seeds)"
