"""Probes against direct numpy implementations, scikit-learn, and toy cases with known answers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from umae_eval.errors import UmaeError
from umae_eval.probes import ProbeResult, knn_accuracy, knn_probe, linear_probe, mean_classifier
from umae_eval.probes.knn import knn_search
from umae_eval.probes.linear import stratified_split
from umae_eval.probes.mean import mean_classifier_accuracy


def _mixture(n: int, d: int, c: int, sep: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(1234).standard_normal((c, d)) * sep
    y = rng.integers(0, c, n)
    return (rng.standard_normal((n, d)) + means[y]).astype(np.float32), y


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    xtr, ytr = _mixture(600, 16, 4, 0.6, 0)
    xte, yte = _mixture(300, 16, 4, 0.6, 1)
    return xtr, ytr, xte, yte


# ------------------------------------------------------------------------ mean classifier
def _numpy_mean_classifier(xtr, ytr, xte, c, metric):  # type: ignore[no-untyped-def]
    means = np.stack([xtr[ytr == k].mean(axis=0) for k in range(c)]).astype(np.float64)
    x = xte.astype(np.float64)
    if metric == "cosine":
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        mn = means / np.linalg.norm(means, axis=1, keepdims=True)
        return np.argmax(xn @ mn.T, axis=1)
    dist = ((x[:, None, :] - means[None, :, :]) ** 2).sum(-1)
    return np.argmin(dist, axis=1)


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_mean_classifier_matches_numpy(data, metric) -> None:  # type: ignore[no-untyped-def]
    xtr, ytr, xte, yte = data
    res = mean_classifier(xtr, ytr, xte, yte, metric=metric)
    pred = _numpy_mean_classifier(xtr, ytr, xte, 4, metric)
    assert res.accuracy == pytest.approx(100.0 * np.mean(pred == yte))
    assert 50.0 < res.accuracy < 100.0  # the data is neither trivial nor random
    assert res.method == "mean_classifier" and res.settings["metric"] == metric
    assert mean_classifier_accuracy(xtr, ytr, xte, yte, metric=metric) == res.accuracy


def test_mean_classifier_toy_case_where_metrics_disagree() -> None:
    # class 0 mean (1, 0); class 1 mean (10, 10). The query (3, 2.5) is nearer class 0 in
    # Euclidean distance but closer in angle to class 1.
    xtr = np.array([[1.0, 0.0], [1.0, 0.0], [10.0, 10.0], [10.0, 10.0]])
    ytr = np.array([0, 0, 1, 1])
    q, yq = np.array([[3.0, 2.5]]), np.array([1])
    assert mean_classifier(xtr, ytr, q, yq, metric="cosine").accuracy == 100.0
    assert mean_classifier(xtr, ytr, q, yq, metric="euclidean").accuracy == 0.0


def test_mean_classifier_never_predicts_a_class_without_training_samples() -> None:
    xtr = np.array([[1.0, 0.0], [0.0, 1.0]])
    ytr = np.array([0, 2])
    res = mean_classifier(xtr, ytr, np.array([[1.0, 0.1], [0.1, 1.0]]), np.array([0, 1]), num_classes=3)
    assert res.settings["classes_without_train_samples"] == [1]
    assert res.accuracy == 50.0
    assert np.isnan(res.extras["per_class_accuracy"][2]) and res.extras["per_class_accuracy"][0] == 100.0


def test_mean_classifier_accepts_tensors(data) -> None:  # type: ignore[no-untyped-def]
    xtr, ytr, xte, yte = data
    ref = mean_classifier(xtr, ytr, xte, yte).accuracy
    assert mean_classifier(torch.from_numpy(xtr), torch.from_numpy(ytr), torch.from_numpy(xte),
                           torch.from_numpy(yte)).accuracy == ref


# ------------------------------------------------------------------------------------ kNN
def _numpy_knn(xtr, ytr, xte, k, t, c):  # type: ignore[no-untyped-def]
    a = xtr / np.linalg.norm(xtr, axis=1, keepdims=True)
    q = xte / np.linalg.norm(xte, axis=1, keepdims=True)
    sims = q.astype(np.float64) @ a.astype(np.float64).T
    preds = []
    for row in sims:
        nn = np.argsort(-row, kind="stable")[:k]
        votes = np.zeros(c)
        for j in nn:
            votes[ytr[j]] += np.exp(row[j] / t)
        preds.append(np.argmax(votes))
    return np.array(preds)


@pytest.mark.parametrize("k", [1, 5, 20])
@pytest.mark.parametrize("temperature", [0.07, 0.5])
def test_knn_matches_bruteforce_numpy(data, k, temperature) -> None:  # type: ignore[no-untyped-def]
    xtr, ytr, xte, yte = data
    ref = 100.0 * np.mean(_numpy_knn(xtr, ytr, xte, k, temperature, 4) == yte)
    for backend in ("faiss", "torch"):
        got = knn_accuracy(xtr, ytr, xte, yte, k=k, temperature=temperature, backend=backend)
        assert got == pytest.approx(ref), backend


def test_knn_backends_find_the_same_neighbours(data) -> None:  # type: ignore[no-untyped-def]
    xtr, _, xte, _ = data
    s_f, i_f = knn_search(xtr, xte, 25, backend="faiss")
    s_t, i_t = knn_search(xtr, xte, 25, backend="torch")
    assert torch.equal(i_f, i_t)
    torch.testing.assert_close(s_f, s_t, rtol=1e-5, atol=1e-5)
    assert bool((s_t[:, :-1] >= s_t[:, 1:]).all())  # most similar first


def test_knn_probe_reports_each_k_from_one_search(data) -> None:  # type: ignore[no-untyped-def]
    xtr, ytr, xte, yte = data
    res = knn_probe(xtr, ytr, xte, yte, ks=(3, 20, 5000))
    assert res.method == "knn" and res.settings["k"] == 20 and res.settings["temperature"] == 0.07
    assert res.settings["ks_effective"] == [3, 20, 600]  # k clipped to the train size
    assert res.accuracy == res.extras["accuracy_by_k"][20]
    for k in (3, 20):
        assert res.extras["accuracy_by_k"][k] == knn_accuracy(xtr, ytr, xte, yte, k=k)
    ref_all = 100.0 * np.mean(_numpy_knn(xtr, ytr, xte, 600, 0.07, 4) == yte)
    assert res.extras["accuracy_by_k"][5000] == pytest.approx(ref_all)
    assert json.loads(json.dumps(res.to_dict()))["extras"]["accuracy_by_k"]["20"] == res.accuracy
    assert knn_probe(xtr, ytr, xte, yte, ks=(3, 7)).settings["k"] == 3
    assert knn_probe(xtr, ytr, xte, yte, ks=(3, 7), report_k=7).settings["k"] == 7


def test_knn_auto_backend_and_tensor_input(data) -> None:  # type: ignore[no-untyped-def]
    xtr, ytr, xte, yte = data
    res = knn_probe(torch.from_numpy(xtr), ytr, torch.from_numpy(xte), yte, ks=(20,))
    assert res.settings["backend"] == "faiss"  # CPU tensors -> faiss
    assert res.accuracy == knn_accuracy(xtr, ytr, xte, yte, backend="torch")


# --------------------------------------------------------------------------------- linear
def test_linear_probe_fast_matches_sklearn_logistic_regression() -> None:
    xtr, ytr = _mixture(900, 20, 5, 0.35, 10)
    xte, yte = _mixture(600, 20, 5, 0.35, 11)
    grid = (1e-1, 1e-2, 1e-3)
    ours = linear_probe(xtr, ytr, xte, yte, weight_decays=grid)
    ref = linear_probe(xtr, ytr, xte, yte, weight_decays=grid, backend="sklearn")
    assert 60.0 < ref.accuracy < 98.0  # separable-ish, not trivial
    assert abs(ours.accuracy - ref.accuracy) <= 1.0
    # same split, same objective: same validation curve within a point
    for a, b in zip(ours.extras["val_curve"], ref.extras["val_curve"]):
        assert a["weight_decay"] == b["weight_decay"]
        assert abs(a["val_accuracy"] - b["val_accuracy"]) <= 1.5


def test_linear_probe_reaches_the_sklearn_optimum_at_one_weight_decay() -> None:
    from sklearn.linear_model import LogisticRegression

    xtr, ytr = _mixture(500, 12, 3, 0.4, 20)
    wd = 1e-2
    mean, std = xtr.mean(0), xtr.std(0)
    z = (xtr - mean) / std
    clf = LogisticRegression(C=1.0 / (wd * len(ytr)), tol=1e-10, max_iter=5000).fit(z, ytr)
    res = linear_probe(xtr, ytr, xtr, ytr, weight_decays=(wd,), val_fraction=0.0, tol=1e-5)
    assert res.accuracy == pytest.approx(100.0 * np.mean(clf.predict(z) == ytr), abs=0.5)
    logits = z @ clf.coef_.T + clf.intercept_
    logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) - logits.max(1, keepdims=True)
    ref_loss = -logp[np.arange(len(ytr)), ytr].mean() + 0.5 * wd * (clf.coef_**2).sum()
    assert res.extras["refit_loss"] == pytest.approx(ref_loss, rel=1e-4)


def test_linear_probe_trivially_separable_is_exact() -> None:
    rng = np.random.default_rng(3)
    y = rng.integers(0, 3, 300)
    x = rng.standard_normal((300, 8)) * 0.05
    x[np.arange(300), y] += 5.0  # class = the hot coordinate
    res = linear_probe(x[:200], y[:200], x[200:], y[200:])
    assert res.accuracy == 100.0 and res.extras["train_accuracy"] == 100.0


def test_linear_probe_records_the_validation_choice(data) -> None:  # type: ignore[no-untyped-def]
    xtr, ytr, xte, yte = data
    grid = (1e-4, 1e-1, 1e-2)
    res = linear_probe(xtr, ytr, xte, yte, weight_decays=grid, val_fraction=0.2, seed=3)
    curve = res.extras["val_curve"]
    assert [p["weight_decay"] for p in curve] == [1e-1, 1e-2, 1e-4]  # strong -> weak (warm start)
    best = max(p["val_accuracy"] for p in curve)
    assert res.extras["chosen_weight_decay"] == max(p["weight_decay"] for p in curve if p["val_accuracy"] == best)
    s = res.settings
    assert s["weight_decays"] == [1e-1, 1e-2, 1e-4] and s["seed"] == 3 and s["val_fraction"] == 0.2
    assert s["num_fit"] + s["num_val"] == 600 and s["num_val"] == pytest.approx(120, abs=4)
    json.dumps(res.to_dict())  # JSON-safe


def test_linear_probe_is_reproducible_and_seeded(data) -> None:  # type: ignore[no-untyped-def]
    xtr, ytr, xte, yte = data
    a = linear_probe(xtr, ytr, xte, yte, seed=1, weight_decays=(1e-1, 1e-3))
    b = linear_probe(xtr, ytr, xte, yte, seed=1, weight_decays=(1e-1, 1e-3))
    assert a.accuracy == b.accuracy and a.extras["val_curve"] == [
        {**p, "seconds": q["seconds"]} for p, q in zip(b.extras["val_curve"], a.extras["val_curve"])]
    fit1, val1 = stratified_split(ytr, 0.1, 1)
    fit2, val2 = stratified_split(ytr, 0.1, 2)
    assert not np.array_equal(val1, val2)
    np.testing.assert_array_equal(np.sort(np.concatenate([fit1, val1])), np.arange(600))
    for c in range(4):  # stratified: 10% of each class
        assert np.sum(ytr[val1] == c) == round(0.1 * np.sum(ytr == c))


def test_linear_probe_mae_protocol_runs_and_learns(data) -> None:  # type: ignore[no-untyped-def]
    xtr, ytr, xte, yte = data
    # LARS moves weights by ~lr * 1e-3 of their norm per step: with MAE's base lr 0.1 and a
    # small batch it needs thousands of steps, so the test raises the base lr instead.
    opts = dict(protocol="mae", epochs=20, warmup_epochs=2, batch_size=64, base_lr=10.0, seed=0)
    res = linear_probe(xtr, ytr, xte, yte, **opts)  # type: ignore[arg-type]
    losses = res.extras["loss_by_epoch"]
    assert len(losses) == 20 and losses[-1] < losses[0] - 0.1
    assert res.accuracy > 70.0  # chance is 25%; the 'fast' probe gets ~87%
    s = res.settings
    assert s["lr"] == pytest.approx(10.0 * 64 / 256) and s["steps_per_epoch"] == 600 // 64
    assert s["epochs"] == 20 and s["warmup_epochs"] == 2 and s["batch_size"] == 64 and s["base_lr"] == 10.0
    again = linear_probe(xtr, ytr, xte, yte, **opts)  # type: ignore[arg-type]
    assert again.accuracy == res.accuracy and again.extras["loss_by_epoch"] == losses


# ------------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda x, y: mean_classifier(x, y[:-1], x, y), "train_y has 599 entries but train_x has 600 rows"),
        (lambda x, y: mean_classifier(x, y, x[:, :3], y), "same feature dimension"),
        (lambda x, y: mean_classifier(x[:, 0], y, x, y), "2-D"),
        (lambda x, y: mean_classifier(np.where(x > 2, np.nan, x), y, x, y), "NaN"),
        (lambda x, y: mean_classifier(x, y - 1, x, y), ">= 0"),
        (lambda x, y: mean_classifier(x, y + 0.5, x, y), "integer class indices"),
        (lambda x, y: mean_classifier(x, y, x, y, metric="dot"), "metric must be one of"),
        (lambda x, y: mean_classifier(x, y, x, y, num_classes=2), "num_classes is 2"),
        (lambda x, y: knn_accuracy(x, y, x, y, k=0), "k must be an integer >= 1"),
        (lambda x, y: knn_accuracy(x, y, x, y, temperature=0.0), "temperature must be a positive"),
        (lambda x, y: knn_accuracy(x, y, x, y, backend="annoy"), "backend must be one of"),
        (lambda x, y: knn_probe(x, y, x, y, ks=()), "non-empty"),
        (lambda x, y: knn_probe(x, y, x, y, ks=(5,), report_k=7), "report_k=7"),
        (lambda x, y: linear_probe(x, y, x, y, weight_decays=(0.0,)), "weight decay must be a positive"),
        (lambda x, y: linear_probe(x, y, x, y, val_fraction=1.0), "val_fraction"),
        (lambda x, y: linear_probe(x, y, x, y, val_fraction=0.0), "no validation split"),
        (lambda x, y: linear_probe(x, y, x, y, backend="sklearn", protocol="mae"), "torch backend only"),
        (lambda x, y: linear_probe(x, y, x, y, protocol="mae", batch_size=10**6), "exceeds"),
        (lambda x, y: linear_probe(x, y, x, y, protocol="mae", epochs=2, warmup_epochs=3), "warmup_epochs"),
        (lambda x, y: linear_probe(x, y, x, y, device="cuda:0") if not torch.cuda.is_available()
         else (_ for _ in ()).throw(UmaeError("no CUDA check on a GPU machine")), "CUDA"),
    ],
)
def test_bad_probe_inputs_raise_umae_error(data, call, match) -> None:  # type: ignore[no-untyped-def]
    xtr, ytr, _, _ = data
    with pytest.raises(UmaeError, match=match):
        call(xtr, ytr)


def test_probe_result_to_dict_is_json_safe() -> None:
    res = ProbeResult("knn", 50.0, {"ks": (1, 2), "x": np.float32(1.5)}, {"by_k": {1: np.float64(3.0)}})
    assert json.loads(json.dumps(res.to_dict())) == {
        "method": "knn", "accuracy": 50.0, "settings": {"ks": [1, 2], "x": 1.5}, "extras": {"by_k": {"1": 3.0}}}


@pytest.mark.parametrize("module", ["umae_eval.probes.mean", "umae_eval.probes.knn", "umae_eval.probes.linear"])
def test_docstring_examples_run(module: str) -> None:
    import doctest
    import importlib

    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.attempted > 0 and result.failed == 0
