"""The representation metrics per block (--layers): one masked pass read at every block, each
block's values against the metric functions on its own features, the deepest block against the
main stage, paired differences, the summary's difference sentences and the by-block figures."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

import ckpt_factory as CF
from umae_eval.analysis import FeatureSet, Subject, subset_indices
from umae_eval.checkpoints import load_encoder
from umae_eval.features import extract_features
from umae_eval.metrics.lidar import lidar
from umae_eval.metrics.neural_collapse import neural_collapse
from umae_eval.metrics.scalars import participation_ratio, rankme_paper, stable_rank
from umae_eval.metrics.spectrum import alpha_req
from umae_eval.metrics.suite import MetricSet
from umae_eval.pipeline.block_metrics import (
    block_differences,
    block_lidar_count,
    block_metric_sets,
    block_resample_count,
    block_rows,
    masked_view_blocks,
)
from umae_eval.pipeline.extra_metrics import block_fourier, checkpoint_metrics, fourier_images_of, masked_view_stack
from umae_eval.pipeline.metric_sentences import difference_sentences, representation_notes
from umae_eval.readout import readout_for


@pytest.fixture(scope="module")
def subjects(tmp_path_factory: pytest.TempPathFactory) -> list[Subject]:
    root = tmp_path_factory.mktemp("blocks")
    out = []
    for i, name in enumerate(("MAE", "U-MAE")):
        path = root / f"{name}.pth"
        CF.make_official_encoder(path, seed=20 + i)
        out.append(Subject(name, load_encoder(path)))
    return out


def _every(s: Subject, images: np.ndarray, y: np.ndarray) -> FeatureSet:
    ro = readout_for("all", 2)
    test = extract_features(s.encoder, images, device="cpu", readout=ro)
    return FeatureSet(train=test[::-1].copy(), test=test, y_train=y[::-1].copy(), y_test=y, pool="cls",
                      blocks=(0, 1))


def test_resample_budget_closed_form() -> None:
    assert block_resample_count(1000, 192, 6, 2000) == 100  # cheap: the cap
    assert block_resample_count(10_000, 768, 12, 2000) == 30  # 2e12 / (12 * 2 * 1e4 * 768^2) = 14: the floor
    assert block_resample_count(10_000, 512, 6, 2000) == int(2e12 // (2 * 10_000 * 512**2 * 6)) == 63  # the budget
    assert block_resample_count(1000, 192, 6, 20) == 20  # never more than asked
    # LiDAR: 300 resamples over all blocks, 20 to 50 per block
    assert [block_lidar_count(k, 2000) for k in (1, 6, 12, 24)] == [50, 50, 25, 20]
    assert block_lidar_count(12, 10) == 10


def test_one_masked_pass_reads_every_block_as_separate_passes_do(subjects: list[Subject]) -> None:
    s = subjects[0]
    images, _ = CF.class_colour_images(5)
    for final_norm in (True, False):
        got = masked_view_blocks(s, images, (0, 1), views=3, mask_ratio=0.5, seed=7, device="cpu", batch_size=3,
                                 final_norm=final_norm)
        for b in (0, 1):
            want = masked_view_stack(s, images, views=3, mask_ratio=0.5, seed=7, device="cpu", batch_size=3,
                                     block=b, final_norm=final_norm)
            assert got[b].shape == (5, 3, 192)
            np.testing.assert_allclose(got[b], want, atol=1e-5)
    assert not np.allclose(got[0], got[1])


def test_block_sets_match_the_metric_functions_and_the_main_stage(subjects: list[Subject]) -> None:
    images, y = CF.class_colour_images(36)
    sets = {}
    for s in subjects:
        every = _every(s, images, y)
        prof = block_fourier(s, fourier_images_of(images, 8, 0), device="cpu")
        pred = y.copy()
        pred[:5] = (pred[:5] + 1) % 3
        probes = [SimpleNamespace(block=b, probes=SimpleNamespace(predictions={"linear_accuracy": pred}))
                  for b in (0, 1)]
        per = block_metric_sets(s, every, images, block_results=probes, fourier=prof, mask_ratio=0.5, seed=0,
                                n_boot=12, device="cpu", lidar_images=12, lidar_views=3)
        assert sorted(per) == [0, 1]
        for b in (0, 1):
            z = every.block(b).test
            v = per[b].values
            assert v["participation_ratio"] == pytest.approx(participation_ratio(z), rel=1e-9)
            assert v["stable_rank"] == pytest.approx(stable_rank(z), rel=1e-9)
            assert v["rankme_paper"] == pytest.approx(rankme_paper(z), rel=1e-9)
            assert v["alpha_req"] == pytest.approx(alpha_req(z).alpha, rel=1e-9)
            assert v["nc1"] == pytest.approx(neural_collapse(z, y).nc1, rel=1e-9)
            assert v["fourier_high"] == pytest.approx(prof[b].high_frequency)
            assert per[b].settings["nc4"] is True and np.isfinite(v["nc4_agreement"])
            assert set(per[b].resamples) >= {"participation_ratio", "alpha_req", "lidar_masked", "fourier_high"}
            assert len(per[b].resamples["participation_ratio"]) == len(per[b].resamples["lidar_masked"]) == 12
        # the deepest block reproduces the main stage (same features, LiDAR images, masks and seeds)
        main = checkpoint_metrics(s, every.block(1), images, predictions=pred, mask_ratio=0.5, n_boot=12,
                                  device="cpu", lidar_images=12, lidar_views=3, fourier_images=8, block=1,
                                  fourier_blocks=prof)
        for m in ("participation_ratio", "rankme_pca", "alpha_req", "lidar_masked", "nc1", "cdnv", "fourier_high"):
            assert per[1].values[m] == pytest.approx(main.values[m], rel=1e-9), m
        np.testing.assert_allclose(per[1].resamples["fourier_high"], main.resamples["fourier_high"])
        # block 0's LiDAR is the paper's LiDAR of block 0's views
        views = masked_view_stack(s, images[np.sort(subset_indices(36, 12, 0 + 13))], views=3,
                                  mask_ratio=0.5, seed=19, device="cpu", block=0)
        assert per[0].values["lidar_masked"] == pytest.approx(lidar(views).value, rel=1e-6)
        sets[s.name] = per
    rows = block_rows(sets)
    r = next(r for r in rows if r["checkpoint"] == "MAE" and r["block"] == 0 and r["metric"] == "stable_rank")
    assert r["lo"] <= r["value"] <= r["hi"] and r["n_images"] == 36
    assert next(r for r in rows if r["metric"] == "lidar_masked")["n_images"] == 12
    assert next(r for r in rows if r["metric"] == "nc1")["lo"] is None  # label metrics: no interval
    diffs = block_differences(sets)
    d = next(d for d in diffs if d["block"] == 0 and d["metric"] == "rankme_paper")
    assert (d["a"], d["b"]) == ("MAE", "U-MAE")
    v_a, v_b = sets["MAE"][0].values["rankme_paper"], sets["U-MAE"][0].values["rankme_paper"]
    assert d["difference"] == pytest.approx(v_b - v_a)
    ra, rb = sets["MAE"][0].resamples["rankme_paper"], sets["U-MAE"][0].resamples["rankme_paper"]
    shifted = rb - ra - (rb - ra).mean() + d["difference"]  # centred on the estimate
    assert [d["lo"], d["hi"]] == pytest.approx(list(np.percentile(shifted, [2.5, 97.5])))


def _set(values: dict[str, float], resamples: dict[str, np.ndarray], **settings: int) -> MetricSet:
    return MetricSet(values=values, resamples=resamples, settings={"n": 1000, "lidar_images": 100,
                                                                   "fourier_images": 64, **settings})


def test_difference_sentences_word_the_verdict_and_the_images_resampled() -> None:
    rng = np.random.default_rng(0)
    base = rng.normal(size=400)
    mae = _set({"lidar_masked": 40.0, "collapse_std_ratio": 0.50},
               {"lidar_masked": 40 + base, "collapse_std_ratio": 0.5 + 0.05 * base})
    umae = _set({"lidar_masked": 52.4, "collapse_std_ratio": 0.51},
                {"lidar_masked": 52.4 + base + 0.5 * rng.normal(size=400),
                 "collapse_std_ratio": 0.51 + 0.05 * base + 0.02 * rng.normal(size=400)})
    notes = representation_notes({"MAE": mae, "U-MAE": umae})
    lid = next(t for t in notes if t.startswith("LiDAR over masked views: U-MAE minus MAE is +12.4 (95% interval "))
    assert lid.endswith("): beyond test-image noise at 100 test images.")
    std = next(t for t in notes if t.startswith("Collapse std x sqrt(D): U-MAE minus MAE is +0.010 (95% interval -0.0"))
    assert std.endswith("): within test-image noise at 1,000 test images.")
    assert representation_notes({"MAE": mae, "U-MAE": umae}, table_only=("U-MAE",)) == []
    row = {"metric": "stable_rank", "a": "A", "b": "B", "difference": -0.0004, "lo": -0.002, "hi": 0.001,
           "beyond_noise": False}
    (s,) = difference_sentences([row], {"A": mae})
    assert s == ("Stable rank: B minus A is 0.000 (95% interval -0.002 to 0.001): within test-image noise at "
                 "1,000 test images.")


def test_by_block_figures_one_colour_per_checkpoint_with_error_bars() -> None:
    from umae_eval.report import block_metrics as RB

    rng = np.random.default_rng(1)
    def per(shift: float) -> dict[int, MetricSet]:
        out = {}
        for b in (0, 1, 2):
            out[b] = _set({"participation_ratio": 10 + b + shift, "nc1": 1.0 + b},
                          {"participation_ratio": 10 + b + shift + rng.normal(size=50)}, block=b, lidar_views=10,
                          spectral_resamples=50, lidar_resamples=50)
        return out
    res = SimpleNamespace(checkpoints=[SimpleNamespace(name="MAE", block_extra=per(0.0)),
                                       SimpleNamespace(name="U-MAE", block_extra=per(3.0))])
    frame = RB.block_frame(res)
    assert len(frame) == 2 * 3 * 2 and set(frame.columns) >= {"checkpoint", "block", "metric", "value", "lo", "hi"}
    fig = RB.block_figure(frame, ("participation_ratio", "stable_rank"), colors={"MAE": "#111111", "U-MAE": "#222222"})
    lines = {t.name: t for t in fig.data}
    assert set(lines) == {"MAE", "U-MAE"} and lines["MAE"].line.color == "#111111"
    assert list(lines["U-MAE"].y) == [13.0, 14.0, 15.0] and lines["U-MAE"].error_y.array is not None
    nc = RB.block_figure(frame, ("nc1", "cdnv"))
    assert all(t.error_y.array is None for t in nc.data)  # label metrics: no error bars
    tables = RB.results_block_tables(res)
    assert set(tables) == {"representation_by_block", "representation_block_differences"}
    assert len(tables["representation_block_differences"]) == 3  # participation ratio at 3 blocks
