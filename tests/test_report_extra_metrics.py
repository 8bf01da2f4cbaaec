"""The representation-metrics section: CSV frames carry the numbers, the page shows them with intervals."""

from __future__ import annotations

import numpy as np
import pytest

from umae_eval.metrics.suite import pair_metrics, representation_metrics
from umae_eval.pipeline.extra_metrics import metric_differences, metric_intervals
from umae_eval.report import extra_metrics as R
from umae_eval.report.writer import HtmlReport


def _sets() -> tuple[dict, dict]:
    rng = np.random.default_rng(0)
    y = np.repeat(np.arange(3), 20)
    base = rng.normal(size=(3, 8))[y]
    sets = {}
    for i, name in enumerate(("MAE", "U-MAE")):
        x = base + (0.5 + i) * rng.normal(size=(60, 8))
        ms = representation_metrics(x, labels=y, mask_views=x[:20, None] + rng.normal(size=(20, 3, 8)),
                                    tokens=rng.normal(size=(6, 16, 8)), n_boot=15, seed=0)
        ms.details["fourier_by_block"] = [{"block": b, "high_frequency_log_amplitude": -1.0 - b - i,
                                           "energy_share_high": 0.01, "n_images": 6} for b in (1, 2, 3)]
        sets[name] = ms
    pairs = {"MAE vs U-MAE": pair_metrics(base, base + rng.normal(size=(60, 8)), batch_size=10, n_boot=10)}
    pairs["MAE vs U-MAE"].settings.update(a="MAE", b="U-MAE")
    return sets, pairs


def test_frames_and_section() -> None:
    sets, pairs = _sets()
    ivs = metric_intervals(sets)
    diffs = metric_differences(sets)
    t = R.tables(sets, ivs, diffs, pairs)
    assert set(t) == {"representation_metrics", "representation_differences", "representation_pairs",
                      "fourier_by_block"}
    m = t["representation_metrics"]
    row = m[(m.checkpoint == "U-MAE") & (m.metric == "lidar_masked")].iloc[0]
    assert row["value"] == pytest.approx(sets["U-MAE"].values["lidar_masked"])
    assert row["value_lo"] <= row["value"] <= row["value_hi"] and row["resamples"] == 15
    nc1 = m[(m.checkpoint == "MAE") & (m.metric == "nc1")].iloc[0]
    assert np.isnan(nc1["value_lo"]) and nc1["resamples"] == 0  # labelled: no interval
    assert list(t["fourier_by_block"]["block"]) == [1, 2, 3, 1, 2, 3]
    p = t["representation_pairs"].iloc[0]
    assert p["cka_unbiased_lo"] <= p["cka_unbiased_hi"] and (p["a"], p["b"]) == ("MAE", "U-MAE")
    rep = HtmlReport("t", command="umae collapse-report")
    R.add_section(rep, sets, ivs, diffs, pairs, {"data": "toy"})
    html = rep.render()
    assert "Representation metrics" in html and "CKA and mutual kNN between checkpoints" in html
    assert "Token Fourier analysis by block" in html and rep.n_figures == 1
    wide = R.wide_frame(m)
    assert list(wide.columns) == ["metric", "MAE", "U-MAE"] and wide["metric"].iloc[0] == "participation_ratio"
    assert " to " in wide.set_index("metric").loc["stable_rank", "MAE"]


def test_cka_blocks_carry_per_cell_intervals_in_csv_hover_and_caption() -> None:
    from umae_eval.metrics.cka_bootstrap import cka_matrix_interval
    from umae_eval.metrics.suite import MetricSet
    from umae_eval.pipeline.extra_metrics import _cka_blocks

    rng = np.random.default_rng(3)
    b0 = rng.normal(size=(400, 6))
    b1 = np.tanh(b0) + rng.normal(size=(400, 6))
    cb = _cka_blocks(((0, 1), [b0, b1]), None, seed=5, n_boot=200)
    want = cka_matrix_interval([b0, b1], None, n_boot=200, seed=5)
    assert cb["lo"][0][1] == pytest.approx(want.lo[0, 1]) and cb["hi"][1][0] == pytest.approx(want.hi[1, 0])
    assert cb["lo"][0][0] == pytest.approx(1.0) and cb["batches"] == 13 and cb["batch_size"] == 32  # 400 rows: 12 of 32 and one of 16
    ms = MetricSet(details={"cka_blocks": cb})
    frame = R.cka_blocks_frame({"A": ms}, {})
    row = frame[(frame.block_a == 0) & (frame.block_b == 1)].iloc[0]
    assert (row["cka_lo"], row["cka_hi"]) == pytest.approx((want.lo[0, 1], want.hi[0, 1]))
    assert row["cka_lo"] < row["cka"] < row["cka_hi"] and row["resamples"] == 200
    fig = R.cka_heatmap(cb, "A", "A")
    assert f"{want.estimate[0, 1]:.3f} (95% interval {want.lo[0, 1]:.3f} to {want.hi[0, 1]:.3f})" in fig.data[0].text
    cap = R.cka_interval_caption(cb)
    assert "13 minibatches of 32 test images" in cap and "test-image resampling only" in cap
    assert "Widest: ±" in cap
