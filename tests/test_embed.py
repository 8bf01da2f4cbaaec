"""2-D maps: shapes, seeded determinism, fallbacks, class-balanced subsets, bad input."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
import torch

import umae_eval.embed as embed_module
from umae_eval.embed import class_balanced_subset, embed, umap_needs_compile
from umae_eval.errors import UmaeError


@pytest.fixture(scope="module")
def blobs() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 30)
    x = rng.standard_normal((90, 10)) + 6.0 * np.eye(3, 10)[y]
    return x.astype(np.float32), y


def test_class_balanced_subset_counts_and_seed() -> None:
    y = np.array([0] * 50 + [1] * 7 + [2] * 20 + [4] * 3)
    idx = class_balanced_subset(y, per_class=10, seed=1)
    counts = {c: int(np.sum(y[idx] == c)) for c in np.unique(y)}
    assert counts == {0: 10, 1: 7, 2: 10, 4: 3}
    assert np.all(np.diff(idx) > 0) and idx.dtype == np.int64  # sorted, no repeats
    np.testing.assert_array_equal(idx, class_balanced_subset(y, per_class=10, seed=1))
    assert not np.array_equal(idx, class_balanced_subset(y, per_class=10, seed=2))
    np.testing.assert_array_equal(class_balanced_subset(torch.from_numpy(y), per_class=10, seed=1), idx)
    assert len(class_balanced_subset(y)) == len(y)  # 500 per class by default: everything here


def test_tsne_shape_determinism_and_settings(blobs) -> None:  # type: ignore[no-untyped-def]
    x, y = blobs
    short = {"early_exaggeration_iter": 100, "n_iter": 150}  # fewer iterations: a faster test
    a = embed(x, "tsne", seed=3, **short)
    b = embed(torch.from_numpy(x), "tsne", seed=3, **short)
    assert a.coords.shape == (90, 2) and a.method == "tsne"
    np.testing.assert_array_equal(a.coords, b.coords)
    assert a.settings["implementation"] == "openTSNE" and a.settings["perplexity"] == 29.666666666666668
    assert a.settings["seed"] == 3 and a.settings["initialization"] == "pca"
    assert a.settings["n_iter"] == 150
    assert not np.allclose(a.coords, embed(x, "tsne", seed=4, **short).coords)
    # the map keeps the three blobs apart: each point's nearest map neighbour shares its class
    d = ((a.coords[:, None] - a.coords[None]) ** 2).sum(-1) + np.eye(90) * 1e9
    assert np.mean(y[d.argmin(1)] == y) > 0.95
    json.dumps(a.to_dict())


def test_tsne_falls_back_to_sklearn(blobs, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    x, _ = blobs
    monkeypatch.setitem(sys.modules, "openTSNE", None)  # import openTSNE -> ImportError
    res = embed(x[:40], "tsne", seed=0, perplexity=5.0, max_iter=250)
    assert res.coords.shape == (40, 2) and res.settings["implementation"] == "scikit-learn"
    assert res.settings["perplexity"] == 5.0
    with pytest.raises(UmaeError, match="openTSNE package"):
        embed(x[:40], "tsne", implementation="opentsne")


@pytest.mark.slow
def test_umap_shape_determinism_and_compile_flag(blobs) -> None:  # type: ignore[no-untyped-def]
    x, _ = blobs
    a = embed(x, "umap", seed=0)  # first call compiles (~15 s)
    assert not umap_needs_compile()
    b = embed(x, "umap", seed=0)
    assert a.coords.shape == (90, 2)
    np.testing.assert_allclose(a.coords, b.coords, rtol=1e-6)
    assert a.settings["n_neighbors"] == 15 and a.settings["min_dist"] == 0.1
    assert a.settings["implementation"] == "umap-learn" and a.settings["seed"] == 0


def test_umap_needs_compile_is_a_module_flag(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setattr(embed_module, "_umap_compiled", False)
    assert umap_needs_compile()
    monkeypatch.setattr(embed_module, "_umap_compiled", True)
    assert not umap_needs_compile()


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda x: embed(x, "pca"), "method must be one of 'tsne', 'umap'"),  # type: ignore[arg-type]
        (lambda x: embed(x[:3], "tsne"), "at least 5 row"),
        (lambda x: embed(x[:, 0], "tsne"), "2-D"),
        (lambda x: embed(np.where(x > 3, np.nan, x), "tsne"), "NaN"),
        (lambda x: embed(x, "tsne", seed=-1), "seed"),
        (lambda x: embed(x, "tsne", implementation="bh"), "implementation must be one of"),
        (lambda x: embed(x, "tsne", not_an_option=3), "bad option"),
        (lambda x: class_balanced_subset(np.ones((3, 2), dtype=int)), "1-D"),
        (lambda x: class_balanced_subset(np.array([0, 1]), per_class=0), "per_class"),
        (lambda x: class_balanced_subset(np.array([0, -1])), ">= 0"),
    ],
)
def test_bad_embed_inputs(blobs, call, match) -> None:  # type: ignore[no-untyped-def]
    x, _ = blobs
    with pytest.raises(UmaeError, match=match):
        call(x)
