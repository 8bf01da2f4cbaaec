"""Low-shot subsets (balanced, seeded, nested, checked) and the low-shot probes against direct calls."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from umae_eval.errors import UmaeError
from umae_eval.probes import knn_probe, linear_probe
from umae_eval.probes.lowshot import lowshot_probes, lowshot_subsets


def _labels(per_class: tuple[int, ...] = (60, 60, 60, 60), seed: int = 0) -> np.ndarray:
    y = np.concatenate([np.full(n, c) for c, n in enumerate(per_class)])
    return np.random.default_rng(seed).permutation(y)


def test_subsets_are_class_balanced_with_the_stated_counts() -> None:
    y = _labels((50, 70, 60, 60))  # unbalanced train: every class still gets the same count
    subs = lowshot_subsets(y, fractions=(0.05, 0.25), shots=(1, 3), draws=2, seed=0)
    assert [(s.name, s.draw) for s in subs] == [(n, d) for d in (0, 1) for n in ("5%", "25%", "1-shot", "3-shot")]
    expected = {"5%": round(0.05 * 240 / 4), "25%": round(0.25 * 240 / 4), "1-shot": 1, "3-shot": 3}
    for s in subs:
        assert s.per_class == expected[s.name]
        assert s.indices.dtype == np.int64 and np.all(np.diff(s.indices) > 0)
        assert np.bincount(y[s.indices], minlength=4).tolist() == [expected[s.name]] * 4


def test_subsets_are_nested_within_a_draw_and_differ_across_draws() -> None:
    y = _labels()
    subs = lowshot_subsets(y, fractions=(0.1, 0.5), shots=(1, 5, 10), draws=3, seed=4)
    for d in range(3):
        by = {s.name: set(s.indices.tolist()) for s in subs if s.draw == d}
        assert by["1-shot"] < by["5-shot"] < by["10-shot"]
        assert by["10%"] < by["50%"]
        assert by["5-shot"] < by["10%"] and by["10-shot"] < by["50%"]  # 6 and 30 per class
    firsts = [tuple(s.indices) for s in subs if s.name == "10%"]
    assert len(set(firsts)) == 3


def test_subsets_are_seeded_and_a_draw_does_not_depend_on_the_number_of_draws() -> None:
    y = _labels()
    a = lowshot_subsets(y, fractions=(0.1,), shots=(5,), draws=2, seed=7)
    b = lowshot_subsets(y, fractions=(0.1,), shots=(5,), draws=5, seed=7)
    c = lowshot_subsets(y, fractions=(0.1,), shots=(5,), draws=2, seed=8)
    for x, z in zip(a, b):
        assert (x.name, x.draw) == (z.name, z.draw) and np.array_equal(x.indices, z.indices)
    assert all(x.seed == 7 for x in a)
    assert not any(np.array_equal(x.indices, z.indices) for x, z in zip(a, c))


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(shots=(61,)), "low-shot subset 61-shot asks for 61 training images per class but class 0 has only 60; ask for fewer"),
    (dict(fractions=(0.001,)), "label fraction 0.001 of 240 training images over 4 classes is 0.06 images per class; ask for at least 0.0083 (or use shots)"),
    (dict(fractions=(1.5,)), "each label fraction must lie in (0, 1] (0.01 = 1% of the labels), got 1.5"),
    (dict(fractions=(0,)), "each label fraction must lie in (0, 1] (0.01 = 1% of the labels), got 0"),
    (dict(shots=(0,)), "each shot count must be an integer >= 1 (images per class), got 0"),
    (dict(shots=(2.5,)), "each shot count must be an integer >= 1 (images per class), got 2.5"),
    (dict(shots=(1,), draws=0), "draws must be an integer >= 1, got 0"),
    (dict(), "lowshot_subsets needs at least one label fraction or one shot count"),
])
def test_impossible_subsets_are_refused_with_one_line(kwargs: dict, message: str) -> None:
    y = _labels()
    with pytest.raises(UmaeError) as err:
        lowshot_subsets(y, **kwargs)
    assert str(err.value) == message


def _features(n: int, m: int, d: int = 12, c: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    means = 1.5 * rng.standard_normal((c, d))
    ytr, yte = np.repeat(np.arange(c), n // c), np.repeat(np.arange(c), m // c)
    xtr = (means[ytr] + rng.standard_normal((len(ytr), d))).astype(np.float32)
    xte = (means[yte] + rng.standard_normal((len(yte), d))).astype(np.float32)
    return xtr, ytr, xte, yte


def test_lowshot_probes_equal_the_probes_called_on_each_subset() -> None:
    xtr, ytr, xte, yte = _features(200, 80)
    subs = lowshot_subsets(ytr, fractions=(0.2,), shots=(1, 5), draws=3, seed=1)
    res = lowshot_probes(xtr, ytr, xte, yte, subs, seed=3, k=20)
    assert [(e.subset, e.method) for e in res.entries] == [
        (n, m) for n in ("20%", "1-shot", "5-shot") for m in ("linear", "knn")]
    for e in res.entries:
        mine = [s for s in subs if s.name == e.subset]
        assert e.draws == [0, 1, 2]
        for s, acc, pred in zip(mine, e.accuracies, e.test_predictions):
            if e.method == "linear":
                kw = dict(weight_decays=(1e-3,), val_fraction=0.0) if s.per_class == 1 else {}
                direct = linear_probe(xtr[s.indices], ytr[s.indices], xte, yte, seed=3, num_classes=4, **kw)
                assert np.array_equal(pred, direct.test_predictions["linear_accuracy"])
            else:
                direct = knn_probe(xtr[s.indices], ytr[s.indices], xte, yte, ks=(20,), num_classes=4)
                assert np.array_equal(pred, direct.test_predictions["knn_accuracy@20"])
            assert acc == direct.accuracy
        assert e.mean == pytest.approx(np.mean(e.accuracies))
        assert e.std == pytest.approx(np.std(e.accuracies, ddof=1))
    one_shot_knn = res.get("1-shot", "knn").to_dict()
    assert [d["k_effective"] for d in one_shot_knn["per_draw"]] == [4, 4, 4]  # k=20 clipped to 4 rows
    assert res.get("20%", "linear").to_dict()["probe_settings"]["num_train"] == 40


def test_lowshot_result_is_json_safe_and_carries_its_settings() -> None:
    xtr, ytr, xte, yte = _features(120, 40)
    subs = lowshot_subsets(ytr, shots=(2,), draws=2, seed=0)
    res = lowshot_probes(torch.from_numpy(xtr), ytr, xte, yte, subs, methods=("knn",), k=5)
    d = json.loads(json.dumps(res.to_dict()))
    assert d["settings"]["subsets"] == [{"name": "2-shot", "per_class": 2, "kind": "shots", "value": 2}]
    assert d["settings"]["draws"] == [0, 1] and d["settings"]["subset_seed"] == [0]
    assert d["settings"]["knn"] == {"k": 5, "temperature": 0.07, "backend": "auto"}
    (entry,) = d["results"]
    assert entry["result_name"] == "knn_accuracy@2-shot" and len(entry["accuracies"]) == 2
    assert entry["min"] <= entry["mean"] <= entry["max"]


def test_lowshot_probes_refuse_bad_methods_and_foreign_subsets() -> None:
    xtr, ytr, xte, yte = _features(40, 8)
    subs = lowshot_subsets(np.repeat(np.arange(4), 30), shots=(2,), draws=1)
    with pytest.raises(UmaeError, match="low-shot method must be one of 'linear', 'knn', got 'mean'"):
        lowshot_probes(xtr, ytr, xte, yte, subs, methods=("mean",))
    with pytest.raises(UmaeError, match=r"low-shot subset 2-shot \(draw 0\) indexes row \d+ but train_x has 40 rows"):
        lowshot_probes(xtr, ytr, xte, yte, subs)
