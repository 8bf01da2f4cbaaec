"""The representation-metrics stage on tiny real encoders: view stacks, block Fourier, intervals."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

import ckpt_factory as CF
from umae_eval.analysis import FeatureSet, Subject
from umae_eval.checkpoints import load_encoder
from umae_eval.features import encode_masked_views, extract_features
from umae_eval.metrics.fourier import fourier_profile
from umae_eval.pipeline.extra_metrics import (
    augmented_view_stack,
    block_fourier,
    checkpoint_metrics,
    masked_view_stack,
    metric_differences,
    metric_intervals,
    pair_sets,
)
from umae_eval.preprocess import to_model_input


@pytest.fixture(scope="module")
def subjects(tmp_path_factory: pytest.TempPathFactory) -> list[Subject]:
    root = tmp_path_factory.mktemp("extra")
    out = []
    for i, name in enumerate(("a", "b")):
        path = root / f"{name}.pth"
        CF.make_official_encoder(path, seed=10 + i)
        out.append(Subject(name, load_encoder(path)))
    return out


def test_masked_views_replay_the_generator(subjects: list[Subject]) -> None:
    s = subjects[0]
    images, _ = CF.class_colour_images(6)
    stack = masked_view_stack(s, images, views=3, mask_ratio=0.5, seed=5, device="cpu", batch_size=4)
    assert stack.shape == (6, 3, 192)
    gen = torch.Generator().manual_seed(5)
    model = s.encoder.model.eval()
    with torch.inference_mode():
        x = to_model_input(images[:4], 32, s.info.mean, s.info.std)
        first = [encode_masked_views(model, x, 0.5, generator=gen).numpy() for _ in range(3)]
    assert np.allclose(stack[:4, 1], first[1], atol=1e-6)
    assert not np.allclose(stack[:, 0], stack[:, 1])  # different masks, different features
    aug = augmented_view_stack(s, images, views=2, seed=1, device="cpu", batch_size=4)
    assert aug.shape == (6, 2, 192)
    assert np.allclose(aug, augmented_view_stack(s, images, views=2, seed=1, device="cpu", batch_size=4))


def test_block_fourier_matches_hooked_block_outputs(subjects: list[Subject]) -> None:
    s = subjects[0]
    images, _ = CF.class_colour_images(5)
    profiles = block_fourier(s, images, device="cpu", batch_size=2)
    assert len(profiles) == 2  # the tiny encoder has depth 2
    captured: list[torch.Tensor] = []
    handle = s.encoder.model.blocks[-1].register_forward_hook(lambda m, i, o: captured.append(o.detach()))
    try:
        with torch.inference_mode():
            s.encoder.model.forward_features(to_model_input(images, 32, s.info.mean, s.info.std))
    finally:
        handle.remove()
    direct = fourier_profile(captured[0][:, 1:], grid=(8, 8))
    assert np.allclose(profiles[-1].relative_log_amplitude, direct.relative_log_amplitude, atol=1e-5)


def test_checkpoint_metrics_intervals_and_pairs(subjects: list[Subject]) -> None:
    images, y = CF.class_colour_images(40)
    sets, feats = {}, {}
    for s in subjects:
        test = extract_features(s.encoder, images, device="cpu")
        train = extract_features(s.encoder, images[::-1].copy(), device="cpu")
        fs = FeatureSet(train=train, test=test, y_train=y[::-1].copy(), y_test=y, pool="cls")
        pred = np.asarray(y)
        sets[s.name] = checkpoint_metrics(s, fs, images, predictions=pred, mask_ratio=0.5, n_boot=20, device="cpu",
                                          lidar_images=20, lidar_views=3, fourier_images=8)
        feats[s.name] = test
    ms = sets["a"]
    for name in ("participation_ratio", "rankme_paper", "rankme_pca", "nc1", "nc4_agreement", "lidar_masked",
                 "lidar_augmented", "fourier_high"):
        assert np.isfinite(ms.values[name]), name
    assert ms.settings["lidar_images"] == 20 and ms.settings["lidar_views"] == 3 and ms.settings["nc4"] is True
    assert ms.settings["fourier_images"] == 8
    assert [b["block"] for b in ms.details["fourier_by_block"]] == [0, 1]  # 0-based, as --layers
    ivs = metric_intervals(sets)
    for name, per in ivs.items():
        assert set(per) >= {"participation_ratio", "lidar_masked", "fourier_high"}
        for iv in per.values():
            assert iv.lo <= iv.estimate <= iv.hi or np.isclose(iv.lo, iv.hi)
    diffs = metric_differences(sets)
    assert {d["metric"] for d in diffs} >= {"stable_rank", "lidar_masked", "fourier_high"}
    d0 = next(d for d in diffs if d["metric"] == "stable_rank")
    assert d0["difference"] == pytest.approx(sets["b"].values["stable_rank"] - sets["a"].values["stable_rank"])
    pairs = pair_sets(feats, n_boot=10)
    assert list(pairs) == ["a vs b"]
    assert 0.0 < pairs["a vs b"].values["cka_linear"] <= 1.0


def test_nc4_needs_every_train_class(subjects: list[Subject], tmp_path: Path) -> None:
    images, y = CF.class_colour_images(12)
    test = extract_features(subjects[0].encoder, images, device="cpu")
    fs = FeatureSet(train=test, test=test, y_train=np.where(y == 2, 0, y), y_test=y, pool="cls")
    ms = checkpoint_metrics(subjects[0], fs, images, predictions=y, n_boot=0, device="cpu", lidar_views=2,
                            fourier_images=4)
    assert "nc4_agreement" not in ms.values and ms.settings["nc4"] is False
