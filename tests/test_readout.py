"""umae_eval.readout: blocks, pooling and final norm read in one pass, against manual forwards."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
import torch

from ckpt_factory import make_official_encoder, make_u_mae
from umae_eval.checkpoints import LoadedEncoder, load_encoder
from umae_eval.errors import UmaeError
from umae_eval.features import cached_features, extract_features, feature_cache_path
from umae_eval.featurestore import ArrayImages, extract_to_store, store_key
from umae_eval.readout import Readout, fc_norm_untrained, parse_layers, readout_for, resolve_blocks

DEPTH = 4


def uint8_images(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


def manual_input(images: np.ndarray, mean, std) -> torch.Tensor:
    x = torch.from_numpy(images.astype(np.float32) / 255.0).permute(0, 3, 1, 2)
    return (x - torch.tensor(mean).view(1, 3, 1, 1)) / torch.tensor(std).view(1, 3, 1, 1)


@pytest.fixture(scope="module")
def enc(tmp_path_factory: pytest.TempPathFactory) -> LoadedEncoder:
    path = tmp_path_factory.mktemp("readout") / "mae.pth"
    make_official_encoder(path, seed=3, depth=DEPTH)
    return load_encoder(path)


def manual_tokens(model: torch.nn.Module, x: torch.Tensor, i: int) -> torch.Tensor:
    """Block i's output written out: embedding, [CLS] + positions, then blocks 0..i one by one."""
    h = model.patch_embed.proj(x).flatten(2).transpose(1, 2)
    h = torch.cat([model.cls_token.expand(len(x), -1, -1), h], dim=1) + model.pos_embed
    for blk in list(model.blocks)[:i + 1]:
        h = h + blk.attn(blk.norm1(h))
        h = h + blk.mlp(blk.norm2(h))
    return h


def test_parse_and_resolve_layers() -> None:
    assert parse_layers("last") == "last" and parse_layers(" ALL ") == "all"
    assert parse_layers("3,6,-1") == (3, 6, -1)
    assert resolve_blocks("last", 12) == (11,)
    assert resolve_blocks("all", 3) == (0, 1, 2)
    assert resolve_blocks("6,3,-1,11", 12) == (3, 6, 11)
    with pytest.raises(UmaeError, match=r"--layers: block 12 does not exist in a ViT of 12 blocks"):
        resolve_blocks("12", 12)
    with pytest.raises(UmaeError, match=r"--layers 'x': give last, all"):
        parse_layers("x")


def test_each_block_equals_a_manual_forward(enc: LoadedEncoder) -> None:
    imgs = uint8_images(4)
    x = manual_input(imgs, enc.info.mean, enc.info.std)
    readout = readout_for("all", DEPTH, final_norm=False)
    feats = extract_features(enc, imgs, device="cpu", pool="cls+avg", readout=readout)
    d = enc.info.arch.embed_dim
    assert feats.shape == (4, DEPTH * 2 * d)
    with torch.no_grad():
        for i in range(DEPTH):
            tok = manual_tokens(enc.model, x, i)
            want = torch.cat([tok[:, 0], tok[:, 1:].mean(1)], dim=1).numpy()
            got = feats[:, i * 2 * d:(i + 1) * 2 * d]
            np.testing.assert_allclose(got, want, rtol=0, atol=2e-5)
    # one block alone gives the same columns as its slot in the all-blocks pass, bit for bit
    one = extract_features(enc, imgs, device="cpu", pool="cls+avg", readout=readout_for("1", DEPTH, False))
    np.testing.assert_array_equal(one, feats[:, 2 * d:4 * d])


def test_final_norm_off_on_last_block_is_forward_features_before_norm(enc: LoadedEncoder) -> None:
    imgs = uint8_images(3, seed=1)
    from umae_eval.preprocess import to_model_input
    # umae's own preprocessing, so that only the encoder's arithmetic is compared (exactly)
    x = to_model_input(torch.from_numpy(imgs), enc.info.arch.img_size, enc.info.mean, enc.info.std,
                       torch.device("cpu"))
    model = enc.model
    with torch.no_grad():
        h = model.patch_embed(x)
        h = model.norm_pre(model.patch_drop(model._pos_embed(h)))
        before_norm = model.blocks(h)
        after = model.forward_features(x)
    off = extract_features(enc, imgs, device="cpu", readout=readout_for("-1", DEPTH, False))
    np.testing.assert_array_equal(off, before_norm[:, 0].numpy())
    # and the manual path with the norm on equals forward_features exactly (the default path)
    explicit = Readout((DEPTH - 1,), True)
    from umae_eval.readout import encode_readout
    with torch.no_grad():
        manual = encode_readout(model, x, "cls", explicit)
    np.testing.assert_array_equal(manual.numpy(), after[:, 0].numpy())
    np.testing.assert_array_equal(extract_features(enc, imgs, device="cpu"), after[:, 0].numpy())


def test_extraction_runs_in_eval_mode_with_dropout_and_drop_path(tmp_path: Path) -> None:
    path = tmp_path / "mae.pth"
    make_official_encoder(path, seed=4, depth=DEPTH)
    enc = load_encoder(path)
    imgs = uint8_images(6, seed=2)
    clean = extract_features(enc, imgs, device="cpu", readout=readout_for("all", DEPTH, True))
    from timm.layers import DropPath

    model = enc.model
    model.pos_drop.p = 0.5
    for blk in model.blocks:
        blk.drop_path1 = DropPath(0.5)
        blk.drop_path2 = DropPath(0.5)
        blk.attn.attn_drop.p = 0.5
        blk.mlp.drop1.p = 0.5
    model.train()  # a caller that left the encoder training: extraction must switch it to eval
    for readout in (readout_for("all", DEPTH, True), None):
        a = extract_features(enc, imgs, device="cpu", readout=readout)
        model.train()
        b = extract_features(enc, imgs, device="cpu", readout=readout)
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, clean[:, -enc.info.arch.embed_dim:])
    model.train()  # the store's DataLoader path too
    key = store_key(enc, data_fingerprint="f", split="test", n=len(imgs), device="cpu",
                    readout=readout_for("all", DEPTH, True))
    store = extract_to_store(enc, ArrayImages(imgs), tmp_path / "store", key, device="cpu", batch_size=2)
    np.testing.assert_array_equal(store.read(), clean)


def test_store_and_cache_keys_differ_by_spec(enc: LoadedEncoder) -> None:
    kw = dict(data_fingerprint="abc", split="test", n=10, device="cpu")
    specs = [(pool, r) for pool in ("cls", "avg", "cls+avg")
             for r in (None, readout_for("all", DEPTH, True), readout_for("all", DEPTH, False),
                       readout_for("1", DEPTH, True), readout_for("-1", DEPTH, False))]
    digests = {store_key(enc, pool=p, readout=r, **kw).digest() for p, r in specs}
    assert len(digests) == len(specs)
    paths = {feature_cache_path(enc, "abc-test", n_images=10, pool=p, device="cpu", readout=r) for p, r in specs}
    assert len(paths) == len(specs)
    # the default readout, spelt out, is the key umae always used (old caches and stores stay valid)
    plain = store_key(enc, **kw)
    assert store_key(enc, readout=readout_for("last", DEPTH, True), **kw) == plain
    assert "blocks" not in plain.to_json() and "final_norm" not in plain.to_json()
    wide = store_key(enc, pool="cls+avg", readout=readout_for("0,2", DEPTH, False), **kw)
    assert wide.dim == 2 * 2 * enc.info.arch.embed_dim and wide.blocks == (0, 2) and not wide.final_norm
    assert type(wide).from_json(wide.to_json()) == wide
    assert dataclasses.replace(plain, final_norm=False).digest() != plain.digest()


def test_cached_features_fill_every_block_from_one_pass(enc: LoadedEncoder, monkeypatch) -> None:
    imgs = uint8_images(5, seed=3)
    readout = readout_for("0,-1", DEPTH, True)
    calls = []
    import umae_eval.features as F
    real = F.encode_batch
    monkeypatch.setattr(F, "encode_batch", lambda *a, **k: calls.append(1) or real(*a, **k))
    first = cached_features(enc, imgs, images_key="k-test", device="cpu", batch_size=8, readout=readout)
    assert len(calls) == 1  # one batch, one forward pass, both blocks
    again = cached_features(enc, imgs, images_key="k-test", device="cpu", batch_size=8, readout=readout)
    assert len(calls) == 1
    np.testing.assert_array_equal(first, again)
    plain = cached_features(enc, imgs, images_key="k-test", device="cpu", batch_size=8)
    np.testing.assert_array_equal(first[:, enc.info.arch.embed_dim:], plain)


def test_untrained_fc_norm_is_detected(tmp_path: Path) -> None:
    path = tmp_path / "u.pth"
    make_u_mae(path, seed=1)
    trained = load_encoder(path)
    assert trained.model.fc_norm is not None and not fc_norm_untrained(trained.model)
    with torch.no_grad():
        trained.model.fc_norm.weight.fill_(1.0)
        trained.model.fc_norm.bias.zero_()
    assert fc_norm_untrained(trained.model)
