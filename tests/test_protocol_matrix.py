"""The protocol matrix and the layer-wise summary: intervals and paired differences, recomputed here."""

from __future__ import annotations

import numpy as np

from umae_eval.pipeline.layers import BlockResult, summarise_layers
from umae_eval.pipeline.matrix import Outcome, build_matrix
from umae_eval.pipeline.probing import ProbeSummary


def manual_boot(values: np.ndarray, n_boot: int, seed: int) -> np.ndarray:
    """Resample the columns of (C, N) values n_boot times: (n_boot, C) percent (written out)."""
    rng = np.random.default_rng(seed)
    n = values.shape[1]
    out = []
    for start in range(0, n_boot, 200):  # the library draws in chunks of 200 resamples
        idx = rng.integers(0, n, size=(min(200, n_boot - start), n))
        out.append(np.stack([values[:, i].mean(axis=1) for i in idx]) * 100.0)
    return np.concatenate(out)


def test_matrix_cells_and_paired_differences_match_a_manual_bootstrap() -> None:
    rng = np.random.default_rng(0)
    n = 300
    y_a = rng.random(n) < 0.6
    y_b = rng.random(n) < 0.7
    draws_a = rng.random((3, n)) < 0.4  # three low-shot draws
    draws_b = rng.random((3, n)) < 0.5
    outcomes = {
        "MAE": {"linear_accuracy": Outcome(y_a.astype(float), {"block": 5}),
                "linear_accuracy@1%": Outcome(draws_a.mean(0), {"block": 5}, list(100 * draws_a.mean(1)))},
        "U-MAE": {"linear_accuracy": Outcome(y_b.astype(float), {"block": 5}),
                  "linear_accuracy@1%": Outcome(draws_b.mean(0), {"block": 5}, list(100 * draws_b.mean(1)))},
    }
    m = build_matrix(outcomes, {"linear_accuracy": "linear", "linear_accuracy@1%": "linear on 1%"},
                     ["linear_accuracy", "linear_accuracy@1%", "missing"], n_boot=400, seed=3)
    assert m is not None
    assert [p["name"] for p in m.protocols] == ["linear_accuracy", "linear_accuracy@1%"]
    vals = np.stack([y_a, y_b, draws_a.mean(0), draws_b.mean(0)]).astype(float)
    boot = manual_boot(vals, 400, 3)
    cell = m.cells[("U-MAE", "linear_accuracy")]["accuracy"]
    assert cell.estimate == 100 * y_b.mean()
    np.testing.assert_allclose([cell.lo, cell.hi], np.percentile(boot[:, 1], [2.5, 97.5]))
    low = m.cells[("MAE", "linear_accuracy@1%")]
    np.testing.assert_allclose(low["accuracy"].estimate, 100 * draws_a.mean())
    np.testing.assert_allclose(low["spread"], np.std(100 * draws_a.mean(1), ddof=1))
    d = next(x for x in m.differences if x.protocol == "linear_accuracy@1%")
    assert (d.name, d.baseline) == ("U-MAE", "MAE")  # each checkpoint minus the first given
    np.testing.assert_allclose(d.difference.estimate, 100 * (draws_b.mean() - draws_a.mean()))
    np.testing.assert_allclose([d.difference.lo, d.difference.hi],
                               np.percentile(boot[:, 3] - boot[:, 2], [2.5, 97.5]))
    assert d.sentence().startswith("linear on 1%: U-MAE minus MAE is ")
    assert len(m.rows()) == 4 and {r["protocol"] for r in m.rows()} == {"linear_accuracy", "linear_accuracy@1%"}


def _block(block: int, correct: np.ndarray, val: float) -> BlockResult:
    y = np.zeros(len(correct), dtype=np.int64)
    pred = np.where(correct, 0, 1)
    probes = ProbeSummary({"linear_accuracy": 100 * correct.mean()},
                          [{"method": "linear", "extras": {"val_curve": [{"val_accuracy": val - 1},
                                                                         {"val_accuracy": val}]}}],
                          predictions={"linear_accuracy": pred}, y_test=y)
    return BlockResult(block, probes, {"effective_rank": 10.0 + block, "rankme": 5.0 + block})


def test_best_block_is_chosen_on_validation_not_test() -> None:
    rng = np.random.default_rng(1)
    n = 200
    # block 1 is best on test, block 0 on the probe's validation split: block 0 must win
    sweeps = {"A": [_block(0, rng.random(n) < 0.5, val=70.0), _block(1, rng.random(n) < 0.8, val=60.0)]}
    s = summarise_layers(sweeps, n_boot=200, seed=0, n_test=n)
    assert s.best["A"].block == 0 and s.best["A"].chosen_by == "linear validation accuracy"
    row = next(r for r in s.rows if r["block"] == 1 and r["metric"] == "linear_accuracy")
    assert row["estimate"] == 100 * (sweeps["A"][1].probes.correct("linear_accuracy")).mean()
    ranks = [r for r in s.rows if r["metric"] == "effective_rank"]
    assert [r["estimate"] for r in ranks] == [10.0, 11.0] and ranks[0]["lo"] is None
    assert "best block 0 (chosen by linear validation accuracy)" in s.sentences()[0]


def test_run_analysis_reads_every_block_once_and_fills_the_matrix(tmp_path) -> None:
    """The pipeline with --layers all on a tiny ViT: one feature pass, per-block results, the matrix."""
    import ckpt_factory as CF
    import umae_eval.features as F
    from umae_eval.analysis import DataSubset, load_subjects
    from umae_eval.data import ImageSet
    from umae_eval.pipeline import AnalysisConfig, run_analysis

    rng = np.random.default_rng(0)
    y_tr, y_te = np.repeat(np.arange(3), 12), np.repeat(np.arange(3), 8)
    base = np.array([[200, 40, 40], [40, 200, 40], [40, 40, 200]], float)

    def imgs(y):
        return np.clip(base[y][:, None, None] + rng.normal(0, 60, (len(y), 32, 32, 3)), 0, 255).astype(np.uint8)

    data = DataSubset(ImageSet(imgs(y_tr), y_tr, imgs(y_te), y_te, ["r", "g", "b"], "mem", "npz"))
    paths = [tmp_path / "a.pth", tmp_path / "b.pth"]
    CF.make_official_encoder(paths[0], seed=1, depth=3)
    CF.make_official_encoder(paths[1], seed=2, depth=3)
    subjects = load_subjects(paths, labels=["A", "B"])
    calls = []
    real = F.extract_features
    F.extract_features = lambda *a, **k: calls.append(k.get("readout")) or real(*a, **k)
    try:
        config = AnalysisConfig(methods=("mean", "knn"), ks=(5,), collapse=False, layers="all", pool="cls+avg",
                                final_norm=False, device="cpu", n_boot=100)
        res = run_analysis(subjects, data, config, spec="mem")
    finally:
        F.extract_features = real
    assert len(calls) == 4  # one pass per checkpoint and split, every block in it
    assert all(c is not None and c.blocks == (0, 1, 2) and not c.final_norm for c in calls)
    for c in res.checkpoints:
        assert c.spec["blocks"] == [0, 1, 2] and c.spec["main_block"] == 2 and c.spec["final_norm"] == "off"
        assert [b.block for b in c.blocks] == [0, 1, 2]
        assert c.probes is c.blocks[-1].probes  # the main block's probes are not run twice
    assert set(res.layers.best) == {"A", "B"} and "optimistic" in res.layers.best["A"].chosen_by
    assert res.matrix is not None
    names = [p["name"] for p in res.matrix.protocols]
    assert names == ["knn_accuracy@5", "mean_classifier_accuracy"]
    cell = res.matrix.cells[("B", "knn_accuracy@5")]["accuracy"]
    assert cell.estimate == res.checkpoints[1].probes.accuracies["knn_accuracy@5"]
    out = res.to_json()
    assert out["checkpoints"]["A"]["feature_spec"]["pool"] == "cls+avg"
    assert out["protocol_matrix"]["differences"][0]["baseline"] == "A"


def test_matrix_and_summary_sentences_share_one_verdict_wording() -> None:
    """D8: the matrix said 'more than noise', the summary 'beyond test-image noise'; one wording now."""
    from umae_eval.pipeline.intervals import Interval
    from umae_eval.pipeline.matrix import MatrixDifference
    from umae_eval.pipeline.summary import Comparison

    for iv, word in ((Interval(2.0, 0.5, 3.5), "beyond"), (Interval(0.4, -1.0, 1.8), "within")):
        m = MatrixDifference("linear_accuracy", "linear", "U-MAE", "MAE", iv, 1000).sentence()
        s = Comparison("linear_accuracy", "U-MAE", "MAE", iv, 1000).sentence()
        tail = f": {word} test-image noise at 1,000 test images."
        assert m.endswith(tail) and s.endswith(tail), (m, s)
        assert "more than noise" not in m
