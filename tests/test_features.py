"""umae_eval.features: pooling against manual computations, batching, the cache, masked views."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ckpt_factory import make_official_encoder, make_u_mae, tiny_vit
from umae_eval.cache import cache_root
from umae_eval.checkpoints import LoadedEncoder, load_encoder
from umae_eval.errors import UmaeError
from umae_eval.features import (
    cached_features,
    encode_masked_views,
    extract_features,
    feature_cache_path,
    resolve_device,
)

D = 192


def uint8_images(n: int, size: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def manual_input(images: np.ndarray, mean, std) -> torch.Tensor:
    """(N, 32, 32, 3) uint8 -> normalised (N, 3, 32, 32), written out without umae's helper."""
    x = torch.from_numpy(images.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def u_mae(tmp_path_factory: pytest.TempPathFactory) -> tuple[LoadedEncoder, dict]:
    path = tmp_path_factory.mktemp("feat") / "u_mae.pth"
    saved = make_u_mae(path, seed=5)
    return load_encoder(path), saved


@pytest.fixture(scope="module")
def official(tmp_path_factory: pytest.TempPathFactory) -> LoadedEncoder:
    path = tmp_path_factory.mktemp("feat") / "mae.pth"
    make_official_encoder(path, seed=5)
    return load_encoder(path)


def test_cls_and_avg_match_manual_computation(u_mae, official) -> None:
    enc, saved = u_mae
    imgs = uint8_images(5)
    original = tiny_vit(seed=5)  # the plain timm ViT both files were made from
    with torch.no_grad():
        tokens = original.forward_features(manual_input(imgs, enc.info.mean, enc.info.std))
    cls = tokens[:, 0].numpy()
    patch_mean = tokens[:, 1:].mean(dim=1)
    avg_fc_norm = F.layer_norm(patch_mean, (D,), saved["fc_norm.weight"], saved["fc_norm.bias"],
                               eps=1e-6).numpy()

    got_cls = extract_features(enc, imgs, pool="cls", device="cpu")
    assert got_cls.dtype == np.float32 and got_cls.shape == (5, D)
    np.testing.assert_allclose(got_cls, cls, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(extract_features(enc, imgs, pool="avg", device="cpu"),
                               avg_fc_norm, rtol=1e-5, atol=1e-5)
    # Without fc_norm in the checkpoint, 'avg' is the plain mean of the normed patch tokens.
    np.testing.assert_allclose(extract_features(official, imgs, pool="avg", device="cpu"),
                               patch_mean.numpy(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(extract_features(official, imgs, pool="cls", device="cpu"), cls,
                               rtol=1e-5, atol=1e-5)
    assert not np.allclose(cls, avg_fc_norm, atol=1e-2)


def test_batching_does_not_change_features(official) -> None:
    imgs = uint8_images(10, seed=1)
    small = extract_features(official, imgs, batch_size=3, device="cpu")
    large = extract_features(official, imgs, batch_size=64, device="cpu")
    np.testing.assert_allclose(small, large, rtol=1e-5, atol=1e-6)
    # Row i depends on image i only.
    np.testing.assert_allclose(extract_features(official, imgs[7:8], device="cpu")[0], small[7],
                               rtol=1e-5, atol=1e-6)


def test_progress_counts_every_image(official) -> None:
    calls: list[tuple[str, int | None]] = []
    steps: list[int] = []

    @contextlib.contextmanager
    def recorder(description: str, total: int | None = None) -> Iterator:
        calls.append((description, total))
        yield steps.append

    extract_features(official, uint8_images(7), batch_size=3, device="cpu", progress=recorder)
    assert [c[1] for c in calls] == [7] and steps == [3, 3, 1]


def test_empty_input_gives_empty_matrix(official) -> None:
    out = extract_features(official, uint8_images(0), device="cpu")
    assert out.shape == (0, D) and out.dtype == np.float32


def test_cache_hit_does_not_run_the_model(official) -> None:
    imgs = uint8_images(6, seed=2)
    runs: list[int] = []
    hook = official.model.patch_embed.register_forward_hook(lambda m, i, o: runs.append(len(o)))
    try:
        first = cached_features(official, imgs, images_key="fp123-test", device="cpu")
        assert sum(runs) == 6
        path = feature_cache_path(official, "fp123-test", n_images=6, device="cpu")
        assert path.is_file() and path.parent == cache_root() / "features"
        second = cached_features(official, imgs, images_key="fp123-test", device="cpu")
        assert sum(runs) == 6  # read back, not recomputed
        np.testing.assert_array_equal(first, second)
        np.testing.assert_allclose(first, extract_features(official, imgs, device="cpu"))
        runs.clear()
        cached_features(official, imgs, images_key="fp123-test", pool="avg", device="cpu")
        cached_features(official, imgs, images_key="fp999-test", device="cpu")
        assert sum(runs) == 12  # another pool and another image set are other entries
        # A damaged entry is recomputed, not trusted.
        path.write_bytes(b"not an npy file")
        runs.clear()
        np.testing.assert_allclose(cached_features(official, imgs, images_key="fp123-test",
                                                   device="cpu"), first)
        assert sum(runs) == 6
    finally:
        hook.remove()


def test_full_cache_disk_warns_once_and_goes_on(official, monkeypatch) -> None:
    """Issue 11: a full cache disk must not fail the analysis (the write raises ENOSPC)."""
    import errno
    import os

    from umae_eval import features as features_mod

    def full_disk(path, write):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(features_mod, "atomic_write", full_disk)
    imgs = uint8_images(5, seed=4)
    warnings: list[str] = []
    got = cached_features(official, imgs, images_key="fp-full-test", device="cpu",
                          warnings=warnings)
    np.testing.assert_array_equal(got, extract_features(official, imgs, device="cpu"))
    cached_features(official, imgs[:3], images_key="fp-full-train", device="cpu", warnings=warnings)
    where = cache_root() / "features"
    assert warnings == [f"feature cache not written to {where}: No space left on device; going on "
                        "without it (free space there, or set UMAE_CACHE_DIR to a writable folder)"]
    assert not feature_cache_path(official, "fp-full-test", n_images=5, device="cpu").exists()
    with pytest.warns(UserWarning, match="feature cache not written"):  # no list: Python's warnings
        cached_features(official, imgs, images_key="fp-full-test", device="cpu")


def test_cache_root_that_cannot_be_created_is_skipped(official, tmp_path, monkeypatch) -> None:
    (tmp_path / "file").write_text("a file, not a folder")
    monkeypatch.setenv("UMAE_CACHE_DIR", str(tmp_path / "file" / "cache"))  # ENOTDIR, even as root
    warnings: list[str] = []
    imgs = uint8_images(4, seed=6)
    got = cached_features(official, imgs, images_key="fp-x-test", device="cpu", warnings=warnings)
    np.testing.assert_array_equal(got, extract_features(official, imgs, device="cpu"))
    assert len(warnings) == 1
    assert warnings[0].startswith(f"feature cache not written to {tmp_path / 'file' / 'cache'}: "
                                  "Not a directory; going on without it")


def test_cache_key_separates_encoders_and_norms(u_mae, official) -> None:
    enc, _ = u_mae
    a = feature_cache_path(official, "k", n_images=4, device="cpu")
    b = feature_cache_path(enc, "k", n_images=4, device="cpu")
    assert a != b
    official.info.mean, saved_mean = (0.5, 0.5, 0.5), official.info.mean
    try:
        assert feature_cache_path(official, "k", n_images=4, device="cpu") != a
    finally:
        official.info.mean = saved_mean


def test_bad_inputs(official) -> None:
    with pytest.raises(UmaeError, match=r"images must be uint8 \(0-255 pixels\), got float32"):
        extract_features(official, uint8_images(2).astype(np.float32), device="cpu")
    with pytest.raises(UmaeError, match=r"\(N, H, W, 3\) uint8 array.*shape \(2, 32, 32\)"):
        extract_features(official, uint8_images(2)[..., 0], device="cpu")
    with pytest.raises(UmaeError, match="unknown pooling 'max'; use 'cls'"):
        extract_features(official, uint8_images(2), pool="max", device="cpu")  # type: ignore[arg-type]
    with pytest.raises(UmaeError, match="batch size must be at least 1"):
        extract_features(official, uint8_images(2), batch_size=0, device="cpu")
    with pytest.raises(UmaeError, match="images_key must name the images"):
        cached_features(official, uint8_images(2), images_key="", device="cpu")


def test_resolve_device() -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UmaeError, match="unknown device 'tpu'; use auto, cpu, cuda or cuda:N"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UmaeError, match="'cuda:1' requested but CUDA is not available.*--device cpu"):
            resolve_device("cuda:1")
    else:
        with pytest.raises(UmaeError, match="does not exist"):
            resolve_device(f"cuda:{torch.cuda.device_count()}")


# ---------------------------------------------------------------------------------------------
# Masked views
# ---------------------------------------------------------------------------------------------

def normalised(n: int = 3, seed: int = 3) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def test_ratio_zero_equals_plain_forward(u_mae) -> None:
    enc, _ = u_mae
    x = normalised()
    with torch.no_grad():
        tokens = enc.model.forward_features(x)
        masked_cls = encode_masked_views(enc.model, x, 0.0, generator=torch.Generator().manual_seed(0))
        masked_avg = encode_masked_views(enc.model, x, 0.0, pool="avg",
                                         generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(masked_cls, tokens[:, 0], rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(masked_cls, enc.model(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(masked_avg, enc.model.fc_norm(tokens[:, 1:].mean(1)),
                                   rtol=1e-5, atol=1e-5)


def test_masked_view_equals_attention_masked_forward(official) -> None:
    """An independent route: the full sequence with removed patches hidden from attention.

    Attention is the only place tokens mix, so hiding the removed patches' keys leaves the
    [CLS] output exactly as if they had been dropped, which is what MAE's encoder does.
    """
    model = official.model
    x = normalised(2)
    noise = torch.rand(2, 64, generator=torch.Generator().manual_seed(11))
    kept = torch.argsort(noise, dim=1)[:, :16]  # int(64 * (1 - 0.75)) = 16 kept
    allowed = torch.zeros(2, 65, dtype=torch.bool)
    allowed[:, 0] = True
    allowed.scatter_(1, kept + 1, True)
    bias = torch.zeros(2, 1, 1, 65).masked_fill(~allowed.view(2, 1, 1, 65), float("-inf"))

    seen: list[tuple[int, ...]] = []
    hook = model.norm.register_forward_hook(lambda m, i, o: seen.append(tuple(o.shape)))
    try:
        with torch.no_grad():
            got = encode_masked_views(model, x, 0.75, noise=noise)
            want = model.forward_features(x, attn_mask=bias)[:, 0]
    finally:
        hook.remove()
    assert seen[0] == (2, 1 + 16, D)  # [CLS] + the 16 visible patches reach the final norm
    torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-5)


def test_masked_views_are_deterministic_under_a_seed(official) -> None:
    model, x = official.model, normalised()
    with torch.no_grad():
        a = encode_masked_views(model, x, 0.75, generator=torch.Generator().manual_seed(1))
        b = encode_masked_views(model, x, 0.75, generator=torch.Generator().manual_seed(1))
        c = encode_masked_views(model, x, 0.75, generator=torch.Generator().manual_seed(2))
        d = encode_masked_views(model, x, 0.75,
                                noise=torch.rand(3, 64, generator=torch.Generator().manual_seed(1)))
    assert a.shape == (3, D)
    assert torch.equal(a, b) and torch.equal(a, d)
    assert not torch.allclose(a, c, atol=1e-4)


def test_masked_view_bad_inputs(official) -> None:
    model, x = official.model, normalised()
    with pytest.raises(UmaeError, match=r"mask ratio must be in \[0, 1\), got 1.0"):
        encode_masked_views(model, x, 1.0)
    with pytest.raises(UmaeError, match=r"noise must have shape \(B, L\) = \(3, 64\), got \(3, 16\)"):
        encode_masked_views(model, x, 0.5, noise=torch.rand(3, 16))
    with pytest.raises(UmaeError, match=r"shape \(B, 3, H, W\), got \(3, 32, 32\)"):
        encode_masked_views(model, x[:, 0], 0.5)


def test_extract_features_runs_on_cuda_when_present(official, tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device on this machine")
    imgs = uint8_images(4)
    cpu = extract_features(official, imgs, device="cpu")
    gpu = extract_features(official, imgs, device="cuda")  # bf16 autocast
    official.model.to("cpu")
    assert np.corrcoef(cpu.ravel(), gpu.ravel())[0, 1] > 0.99
