"""Out-of-core probes: the blocked paths against the in-memory ones and independent implementations."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from umae_eval.errors import UmaeError
from umae_eval.probes import knn_probe, linear_probe
from umae_eval.probes import blocks as blocks_mod
from umae_eval.probes.blocks import (
    MEMORY_BUDGET_BYTES,
    column_stats,
    knn_memory_bytes,
    linear_memory_bytes,
    resolve_path,
)
from umae_eval.probes.knn import knn_search
from umae_eval.probes.knn_blocked import knn_search_blocked
from umae_eval.probes.linear_blocked import balanced_subset

CPU = torch.device("cpu")


def _mixture(n: int, d: int, c: int, seed: int, sep: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    means = np.random.default_rng(99).standard_normal((c, d)) * sep
    y = rng.integers(0, c, n)
    return (rng.standard_normal((n, d)) + means[y] + 0.5).astype(np.float32), y


def _memmap16(tmp_path, name: str, x: np.ndarray) -> np.ndarray:
    path = tmp_path / f"{name}.npy"
    mm = np.lib.format.open_memmap(path, mode="w+", dtype=np.float16, shape=x.shape)
    mm[:] = x.astype(np.float16)
    mm.flush()
    del mm
    return np.load(path, mmap_mode="r")


def _numpy_neighbours(xtr: np.ndarray, xte: np.ndarray, k: int) -> np.ndarray:
    """Independent reference: float64 cosine, order by similarity desc then index asc."""
    a = xtr.astype(np.float64)
    a /= np.linalg.norm(a, axis=1, keepdims=True)
    q = xte.astype(np.float64)
    q /= np.linalg.norm(q, axis=1, keepdims=True)
    s = q @ a.T
    idx = np.arange(a.shape[0])
    return np.stack([np.lexsort((idx, -row))[:k] for row in s])


# ------------------------------------------------------------------------------- kNN
@pytest.mark.parametrize("block_rows", [1, 37, 256, 10_000])
def test_blocked_knn_neighbours_equal_in_memory_and_numpy(block_rows: int) -> None:
    xtr, _ = _mixture(600, 12, 5, 0)
    xte, _ = _mixture(90, 12, 5, 1)
    s_b, i_b = knn_search_blocked(xtr, xte, 15, block_rows, CPU)
    for backend in ("torch", "faiss"):
        s_m, i_m = knn_search(xtr, xte, 15, backend=backend)
        assert torch.equal(i_b, i_m), backend
        assert torch.allclose(s_b, s_m, atol=1e-6)
    np.testing.assert_array_equal(i_b.numpy(), _numpy_neighbours(xtr, xte, 15))


def test_knn_ties_go_to_the_lower_index_on_both_paths() -> None:
    # rows 3, 40 and 77 are the same vector, each in another block of 32: all three tie
    rng = np.random.default_rng(0)
    xtr = rng.standard_normal((100, 6)).astype(np.float32)
    xtr[40] = xtr[3]
    xtr[77] = xtr[3]
    xte = xtr[[3]] * 2.0  # same direction: similarity 1 to all three copies
    _, i_b = knn_search_blocked(xtr, xte, 3, 32, CPU)
    _, i_m = knn_search(xtr, xte, 3, backend="torch")
    assert i_b.tolist() == i_m.tolist() == [[3, 40, 77]]


def test_knn_probe_blocked_on_float16_memmap_equals_memory(tmp_path) -> None:
    xtr, ytr = _mixture(700, 16, 6, 2)
    xte, yte = _mixture(150, 16, 6, 3)
    mtr, mte = _memmap16(tmp_path, "tr", xtr), _memmap16(tmp_path, "te", xte)
    mem = knn_probe(mtr, ytr, mte, yte, ks=(1, 5, 20), path="memory", return_neighbours=True)
    blk = knn_probe(mtr, ytr, mte, yte, ks=(1, 5, 20), path="blocked", block_rows=64, return_neighbours=True)
    np.testing.assert_array_equal(mem.extras["neighbours"], blk.extras["neighbours"])
    assert mem.extras["accuracy_by_k"] == blk.extras["accuracy_by_k"]
    assert 40.0 < blk.accuracy < 100.0
    assert (mem.settings["path"], blk.settings["path"], blk.settings["block_rows"]) == ("memory", "blocked", 64)
    for k in (1, 5, 20):
        np.testing.assert_array_equal(mem.test_predictions[f"knn_accuracy@{k}"],
                                      blk.test_predictions[f"knn_accuracy@{k}"])


# ---------------------------------------------------------------------------- linear
def test_blocked_linear_reaches_the_in_memory_optimum() -> None:
    # select_rows >= N: the same split and grid walk, then the refit over blocks of 97 rows
    xtr, ytr = _mixture(900, 10, 4, 4, sep=0.5)
    xte, yte = _mixture(300, 10, 4, 5, sep=0.5)
    kw = dict(weight_decays=(1e-1, 1e-3), tol=1e-6)
    mem = linear_probe(xtr, ytr, xte, yte, path="memory", **kw)
    blk = linear_probe(xtr, ytr, xte, yte, path="blocked", block_rows=97, refit_max_iter=1000, **kw)
    assert blk.extras["refit_converged"]
    assert blk.settings["path"] == "blocked" and mem.settings["path"] == "memory"
    assert blk.extras["chosen_weight_decay"] == mem.extras["chosen_weight_decay"]
    assert [p["val_accuracy"] for p in blk.extras["val_curve"]] == [p["val_accuracy"] for p in mem.extras["val_curve"]]
    assert blk.extras["refit_loss"] == pytest.approx(mem.extras["refit_loss"], rel=1e-5)
    assert abs(blk.accuracy - mem.accuracy) <= 100.0 / len(yte)  # at most one test row flips
    assert blk.extras["train_accuracy"] == pytest.approx(mem.extras["train_accuracy"], abs=100.0 / len(ytr))
    assert blk.extras["refit_passes"] >= blk.extras["refit_iterations"]


def test_blocked_refit_minimises_the_objective_sklearn_minimises(tmp_path) -> None:
    # one weight decay, float16 memmap input, selection subset smaller than N: the refit is on all rows
    sklearn = pytest.importorskip("sklearn.linear_model")
    xtr, ytr = _mixture(800, 8, 3, 6, sep=0.4)
    xte, yte = _mixture(200, 8, 3, 7, sep=0.4)
    mtr, mte = _memmap16(tmp_path, "tr", xtr), _memmap16(tmp_path, "te", xte)
    wd = 1e-2
    blk = linear_probe(mtr, ytr, mte, yte, path="blocked", weight_decays=(wd,), val_fraction=0.0,
                       block_rows=128, select_rows=100, tol=1e-7, refit_max_iter=1000)
    x16 = np.asarray(mtr, dtype=np.float64)
    mean, std = x16.mean(0), x16.std(0)
    z = (x16 - mean) / std
    clf = sklearn.LogisticRegression(C=1.0 / (wd * len(ytr)), tol=1e-10, max_iter=5000).fit(z, ytr)
    logits = z @ clf.coef_.T + clf.intercept_
    logp = logits - np.log(np.exp(logits - logits.max(1, keepdims=True)).sum(1, keepdims=True)) - logits.max(1, keepdims=True)
    ref_loss = -logp[np.arange(len(ytr)), ytr].mean() + 0.5 * wd * (clf.coef_ ** 2).sum()
    assert blk.extras["refit_loss"] == pytest.approx(ref_loss, rel=1e-5)
    zte = (np.asarray(mte, dtype=np.float64) - mean) / std
    ref_acc = 100.0 * np.mean(clf.predict(zte) == yte)
    assert abs(blk.accuracy - ref_acc) <= 100.0 / len(yte)


def test_blocked_linear_never_reads_more_than_a_block(monkeypatch) -> None:
    xtr, ytr = _mixture(1000, 8, 4, 8)
    xte, yte = _mixture(100, 8, 4, 9)
    seen: list[int] = []
    real = blocks_mod.read_block

    def spy(x, start, stop, device):  # type: ignore[no-untyped-def]
        seen.append(stop - start)
        return real(x, start, stop, device)

    monkeypatch.setattr(blocks_mod, "read_block", spy)
    r = linear_probe(xtr, ytr, xte, yte, path="blocked", block_rows=128, select_rows=200,
                     weight_decays=(1e-1, 1e-2))
    assert seen and max(seen) <= 128
    assert r.settings["num_select"] <= 200 + 4 and r.settings["num_fit"] + r.settings["num_val"] == r.settings["num_select"]


def test_balanced_subset_takes_the_same_number_of_each_class() -> None:
    y = np.repeat(np.arange(5), [50, 40, 3, 60, 47])
    rows = balanced_subset(y, 5, 50, seed=0)
    counts = np.bincount(y[rows], minlength=5)
    assert counts.tolist() == [10, 10, 3, 10, 10]
    assert np.all(np.diff(rows) > 0)
    np.testing.assert_array_equal(balanced_subset(y, 5, 500, seed=0), np.arange(len(y)))


def test_column_stats_match_numpy_in_float64() -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((1001, 5)) * [1, 10, 0.1, 3, 1] + 1000.0).astype(np.float32)
    mean, std = column_stats(x, 64, CPU)
    # per-block sums are float32 (float32 rounding of a mean of 1000: ~1e-7 relative); the merge
    # is float64, so the error does not grow with the number of blocks, and the large shared
    # mean does not cancel the small variances (std of 0.1 on a mean of 1000 stays ~1e-5 exact)
    np.testing.assert_allclose(mean.numpy(), x.astype(np.float64).mean(0), rtol=1e-7)
    np.testing.assert_allclose(std.numpy(), x.astype(np.float64).std(0), rtol=1e-5)
    naive = np.sqrt(np.maximum((x.astype(np.float32) ** 2).mean(0) - x.astype(np.float32).mean(0) ** 2, 0))
    assert np.abs(naive - x.astype(np.float64).std(0)).max() > 1e-3  # the cancellation the merge avoids


def test_column_stats_leave_a_float32_tensor_input_untouched() -> None:
    x = torch.randn(300, 4) + 5.0
    before = x.clone()
    column_stats(x, 64, CPU)
    assert torch.equal(x, before)


# ----------------------------------------------------------------------- path choice
def test_auto_path_follows_the_memory_model() -> None:
    # the 131,072 x 768 x 1000 probe measured 2.9 GB; the formula must agree within 10%
    assert linear_memory_bytes(131072, 10000, 768, 1000) == pytest.approx(2.9e9, rel=0.1)
    assert resolve_path("auto", linear_memory_bytes(131072, 50000, 768, 1000)) == "memory"
    assert resolve_path("auto", linear_memory_bytes(1281167, 50000, 768, 1000)) == "blocked"
    assert resolve_path("auto", knn_memory_bytes(1281167, 50000, 768)) == "blocked"
    assert resolve_path("auto", MEMORY_BUDGET_BYTES) == "memory"
    assert resolve_path("memory", 10 * MEMORY_BUDGET_BYTES) == "memory"
    assert resolve_path("blocked", 0) == "blocked"


def test_bad_path_options_name_the_fix() -> None:
    xtr, ytr = _mixture(60, 4, 2, 0)
    with pytest.raises(UmaeError, match=r"^path must be one of auto, memory, blocked, got 'disk'$"):
        linear_probe(xtr, ytr, xtr, ytr, path="disk")
    with pytest.raises(UmaeError, match="path='blocked' runs the 'fast' protocol on the torch backend only"):
        linear_probe(xtr, ytr, xtr, ytr, path="blocked", backend="sklearn")
    with pytest.raises(UmaeError, match="path='blocked' runs the 'fast' protocol only"):
        linear_probe(xtr, ytr, xtr, ytr, path="blocked", protocol="mae")
    with pytest.raises(UmaeError, match="block_rows must be an integer >= 1, got 0"):
        knn_probe(xtr, ytr, xtr, ytr, path="blocked", block_rows=0)
    with pytest.raises(UmaeError, match="use backend='torch' or 'auto', or path='memory' for faiss"):
        knn_probe(xtr, ytr, xtr, ytr, path="blocked", backend="faiss")


def test_nan_in_a_late_block_of_a_memmap_is_caught(tmp_path) -> None:
    xtr, ytr = _mixture(300, 4, 2, 0)
    xtr[-1, 2] = np.nan
    with pytest.raises(UmaeError, match="train_x contains NaN or infinite values"):
        knn_probe(_memmap16(tmp_path, "tr", xtr), ytr, xtr[:10], ytr[:10], path="blocked")


def test_mean_classifier_on_a_float16_memmap_reads_blocks_and_matches_float32(tmp_path, monkeypatch) -> None:
    from umae_eval.probes import mean as mean_mod
    from umae_eval.probes import mean_classifier

    xtr, ytr = _mixture(500, 6, 3, 10, sep=0.5)
    xte, yte = _mixture(120, 6, 3, 11, sep=0.5)
    mtr = _memmap16(tmp_path, "tr", xtr)
    ref = mean_classifier(np.asarray(mtr, dtype=np.float32), ytr, xte, yte)
    monkeypatch.setattr(mean_mod, "_BLOCK_ROWS", 64)
    seen: list[int] = []
    real = mean_mod.read_block
    monkeypatch.setattr(mean_mod, "read_block",
                        lambda x, a, b, dev, dt: seen.append(b - a) or real(x, a, b, dev, dt))
    got = mean_classifier(mtr, ytr, xte, yte)
    assert max(seen) == 64
    np.testing.assert_array_equal(got.test_predictions["mean_classifier_accuracy"],
                                  ref.test_predictions["mean_classifier_accuracy"])
    assert got.extras["train_accuracy"] == ref.extras["train_accuracy"]


def test_run_probes_records_the_path_each_probe_took(tmp_path) -> None:
    from umae_eval.analysis import FeatureSet
    from umae_eval.pipeline.probing import run_probes

    xtr, ytr = _mixture(300, 6, 3, 12)
    xte, yte = _mixture(60, 6, 3, 13)
    fs = FeatureSet(train=_memmap16(tmp_path, "tr", xtr), test=xte, y_train=ytr, y_test=yte, pool="cls")
    got = {probe_path: run_probes(fs, methods=("linear", "knn"), ks=(5,), probe_path=probe_path)
           for probe_path in ("memory", "blocked")}
    for probe_path, summary in got.items():
        assert [r["settings"]["path"] for r in summary.results] == [probe_path, probe_path]
    np.testing.assert_array_equal(got["memory"].predictions["knn_accuracy@5"], got["blocked"].predictions["knn_accuracy@5"])
    assert abs(got["memory"].accuracies["linear_accuracy"] - got["blocked"].accuracies["linear_accuracy"]) <= 100 / 60


def test_blocked_refit_stops_at_its_iteration_cap_and_says_so() -> None:
    xtr, ytr = _mixture(600, 10, 4, 14, sep=0.3)
    xte, yte = _mixture(100, 10, 4, 15, sep=0.3)
    kw = dict(path="blocked", weight_decays=(1e-4,), val_fraction=0.0, select_rows=40, block_rows=100, tol=1e-8)
    capped = linear_probe(xtr, ytr, xte, yte, refit_max_iter=2, **kw)
    full = linear_probe(xtr, ytr, xte, yte, refit_max_iter=1000, **kw)
    assert capped.extras["refit_iterations"] == 2 and not capped.extras["refit_converged"]
    assert capped.settings["refit_max_iter"] == 2
    assert full.extras["refit_iterations"] > 2
    assert full.extras["refit_loss"] < capped.extras["refit_loss"]


# ------------------------------------------------------------- refit: subset-corrected steps
def _memory_optimum(xtr, ytr, xte, yte, wd):  # type: ignore[no-untyped-def]
    return linear_probe(xtr, ytr, xte, yte, path="memory", weight_decays=(wd,), val_fraction=0.0, tol=1e-7)


def test_corrected_refit_reaches_the_in_memory_optimum_in_fewer_passes_than_lbfgs() -> None:
    # 100 classes, a 1,000-row class-balanced subset of 8,000 rows, weight decay 1e-2: the subset
    # models the objective well enough that corrected steps reach a 1e-6 gradient tolerance in
    # fewer passes than plain L-BFGS (measured 8 passes with the mixing, 11 without, 14 for plain
    # L-BFGS with the class-curvature preconditioner; 5 and 10 at tol 1e-4 before it)
    xtr, ytr = _mixture(8000, 32, 100, 21, sep=0.3)
    xte, yte = _mixture(400, 32, 100, 22, sep=0.3)
    mem = _memory_optimum(xtr, ytr, xte, yte, 1e-2)
    kw = dict(path="blocked", weight_decays=(1e-2,), val_fraction=0.0, select_rows=1000, block_rows=2000,
              tol=1e-6, refit_max_iter=50)
    blk = linear_probe(xtr, ytr, xte, yte, **kw)
    assert blk.extras["refit_converged"]
    steps = blk.extras["refit_steps"]
    assert steps[0] == "corrected" and set(steps) == {"corrected", "mixed"}  # nothing rejected here
    assert len(blk.extras["refit_inner_iterations"]) == len(steps)
    assert blk.extras["refit_loss"] == pytest.approx(mem.extras["refit_loss"], rel=1e-5)
    assert abs(blk.accuracy - mem.accuracy) <= 2 * 100.0 / len(yte)
    import umae_eval.probes.linear_blocked as lbk
    from umae_eval.probes.linear_lbfgs import fit_lbfgs
    from umae_eval.probes.linear_refit import RefitResult, refit_corrected

    def plain(full, z_sub, y_sub, wd, pre, w, b, max_iter, tol, **_):  # type: ignore[no-untyped-def]
        fit = fit_lbfgs(full, wd, pre, w, b, max_iter, tol)
        return RefitResult(fit.w, fit.b, fit.loss, fit.iterations, fit.converged, ["lbfgs"] * fit.iterations)

    got = {}
    def only(**fixed):  # type: ignore[no-untyped-def]
        return lambda *a, **_: refit_corrected(*a, **fixed)  # the probe's own forcing / history replaced

    for name, refit in [("lbfgs", plain), ("unmixed", only(history=0)), ("exact inner", only(forcing=0.0))]:
        with pytest.MonkeyPatch.context() as mp:
            mp.setattr(lbk, "refit_corrected", refit)
            got[name] = linear_probe(xtr, ytr, xte, yte, **kw)
        assert got[name].extras["refit_converged"]
        assert got[name].extras["refit_loss"] == pytest.approx(mem.extras["refit_loss"], rel=1e-5)
        assert abs(got[name].accuracy - mem.accuracy) <= 2 * 100.0 / len(yte)
    # plain L-BFGS from the same start (the refit before the corrected steps) needs more passes,
    # and so do the corrected steps without the mixing
    assert got["lbfgs"].extras["refit_passes"] >= blk.extras["refit_passes"] + 2
    assert got["unmixed"].extras["refit_passes"] >= blk.extras["refit_passes"] + 2
    assert set(got["unmixed"].extras["refit_steps"]) == {"corrected"}
    # the loose subset solves take fewer in-memory iterations than solving each to the tolerance
    assert sum(blk.extras["refit_inner_iterations"]) < sum(got["exact inner"].extras["refit_inner_iterations"])


def test_anderson_mixing_solves_an_affine_fixed_point_map_exactly() -> None:
    # G(x) = A x + c with a contraction A (n = 3): from n + 1 points with independent differences,
    # type-II Anderson mixing returns the fixed point (I - A)^-1 c (it is GMRES on (I - A) x = c)
    from umae_eval.probes.linear_refit import _anderson

    rng = np.random.default_rng(0)
    a = torch.from_numpy(0.3 * rng.standard_normal((3, 3)))
    c = torch.from_numpy(rng.standard_normal(3))
    points = [torch.from_numpy(rng.standard_normal(3)) for _ in range(4)]
    residuals = [a @ x + c - x for x in points]
    fixed = torch.linalg.solve(torch.eye(3, dtype=torch.float64) - a, c)
    torch.testing.assert_close(_anderson(points, residuals), fixed, rtol=1e-10, atol=1e-10)
    # with fewer points than n + 1 it is not exact (and not always better than G(x_k): that is
    # why the refit measures every mixed point before keeping it)
    assert float((_anderson(points[-2:], residuals[-2:]) - fixed).norm()) > 1e-3


def test_a_rejected_mix_falls_back_to_the_corrected_point_and_still_converges() -> None:
    # a mixing that extrapolates far off (monkeypatched): the full objective rises, so the pass
    # is spent and the plain corrected point is measured and kept; after MIX_REJECTIONS such
    # passes the refit goes on unmixed, and still converges
    import umae_eval.probes.linear_refit as lr

    xtr, ytr = _mixture(2000, 12, 10, 31, sep=0.3)
    xte, yte = _mixture(200, 12, 10, 32, sep=0.3)
    mem = _memory_optimum(xtr, ytr, xte, yte, 1e-2)
    kw = dict(path="blocked", weight_decays=(1e-2,), val_fraction=0.0, select_rows=200, block_rows=500,
              tol=1e-6, refit_max_iter=100)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(lr, "_anderson", lambda points, residuals: points[-1] + 50.0 * residuals[-1])
        blk = linear_probe(xtr, ytr, xte, yte, **kw)
    steps = blk.extras["refit_steps"]
    assert lr.MIX_REJECTIONS == 2
    assert steps[:5] == ["corrected", "mixed (rejected)", "corrected", "mixed (rejected)", "corrected"]
    assert set(steps[5:]) == {"corrected"}
    assert blk.extras["refit_converged"]
    assert blk.extras["refit_passes"] == len(steps) + 1  # every listed step cost one pass, plus the start
    assert blk.extras["refit_loss"] == pytest.approx(mem.extras["refit_loss"], rel=1e-5)


def test_a_runaway_corrected_step_falls_back_to_lbfgs_and_still_reaches_the_optimum() -> None:
    # a tiny weight decay on a 24-row subset of well-separated classes: the subset alone is
    # separable, its corrected solve runs away, and L-BFGS on all rows takes over
    xtr, ytr = _mixture(1200, 10, 4, 23, sep=1.5)
    xte, yte = _mixture(300, 10, 4, 24, sep=1.5)
    mem = _memory_optimum(xtr, ytr, xte, yte, 1e-5)
    blk = linear_probe(xtr, ytr, xte, yte, path="blocked", weight_decays=(1e-5,), val_fraction=0.0,
                       select_rows=24, block_rows=300, tol=1e-6, refit_max_iter=2000)
    steps = blk.extras["refit_steps"]
    assert "corrected (rejected)" in steps and steps[-1] == "lbfgs"
    assert blk.extras["refit_converged"]
    assert blk.extras["refit_loss"] == pytest.approx(mem.extras["refit_loss"], rel=1e-4, abs=1e-6)
    assert abs(blk.accuracy - mem.accuracy) <= 100.0 / len(yte)


def test_corrected_step_with_the_whole_data_as_subset_is_one_newton_like_solve() -> None:
    # subset = all rows: the corrected objective is the objective itself, so one step solves it
    import umae_eval.probes.linear_lbfgs as lb
    from umae_eval.probes.linear_refit import refit_corrected

    x, y = _mixture(500, 6, 3, 25, sep=0.5)
    z = torch.from_numpy((x - x.mean(0)) / x.std(0))
    yt = torch.from_numpy(y)
    passes = []

    def full(w, b):  # type: ignore[no-untyped-def]
        passes.append(1)
        return lb._loss_and_grad(z, yt, w, b, 1e-2)

    r = refit_corrected(full, z, yt, 1e-2, lb._Preconditioner(z, 3), torch.zeros(3, 6), torch.zeros(3), 10, 1e-4,
                        inner_max_iter=500, forcing=0.0)  # each subset solve to the tolerance itself
    assert r.converged and r.steps[0] == "corrected" and set(r.steps) <= {"corrected", "mixed"}
    # float32: the inner solve stops at the tolerance of its own (rounded) gradient, so a second
    # step may be needed to meet it on the recomputed full gradient, never more
    assert len(r.steps) <= 2 and len(passes) == len(r.steps) + 1


# -------------------------------------------------- the default tolerance at many classes
def _two_hundred_classes() -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(0)
    c, d = 200, 32
    means = rng.standard_normal((c, d)) * 0.5
    ytr, yte = rng.integers(0, c, 4000), rng.integers(0, c, 4000)
    xtr = (means[ytr] + rng.standard_normal((4000, d))).astype(np.float32)
    xte = (means[yte] + rng.standard_normal((4000, d))).astype(np.float32)
    return xtr, ytr, xte, yte


def test_default_tol_is_sklearns_up_to_ten_classes_and_scales_as_one_over_c_above() -> None:
    from umae_eval.probes.linear import default_tol

    assert default_tol(2) == default_tol(10) == 1e-4
    assert default_tol(100) == pytest.approx(1e-5)
    assert default_tol(1000) == pytest.approx(1e-6)


def test_default_tol_reaches_the_optimum_a_fixed_1e_4_stops_short_of_at_200_classes() -> None:
    # measured: tol 1e-4 stops at loss 1.414557 after 32 iterations, the default (5e-6) at
    # 1.4135095 after 81; tol 1e-8 stops at 1.4135085 (float32's gradient floor, not converged)
    xtr, ytr, xte, yte = _two_hundred_classes()
    kw = dict(path="memory", weight_decays=(1e-4,), val_fraction=0.0, max_iter=5000)
    fixed = linear_probe(xtr, ytr, xte, yte, tol=1e-4, **kw)
    default = linear_probe(xtr, ytr, xte, yte, **kw)
    ref = linear_probe(xtr, ytr, xte, yte, tol=1e-8, **kw)
    assert default.settings["tol"] == pytest.approx(5e-6)
    assert default.settings["tol_rule"].startswith("1e-4 * min(1, 10 / num_classes)")
    assert fixed.settings["tol_rule"] == "given"
    assert default.extras["refit_loss"] == pytest.approx(ref.extras["refit_loss"], rel=1e-6)
    assert fixed.extras["refit_loss"] - ref.extras["refit_loss"] > 1e-4  # the control: 1e-4 is short of it


def test_blocked_refit_with_default_cap_and_tolerance_matches_the_memory_path_at_200_classes() -> None:
    # weight decay 1e-4 on a 1,000-row subset (5 rows per class): the corrected step is rejected
    # and L-BFGS takes about 85 passes, which the old default cap of 8 cut short (1.6 points of
    # test accuracy off the memory path's optimum)
    xtr, ytr, xte, yte = _two_hundred_classes()
    kw = dict(weight_decays=(1e-4,), val_fraction=0.0)
    mem = linear_probe(xtr, ytr, xte, yte, path="memory", **kw)
    blk = linear_probe(xtr, ytr, xte, yte, path="blocked", block_rows=1024, select_rows=1000, **kw)
    assert blk.settings["refit_max_iter"] == 100
    assert blk.extras["refit_converged"]
    assert blk.extras["refit_loss"] == pytest.approx(mem.extras["refit_loss"], rel=1e-5)
    differ = int((blk.test_predictions["linear_accuracy"] != mem.test_predictions["linear_accuracy"]).sum())
    assert differ <= 4  # of 4,000: near-ties only



def test_with_every_row_in_the_subset_the_refit_is_one_exact_corrected_step() -> None:
    # subset = train (N <= select_rows): the corrected objective is the objective, so the probe
    # solves it exactly once instead of loosely and mixed (measured 1 step against 5 at 16k rows)
    xtr, ytr = _mixture(1500, 16, 30, 51, sep=0.3)
    xte, yte = _mixture(300, 16, 30, 52, sep=0.3)
    mem = _memory_optimum(xtr, ytr, xte, yte, 1e-3)
    blk = linear_probe(xtr, ytr, xte, yte, path="blocked", weight_decays=(1e-3,), val_fraction=0.0,
                       select_rows=5000, block_rows=500, tol=1e-6)
    assert blk.extras["refit_converged"] and blk.extras["refit_steps"] == ["corrected"]
    assert blk.extras["refit_passes"] == 2  # the start, then the step
    assert blk.extras["refit_loss"] == pytest.approx(mem.extras["refit_loss"], rel=1e-6)
