"""Differences over pre-training seeds: the t interval in closed form, the verdicts, bad input."""

from __future__ import annotations

import math

import pytest
from scipy import stats

from umae_eval.pipeline.seeds import seed_difference, t975


def test_t_table_equals_scipy():
    for df in range(1, 14):
        assert t975(df) == pytest.approx(stats.t.ppf(0.975, df), abs=1e-6)


def test_three_seeds_closed_form():
    # diffs 2, 3, 4: mean 3, sd 1, half-width t(2) / sqrt(3)
    d = seed_difference("linear", [0, 1, 2], [10.0, 20.0, 30.0], [12.0, 23.0, 34.0])
    assert d.mean_diff == pytest.approx(3.0)
    assert d.sd_diff == pytest.approx(1.0)
    half = 4.302652729911275 / math.sqrt(3)
    assert (d.lo, d.hi) == (pytest.approx(3 - half), pytest.approx(3 + half))
    assert d.mean_a == pytest.approx(20.0) and d.sd_a == pytest.approx(10.0)
    assert "above" in d.verdict and "3 seeds" in d.verdict
    # the same interval from scipy's own t interval of the paired differences
    lo, hi = stats.t.interval(0.95, 2, loc=3.0, scale=stats.sem([2.0, 3.0, 4.0]))
    assert (d.lo, d.hi) == (pytest.approx(lo), pytest.approx(hi))


def test_two_seeds_covering_zero_is_noise_and_one_seed_says_so():
    d = seed_difference("knn", [0, 1], [40.0, 41.0], [42.0, 40.5])  # diffs +2, -0.5
    assert d.lo < 0 < d.hi
    assert d.verdict.startswith("within seed-to-seed noise (2 seeds")
    below = seed_difference("knn", [0, 1], [40.0, 41.0], [30.0, 30.5])
    assert "below" in below.verdict
    one = seed_difference("linear", [0], [46.05], [45.93])
    assert math.isnan(one.lo) and one.verdict.startswith("one seed")
    assert one.to_json()["lo"] is None and one.to_json()["diffs"] == [pytest.approx(-0.12)]


def test_bad_input():
    with pytest.raises(ValueError, match="one value per seed"):
        seed_difference("x", [0, 1], [1.0], [2.0, 3.0])
    with pytest.raises(ValueError, match="a seed appears twice"):
        seed_difference("x", [1, 1], [1.0, 2.0], [2.0, 3.0])


# ------------------------------------------------ scripts/study_seeds.py: folders of `umae compare`
def _compare_folder(folder, seed, rows, ranks=None):  # type: ignore[no-untyped-def]
    """A `umae compare` output folder with the files study_seeds.py reads (same column names)."""
    import csv
    import json

    folder.mkdir(parents=True)
    ckpts = [{"name": f"MAE-s{seed}", "metadata": {"lam": 0.0, "seed": seed}, "sha256": "a"},
             {"name": f"U-MAE-s{seed}", "metadata": {"lam": 0.01, "seed": seed}, "sha256": "b"},
             {"name": "random init", "metadata": {}, "sha256": "c"}]
    results = {"command_line": "umae compare", "settings": {"checkpoints": ckpts}}
    (folder / "results.json").write_text(json.dumps(results))
    with open(folder / "protocol_matrix.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["checkpoint", "protocol", "accuracy"])
        w.writerows(rows)
    with open(folder / "collapse.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["checkpoint", "effective_rank", "rankme"])
        for name, (er, rm) in (ranks or {}).items():
            w.writerow([name, er, rm])


def _study_seeds():  # type: ignore[no-untyped-def]
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "study_seeds.py"
    spec = importlib.util.spec_from_file_location("study_seeds", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_study_seeds_merges_an_attentive_folder_and_refuses_a_measure_twice(tmp_path):  # type: ignore[no-untyped-def]
    mod = _study_seeds()
    for s, (mae, umae) in enumerate([(40.0, 42.0), (41.0, 44.0)]):
        _compare_folder(tmp_path / f"seed{s}", s,
                        [[f"MAE-s{s}", "mean_classifier_accuracy", mae],
                         [f"U-MAE-s{s}", "mean_classifier_accuracy", umae],
                         ["random init", "mean_classifier_accuracy", 10.0]],
                        {f"MAE-s{s}": (40, 20), f"U-MAE-s{s}": (80, 70)})
        _compare_folder(tmp_path / f"attentive-seed{s}", s,
                        [[f"MAE-s{s}", "attentive_accuracy", 50.0 + s], [f"U-MAE-s{s}", "attentive_accuracy", 49.0]],
                        {f"MAE-s{s}": (1, 1), f"U-MAE-s{s}": (1, 1)})  # ranks here are not read
    rows, provs = mod.aggregate(sorted(tmp_path.iterdir()))
    by = {r.measure: r for r in rows}
    mean = by["mean_classifier_accuracy"]
    assert list(mean.a) == [40.0, 41.0] and list(mean.b) == [42.0, 44.0]
    assert mean.mean_diff == pytest.approx(2.5)
    attentive = by["attentive_accuracy"]
    assert list(attentive.a) == [50.0, 51.0] and attentive.mean_diff == pytest.approx(-1.5)
    assert list(by["effective_rank"].a) == [40.0, 40.0] and list(by["effective_rank"].b) == [80.0, 80.0]
    assert len(provs) == 4
    # the same measure for the same seed from two folders is an error, not a silent overwrite
    _compare_folder(tmp_path / "again0", 0,
                    [["MAE-s0", "attentive_accuracy", 1.0], ["U-MAE-s0", "attentive_accuracy", 2.0]])
    with pytest.raises(SystemExit, match="seed 0 MAE attentive_accuracy already read"):
        mod.aggregate(sorted(tmp_path.iterdir()))


def test_study_seeds_rewrites_only_the_seeds_section_of_a_study_json(tmp_path):  # type: ignore[no-untyped-def]
    """`--study-json` replaces the demo's `seeds` rows with the table just computed and keeps every
    other section byte for byte; the interval names the seed counts when rows differ in them."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    for s, (mae, umae) in enumerate([(40.0, 42.0), (41.0, 44.0), (39.0, 45.0)]):
        _compare_folder(tmp_path / f"seed{s}", s,
                        [[f"MAE-s{s}", "mean_classifier_accuracy", mae],
                         [f"U-MAE-s{s}", "mean_classifier_accuracy", umae]],
                        {f"MAE-s{s}": (40, 20), f"U-MAE-s{s}": (80, 70)})
    for s in (0, 1):
        _compare_folder(tmp_path / f"attentive-seed{s}", s,
                        [[f"MAE-s{s}", "attentive_accuracy", 50.0], [f"U-MAE-s{s}", "attentive_accuracy", 51.0 + s]])
    study = tmp_path / "study.json"
    other = {"summary": "kept", "finetune": {"rows": [{"x": 1.5}]}, "seeds": {"rows": []}}
    study.write_text(json.dumps(other, indent=2) + "\n")
    script = Path(__file__).resolve().parents[1] / "scripts" / "study_seeds.py"
    folders = sorted(str(p) for p in tmp_path.glob("*seed*"))
    proc = subprocess.run([sys.executable, str(script), *folders, "--out", str(tmp_path / "out"),
                           "--study-json", str(study)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(study.read_text())
    assert {k: doc[k] for k in ("summary", "finetune")} == {k: other[k] for k in ("summary", "finetune")}
    seeds = doc["seeds"]
    assert seeds["source"] == str(tmp_path / "out")
    assert seeds["interval"] == ("Student t over the pre-training seeds each row lists (2-3) of the paired "
                                 "(same-seed) differences")
    by = {r["measure"]: r for r in seeds["rows"]}
    assert by["mean_classifier_accuracy"]["seeds"] == [0, 1, 2] and by["attentive_accuracy"]["seeds"] == [0, 1]
    assert by["mean_classifier_accuracy"]["mean_diff"] == pytest.approx((2 + 3 + 6) / 3)
    assert by["attentive_accuracy"]["b"] == [51.0, 52.0]
    table = json.loads((tmp_path / "out" / "seeds.json").read_text())["rows"]
    assert [r["measure"] for r in table] == [r["measure"] for r in seeds["rows"]]
    assert all(r[k] == by[r["measure"]][k] for r in table for k in _study_seeds().STUDY_FIELDS)
