"""The evaluation pipeline's numbers: intervals against closed forms, paired differences, the
sentences, recipes, the paper's reference numbers, the map score, and the import rule."""

from __future__ import annotations

import ast
import math
from pathlib import Path

import numpy as np
import pytest

from umae_eval.pipeline.collapse import map_knn_accuracy, per_class_text
from umae_eval.pipeline.intervals import bootstrap_accuracies, interval, wilson_interval
from umae_eval.pipeline.probing import ProbeSummary
from umae_eval.pipeline.recipe import recipe_of
from umae_eval.pipeline.reference import CIFAR10_CLASSES, reference_for
from umae_eval.pipeline.summary import build_summary

Z95 = 1.959963984540054


def _correct(n: int, k: int, rng: np.random.Generator) -> np.ndarray:
    out = np.zeros(n, dtype=bool)
    out[rng.choice(n, size=k, replace=False)] = True
    return out


def test_bootstrap_interval_matches_the_binomial_standard_error() -> None:
    """Percentile bootstrap of a mean of N Bernoulli outcomes: half-width ~ 1.96 sqrt(p(1-p)/N)."""
    rng = np.random.default_rng(0)
    n, k = 1000, 372
    c = _correct(n, k, rng)[None, :]
    boot = bootstrap_accuracies(c, n_boot=4000, seed=1)
    iv = interval(100 * c.mean(), boot[:, 0])
    p = k / n
    half = 100 * Z95 * math.sqrt(p * (1 - p) / n)  # 3.00 points
    assert iv.estimate == pytest.approx(37.2)
    assert (iv.hi - iv.lo) / 2 == pytest.approx(half, rel=0.08)
    assert iv.lo < 37.2 < iv.hi
    # resampling is seeded: the same seed gives the same interval
    again = interval(100 * c.mean(), bootstrap_accuracies(c, n_boot=4000, seed=1)[:, 0])
    assert (again.lo, again.hi) == (iv.lo, iv.hi)


def test_paired_difference_uses_shared_resamples() -> None:
    """Two checkpoints that agree except on 30 of 1000 images (A right, B wrong): the paired
    difference is 3.0 points with the standard error of a mean of 30 ones in 1000, far tighter
    than two independent intervals."""
    rng = np.random.default_rng(2)
    n = 1000
    b = _correct(n, 350, rng)
    a = b.copy()
    a[np.flatnonzero(~b)[:30]] = True
    boot = bootstrap_accuracies(np.stack([a, b]), n_boot=4000, seed=3)
    diff = interval(100 * (a.mean() - b.mean()), boot[:, 0] - boot[:, 1])
    q = 30 / n
    assert diff.estimate == pytest.approx(3.0)
    assert (diff.hi - diff.lo) / 2 == pytest.approx(100 * Z95 * math.sqrt(q * (1 - q) / n), rel=0.12)
    assert diff.excludes(0.0)
    unpaired = interval(0, boot[:, 0]).hi - interval(0, boot[:, 0]).lo
    assert diff.hi - diff.lo < unpaired / 2
    # identical predictions: the difference is exactly 0 in every resample
    same = bootstrap_accuracies(np.stack([b, b]), n_boot=200, seed=0)
    assert np.all(same[:, 0] == same[:, 1])


def test_wilson_interval_closed_form() -> None:
    iv = wilson_interval(50.0, 100)
    assert (iv.lo, iv.hi) == (pytest.approx(40.383, abs=1e-3), pytest.approx(59.617, abs=1e-3))
    edge = wilson_interval(0.0, 20)
    assert edge.lo == pytest.approx(0.0, abs=1e-9) and edge.hi == pytest.approx(16.11, abs=0.01)


def _probe(pred: np.ndarray, y: np.ndarray) -> ProbeSummary:
    return ProbeSummary({"linear_accuracy": float(100 * np.mean(pred == y))}, [],
                        predictions={"linear_accuracy": pred}, y_test=y)


def test_summary_sentences_say_whether_a_difference_is_noise() -> None:
    rng = np.random.default_rng(4)
    y = rng.integers(0, 10, size=1000)
    base = np.where(rng.random(1000) < 0.35, y, (y + 1) % 10)
    close = base.copy()  # right on 80 more images, wrong on 61 more: +1.9 points, but noisy
    wrong, right = np.flatnonzero(base != y), np.flatnonzero(base == y)
    close[wrong[:80]] = y[wrong[:80]]
    close[right[:61]] = (y[right[:61]] + 2) % 10
    far = base.copy()
    far[np.flatnonzero(base != y)[:150]] = y[np.flatnonzero(base != y)[:150]]  # +15 points
    probes = {"MAE": _probe(base, y), "U-MAE": _probe(close, y), "big": _probe(far, y)}
    recipes = {n: recipe_of("timm", {}) for n in probes}
    data = {"n_test": 1000, "class_names": list(CIFAR10_CLASSES), "image_size": [32, 32]}
    s = build_summary(list(probes), recipes, probes, {}, {}, {}, data, n_boot=2000, seed=0)
    assert [h.name for h in s.headlines] == ["big", "U-MAE", "MAE"]
    text = s.sentences()
    umae = next(t for t in text if t.startswith("U-MAE is 1.9 points above MAE in linear accuracy"))
    assert umae.endswith("within test-image noise at 1,000 test images.")
    big = next(t for t in text if t.startswith("big is 15.0 points above MAE"))
    assert big.endswith("beyond test-image noise at 1,000 test images.")
    # no paper number applies: a caption says why, the verdict does not open with it
    assert not any("Table 1" in t for t in text)
    assert "Table 1 (CIFAR-10" in s.reference_note and s.reference_note.startswith("No paper number")
    # three comparisons: no multiple-comparisons note yet; the table-only checkpoint is never compared
    assert not any("multiple comparisons" in t for t in text)
    t = build_summary(list(probes), recipes, probes, {}, {}, {}, data, n_boot=200, seed=0, table_only=["big"])
    assert {(c.better, c.worse) for c in t.comparisons} == {("U-MAE", "MAE")} and t.table_only == ("big",)
    assert [h.name for h in t.headlines] == ["big", "U-MAE", "MAE"]  # still a row of the table
    c = next(c for c in s.comparisons if (c.better, c.worse) == ("U-MAE", "MAE"))
    assert c.difference.lo < 0 < c.difference.hi


def test_summary_without_comparisons_states_the_headline_and_counts_many_comparisons() -> None:
    """One checkpoint (probe): the verdict is its accuracy with its interval, not a note about the
    paper; collapse-report (no probe) never mentions Table 1; many comparisons get a word."""
    rng = np.random.default_rng(5)
    y = rng.integers(0, 10, size=400)
    data = {"n_test": 400, "class_names": list(CIFAR10_CLASSES), "image_size": [32, 32]}
    one = {"MAE": _probe(np.where(rng.random(400) < 0.4, y, (y + 1) % 10), y)}
    s = build_summary(["MAE"], {"MAE": recipe_of("timm", {})}, one, {}, {}, {}, data, n_boot=200, seed=0)
    (first, *_) = s.sentences()
    iv = s.headlines[0].accuracies["linear_accuracy"]
    assert first == (f"MAE: linear accuracy {iv.estimate:.1f}% (95% interval {iv.lo:.1f} to {iv.hi:.1f}) "
                     f"at 400 test images.")
    assert not any("Table 1" in t for t in s.sentences())
    collapse = build_summary(["MAE"], {"MAE": recipe_of("timm", {})}, {}, {"MAE": {"effective_rank": 5.0}}, {},
                             {}, data, n_boot=200, seed=0)
    assert collapse.reference_note == "" and not any("Table 1" in t for t in collapse.sentences())
    names = [f"m{i}" for i in range(4)]
    probes = {n: _probe(np.where(rng.random(400) < 0.3 + 0.1 * i, y, (y + 1) % 10), y) for i, n in enumerate(names)}
    many = build_summary(names, {n: recipe_of("timm", {}) for n in names}, probes, {}, {}, {}, data, n_boot=200,
                         seed=0)
    assert len(many.comparisons) == 6
    assert any(t.startswith("6 paired comparisons in 1 measure,") and "not corrected" in t for t in many.sentences())


def test_claim_table_only_where_the_setting_matches() -> None:
    """Table 1's number beside ours where a row applies, 'U-MAE above MAE' from the paired difference,
    the effective-rank claim from its own interval; nothing where no MAE / U-MAE pair is analysed."""
    from umae_eval.pipeline.reference import Reference

    rng = np.random.default_rng(6)
    y = rng.integers(0, 10, size=1000)
    mae_pred = np.where(rng.random(1000) < 0.46, y, (y + 1) % 10)
    umae_pred = mae_pred.copy()  # the same predictions: a difference of exactly 0
    probes = {"MAE": _probe(mae_pred, y), "U-MAE": _probe(umae_pred, y)}
    recipes = {"MAE": recipe_of("umae", {"method": "mae", "lam": 0.0, "epoch": 20}),
               "U-MAE": recipe_of("umae", {"method": "mae", "lam": 0.01, "epoch": 20})}
    refs = {"MAE": Reference("CIFAR-10", "ViT-Tiny", "MAE", 59.6, differences=("20 epochs, not 2,000",)),
            "U-MAE": Reference("CIFAR-10", "ViT-Tiny", "U-MAE", 68.9, differences=("20 epochs, not 2,000",))}
    ranks = {"MAE": {"effective_rank": 40.0, "rankme": 20.0}, "U-MAE": {"effective_rank": 80.0, "rankme": 60.0}}
    rows = {"MAE": np.tile([40.0, 20.0], (50, 1)) + rng.normal(0, 0.5, (50, 2)),
            "U-MAE": np.tile([80.0, 60.0], (50, 1)) + rng.normal(0, 0.5, (50, 2))}
    data = {"n_test": 1000, "class_names": list(CIFAR10_CLASSES), "image_size": [32, 32]}
    s = build_summary(["MAE", "U-MAE"], recipes, probes, ranks, {}, refs, data, n_boot=500, seed=0,
                      rank_resamples=rows)
    by = {c.claim.split(",")[0].split(" (")[0]: c for c in s.claims}
    acc = 100 * float(np.mean(mae_pred == y))
    assert by["MAE linear-probe accuracy"].paper == "59.6%"
    assert by["MAE linear-probe accuracy"].here.startswith(f"{acc:.1f}% [")
    assert by["MAE linear-probe accuracy"].verdict == "below the paper (this run differs: 20 epochs, not 2,000)"
    lin = by["U-MAE above MAE in linear accuracy"]
    assert lin.paper == "+9.3 points (59.6 -> 68.9)" and lin.here == "0.0 points [0.0, 0.0]"
    assert lin.verdict == "not reproduced: within test-image noise"
    rank = by["U-MAE has a higher effective rank than MAE: less dimensional collapse"]
    assert rank.here.startswith("40.0 [") and rank.verdict == "reproduced"
    alone = build_summary(["MAE"], {"MAE": recipes["MAE"]}, {"MAE": probes["MAE"]}, {}, {}, {}, data, n_boot=100,
                          seed=0)
    assert alone.claims == []


def test_recipe_from_each_kind_of_metadata() -> None:
    umae = recipe_of("umae", {"method": "mae", "lam": 0.01, "unif_form": "code", "epoch": 200,
                              "preset": "cifar10-vit-tiny-p2", "mask_ratio": 0.75})
    assert umae.label() == "U-MAE λ=0.01 e200" and umae.unif_form == "code" and umae.mask_ratio == 0.75
    assert recipe_of("umae", {"method": "mae", "lam": 0.0, "epoch": 3}).label() == "MAE e3"
    assert recipe_of("umae", {"method": "simmim", "lam": 0.01, "epoch": 1}).method == "U-SimMIM"
    official = recipe_of("official-full", {"epochs": 800, "mask_ratio": 0.75, "model": "mae_vit_base_patch16"})
    assert (official.method, official.lam, official.epochs) == ("MAE", 0.0, 800)
    assert recipe_of("u-mae", {"epochs": 200, "lamb": 0.01, "mask_ratio": 0.75}).label() == "U-MAE λ=0.01 e200"
    assert recipe_of("random-init", {"seed": 0}).method == "untrained"
    timm = recipe_of("timm", {})
    assert timm.method is None and timm.label() == "" and timm.source == "none"


def test_reference_only_where_the_setting_matches() -> None:
    cifar = {"class_names": list(CIFAR10_CLASSES), "image_size": [32, 32]}
    tiny = {"embed_dim": 192, "depth": 12, "patch_size": 2}
    ref = reference_for(cifar, tiny, "U-MAE", epochs=2000, mask_ratio=0.75, protocol="mae")
    assert ref is not None and ref.linear_accuracy == 68.9 and ref.differences == ()
    ref = reference_for(cifar, {**tiny, "patch_size": 4}, "MAE", epochs=200, protocol="fast")
    assert ref is not None and ref.linear_accuracy == 59.6
    assert ref.differences == ("200 epochs (paper: 2000)", "patch 4 (paper: 2)",
                               "linear probe 'fast' (paper: MAE's BatchNorm + LARS recipe, --protocol mae)")
    assert reference_for(cifar, {"embed_dim": 96, "depth": 4}, "MAE") is None
    assert reference_for(cifar, tiny, "SimMIM") is None
    cifar100 = {"class_names": [f"c{i}" for i in range(100)], "image_size": [32, 32]}
    assert reference_for(cifar100, tiny, "MAE") is None


def _brute_knn(coords: np.ndarray, labels: np.ndarray, k: int) -> float:
    d = ((coords[:, None, :] - coords[None, :, :]) ** 2).sum(-1)
    np.fill_diagonal(d, np.inf)
    hits = 0
    for i in range(len(coords)):
        nn = np.argsort(d[i], kind="stable")[:k]
        votes = np.bincount(labels[nn], minlength=labels.max() + 1)
        hits += int(np.argmax(votes) == labels[i])
    return 100.0 * hits / len(coords)


def test_map_score_is_leave_one_out_knn_accuracy() -> None:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 4, size=120)
    coords = rng.normal(size=(120, 2)) + labels[:, None] * 1.5
    assert map_knn_accuracy(coords, labels, k=5) == pytest.approx(_brute_knn(coords, labels, 5))
    separated = np.stack([labels * 100.0, np.zeros(120)], axis=1) + rng.normal(size=(120, 2))
    assert map_knn_accuracy(separated, labels) == 100.0
    assert per_class_text(np.repeat(np.arange(3), 100)) == "100 per class"
    assert per_class_text(np.array([0, 0, 1])) == "1-2 per class"


def test_no_command_module_imports_another() -> None:
    """umae_eval/commands/ holds one module per command and nothing they share."""
    folder = Path(__file__).resolve().parents[1] / "umae_eval" / "commands"
    for path in folder.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([node.module or ""] if isinstance(node, ast.ImportFrom)
                     else [a.name for a in node.names] if isinstance(node, ast.Import) else [])
            for name in names:
                assert not name.startswith("umae_eval.commands"), f"{path.name} imports {name}"
            if isinstance(node, ast.ImportFrom) and node.module == "umae_eval":
                assert all(a.name != "commands" for a in node.names), path.name


def test_summary_without_probes_ranks_by_effective_rank_with_paired_intervals() -> None:
    rng = np.random.default_rng(5)
    boot_a = rng.normal(0.0, 0.2, size=(200, 2))
    shared = rng.normal(0.0, 1.0, size=(200, 2))
    recipes = {n: recipe_of("timm", {}) for n in ("low", "high")}
    ranks = {"low": {"effective_rank": 40.0, "rankme": 20.0}, "high": {"effective_rank": 41.0, "rankme": 78.0}}
    # resamples: a large shared part (the same test images move both) and a small own part,
    # shifted below the estimate as resampling with replacement does
    boots = {"low": shared + boot_a + np.array([39.0, 19.5]),
             "high": shared + rng.normal(0.0, 0.2, size=(200, 2)) + np.array([40.0, 77.0])}
    data = {"n_test": 1000, "class_names": [f"c{i}" for i in range(7)], "image_size": [32, 32]}
    s = build_summary(["low", "high"], recipes, {}, ranks, {"low": 96, "high": 96}, {}, data,
                      n_boot=2000, seed=0, rank_resamples=boots)
    assert s.metric == "effective_rank" and s.n_boot_ranks == 200
    assert [h.name for h in s.headlines] == ["high", "low"]
    er = s.headlines[0].rank_intervals["effective_rank"]
    assert er.lo < 41.0 < er.hi  # centred on the estimate although the resamples sit 1 below it
    c = next(c for c in s.comparisons if c.metric == "effective_rank")
    d = boots["high"][:, 0] - boots["low"][:, 0]
    assert (c.difference.lo, c.difference.hi) == pytest.approx(tuple(np.percentile(d - d.mean() + 1.0, [2.5, 97.5])))
    assert c.beyond_noise  # paired: the shared part cancels, unpaired intervals would overlap
    assert s.sentences()[0].startswith("high is 1.0 above low in effective rank (95% interval ")
    assert "points" not in s.sentences()[0]
    assert s.to_json()["rank_bootstrap_resamples"] == 200


def test_one_decimal_never_prints_minus_zero() -> None:
    from umae_eval.pipeline.summary import one_decimal

    assert [one_decimal(v) for v in (-0.04, -0.05001, 0.04, 2.25, -1.26)] == ["0.0", "-0.1", "0.0", "2.2", "-1.3"]


def test_summary_of_one_checkpoint_without_probes_states_its_rank_with_interval() -> None:
    boots = {"only": np.random.default_rng(0).normal(40.0, 0.5, size=(200, 2))}
    data = {"n_test": 500, "class_names": [f"c{i}" for i in range(7)], "image_size": [32, 32]}
    s = build_summary(["only"], {"only": recipe_of("timm", {})}, {}, {"only": {"effective_rank": 41.0, "rankme": 30.0}},
                      {"only": 96}, {}, data, n_boot=2000, seed=0, rank_resamples=boots)
    assert s.metric == "effective_rank" and s.comparisons == []
    iv = s.headlines[0].rank_intervals["effective_rank"]
    first = s.sentences()[0]
    assert first.startswith("Effective rank of the test features (of 96 feature dimensions): only 41.0 (")
    assert f"({iv.lo:.1f} to {iv.hi:.1f})" in first
