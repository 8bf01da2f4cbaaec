"""``--map-classes N`` on collapse-report / compare: the paper's Fig. 3a on N seeded-random classes
of a many-class set, the same classes for every checkpoint, recorded in results.json and the caption;
refused (one line, exit 2, nothing written) when N < 2 or N > the number of classes."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import ckpt_factory as CF
from umae_eval.cli import main
from umae_eval.errors import UmaeError
from umae_eval.pipeline.map_classes import choose_map_classes

ROOT = Path(__file__).resolve().parents[1]
N_CLASSES = 12
NAMES = [f"class{c:02d}" for c in range(N_CLASSES)]


def test_default_is_every_class_up_to_ten_else_ten() -> None:
    assert choose_map_classes(10, None, 0).tolist() == list(range(10))
    assert choose_map_classes(3, None, 5).tolist() == [0, 1, 2]
    many = choose_map_classes(100, None, 0)
    assert len(many) == 10 and len(set(many.tolist())) == 10
    assert many.tolist() == sorted(many.tolist()) and 0 <= many.min() and many.max() < 100
    assert choose_map_classes(12, 12, 3).tolist() == list(range(12))  # all of them: label order


def test_choice_is_seeded_and_stable() -> None:
    a = choose_map_classes(100, 10, 0)
    assert a.tolist() == choose_map_classes(100, 10, 0).tolist()
    # pinned: the same seed must give the same classes in every release (reports compare across runs)
    assert a.tolist() == [2, 11, 24, 28, 49, 59, 63, 77, 91, 98]
    draws = {tuple(choose_map_classes(100, 10, s).tolist()) for s in range(20)}
    assert len(draws) == 20
    # roughly uniform over classes: each of 100 classes drawn about 10% of the time over 2,000 seeds
    counts = np.bincount(np.concatenate([choose_map_classes(100, 10, s) for s in range(2000)]), minlength=100)
    assert counts.min() > 140 and counts.max() < 270  # mean 200, sd about 13.4


@pytest.mark.parametrize("n, needle", [(1, "at least 2 classes"), (13, "only 12 classes")])
def test_bad_counts_are_refused(n: int, needle: str) -> None:
    with pytest.raises(UmaeError, match=needle):
        choose_map_classes(12, n, 0)


def test_feature_maps_keep_only_the_chosen_classes_and_the_report_relabels_them() -> None:
    from umae_eval.analysis import FeatureSet
    from umae_eval.pipeline.collapse import feature_maps
    from umae_eval.report.analysis import _shown_classes

    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(N_CLASSES), 5)
    fs = FeatureSet(train=None, test=rng.normal(size=(len(y), 8)).astype(np.float32), y_train=y, y_test=y, pool="cls")
    (m,) = feature_maps(fs, methods=("tsne",), per_class=4, seed=0, classes=[1, 4, 7], class_names=NAMES)
    assert sorted(set(m.labels.tolist())) == [1, 4, 7] and len(m.labels) == 12
    assert np.isin(y[m.test_index], [1, 4, 7]).all()
    assert m.settings["map_class_ids"] == [1, 4, 7] and m.settings["map_classes"] == ["class01", "class04", "class07"]
    names, relabel = _shown_classes(m.settings, NAMES)
    assert names == ["class01", "class04", "class07"]
    assert relabel(np.array([7, 1, 4, 4])).tolist() == [2, 0, 1, 1]  # 0..N-1: the 10-class palette and shapes
    everything, same = _shown_classes({}, NAMES)
    assert everything == NAMES and same(np.array([11, 0])).tolist() == [11, 0]


@pytest.fixture(scope="module")
def data_and_ckpts(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    rng = np.random.default_rng(0)
    root = tmp_path_factory.mktemp("mapcls")
    y_train = np.repeat(np.arange(N_CLASSES), 4)
    y_test = np.repeat(np.arange(N_CLASSES), 5)
    npz = root / "many.npz"
    np.savez(npz, x_train=rng.integers(0, 256, (len(y_train), 32, 32, 3), dtype=np.uint8), y_train=y_train,
             x_test=rng.integers(0, 256, (len(y_test), 32, 32, 3), dtype=np.uint8), y_test=y_test,
             class_names=np.array(NAMES))
    a, b = root / "mae_pretrain_vit_a.pth", root / "mae_pretrain_vit_b.pth"
    CF.make_official_encoder(a, seed=1)
    CF.make_official_encoder(b, seed=2)
    return npz, a, b


@pytest.mark.slow  # a whole collapse-report of two checkpoints (~30 s of CPU)
def test_collapse_report_maps_show_the_chosen_classes(data_and_ckpts: tuple[Path, Path, Path], tmp_path: Path) -> None:
    npz, a, b = data_and_ckpts
    out = tmp_path / "out"
    assert main(["collapse-report", str(a), str(b), "--data", str(npz), "--map-classes", "3", "--seed", "4",
                 "--embed", "tsne", "--per-class", "5", "--max-views", "12", "--bootstrap", "100",
                 "--device", "cpu", "--out", str(out)]) == 0
    ids = choose_map_classes(N_CLASSES, 3, 4).tolist()
    chosen = [NAMES[i] for i in ids]
    res = json.loads((out / "results.json").read_text())
    assert res["settings"]["map_classes"] == 3
    per = res["results"]["checkpoints"]
    assert len(per) == 2
    for r in per.values():  # the same classes in every checkpoint's map
        m = r["maps"][0]
        assert m["map_classes"] == chosen and m["map_class_ids"] == ids and m["n_points"] == 15
    maps = pd.read_csv(out / "maps.csv", keep_default_na=False)
    assert sorted(set(maps["class_name"])) == sorted(chosen) and len(maps) == 2 * 15
    html = (out / "report.html").read_text()
    assert f"3 of the {N_CLASSES} classes, drawn at random from seed 4" in html
    assert ", ".join(chosen) in html
    captions = (out / "figures" / "captions.md").read_text()
    assert ", ".join(chosen) in captions


@pytest.mark.slow
def test_default_on_twelve_classes_draws_ten(data_and_ckpts: tuple[Path, Path, Path], tmp_path: Path) -> None:
    npz, a, _ = data_and_ckpts
    out = tmp_path / "out"
    assert main(["compare", str(a), "--data", str(npz), "--methods", "mean", "--embed", "tsne", "--per-class", "3",
                 "--max-views", "12", "--bootstrap", "100", "--device", "cpu", "--out", str(out)]) == 0
    m = json.loads((out / "results.json").read_text())["results"]["checkpoints"]
    m = next(iter(m.values()))["maps"][0]
    assert m["map_class_ids"] == choose_map_classes(N_CLASSES, None, 0).tolist() and len(m["map_classes"]) == 10
    assert m["n_points"] == 30


@pytest.mark.parametrize("command, n, needle", [
    ("collapse-report", "13", "--map-classes 13: the data has only 12 classes; use 2 to 12"),
    ("compare", "1", "--map-classes 1: a map needs at least 2 classes"),
    pytest.param("compare", "13", "--map-classes 13: the data has only 12 classes", marks=pytest.mark.slow),
    pytest.param("collapse-report", "1", "--map-classes 1: a map needs at least 2 classes", marks=pytest.mark.slow),
])
def test_refused_through_the_installed_command(command: str, n: str, needle: str,
                                               data_and_ckpts: tuple[Path, Path, Path], tmp_path: Path) -> None:
    npz, a, _ = data_and_ckpts
    exe = shutil.which("umae")
    assert exe
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "COLUMNS": "200"}
    proc = subprocess.run([exe, command, str(a), "--data", str(npz), "--map-classes", n, "--device", "cpu",
                           "--out", str(out)], capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 2, proc.stderr
    errors = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and needle in errors[0], proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() or not any(out.iterdir())
