"""umae_eval.checkpoints: every layout round-trips exactly; every bad input is refused in one line."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from ckpt_factory import (
    make_needs_pickle,
    make_official_encoder,
    make_official_full,
    make_timm,
    make_u_mae,
    make_umae,
    make_umae_layout_official,
    random_bytes_file,
    tiny_vit,
    truncated_copy,
)
from umae_eval.checkpoints import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    ViTArch,
    detect_layout,
    encoder_state_dict,
    infer_arch,
    load_encoder,
    random_init_encoder,
)
from umae_eval.errors import UmaeError

# Written out by hand (not taken from the module) so the test checks the loader's key filter.
NOT_ENCODER = ("mask_token", "decoder_", "fc.", "head.")


def expected_encoder(saved: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in saved.items() if not k.startswith(NOT_ENCODER)}


def images(n: int = 2, size: int = 32, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(seed))


LAYOUT_CASES = [
    ("official-encoder", lambda p, **a: make_official_encoder(p, **a), ".pth"),
    ("official-full", lambda p, **a: make_official_full(p, **a), ".pth"),
    ("official-full", lambda p, **a: make_umae_layout_official(p, **a), ".pth"),
    ("u-mae", lambda p, **a: make_u_mae(p, **a), ".pth"),
    ("timm", lambda p, **a: make_timm(p, "pth", **a), ".pth"),
    ("timm", lambda p, **a: make_timm(p, "bin", with_head=True, **a), ".bin"),
    ("timm", lambda p, **a: make_timm(p, "safetensors", with_head=True, **a), ".safetensors"),
    ("umae", lambda p, **a: make_umae(p, **a), ".pth"),
]


@pytest.mark.parametrize("patch_size", [4, 2])
@pytest.mark.parametrize("layout,make,suffix", LAYOUT_CASES,
                         ids=[f"{c[0]}{c[2]}-{i}" for i, c in enumerate(LAYOUT_CASES)])
def test_layout_round_trips_exactly(tmp_path: Path, layout: str, make, suffix: str,
                                    patch_size: int) -> None:
    path = tmp_path / f"ckpt{suffix}"
    saved = make(path, patch_size=patch_size, seed=7)
    enc = load_encoder(path)

    assert enc.info.layout == layout
    want = expected_encoder(saved)
    got = enc.model.state_dict()
    assert set(got) == set(want)
    for key, value in want.items():
        assert torch.equal(got[key], value), key
    assert not enc.model.training
    assert enc.info.arch == ViTArch(img_size=32, patch_size=patch_size, embed_dim=192, depth=2,
                                    num_heads=3, mlp_ratio=4.0,
                                    has_fc_norm="fc_norm.weight" in saved)
    # The forward equals the forward of the ViT the file was made from ([CLS] after the norm).
    original = tiny_vit(patch_size=patch_size, seed=7)
    with torch.no_grad():
        assert torch.equal(enc.model(images()), original(images()))
    assert enc.info.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert enc.info.n_params == sum(t.numel() for t in want.values())


def test_summary_and_json(tmp_path: Path) -> None:
    path = tmp_path / "mae_pretrain_vit_tiny.pth"
    saved = make_official_encoder(path)
    info = load_encoder(path).info
    n = sum(t.numel() for t in saved.values())
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert info.summary() == (f"official-encoder: ViT dim192 depth2 heads3 p4 32px, "
                              f"{n / 1e6:.2f}M params, sha256 {digest[:12]}")
    assert "\n" not in info.summary()
    data = json.loads(json.dumps(info.to_json()))
    assert data["arch"]["embed_dim"] == 192 and data["layout"] == "official-encoder"
    assert data["mean"] == list(IMAGENET_MEAN) and data["std"] == list(IMAGENET_STD)
    assert data["run_dir"] is None and data["path"] == str(path)


def test_u_mae_keeps_fc_norm_for_avg_only_and_reads_args(tmp_path: Path) -> None:
    path = tmp_path / "u_mae.pth"
    saved = make_u_mae(path, lamb=0.01)
    enc = load_encoder(path)
    assert enc.info.arch.has_fc_norm
    assert torch.equal(enc.model.fc_norm.weight, saved["fc_norm.weight"])
    assert "fc.weight" not in enc.model.state_dict()
    assert enc.info.metadata["lamb"] == 0.01 and enc.info.metadata["input_size"] == 32
    assert "+fc_norm" in enc.info.summary()
    json.dumps(enc.info.to_json())


def test_umae_metadata_sets_norm_heads_and_run_dir(tmp_path: Path) -> None:
    run = tmp_path / "runs" / "tiny"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"epoch": 0}\n')
    path = run / "checkpoint-0003.pth"
    make_umae(path, metadata={"mean": [0.4, 0.5, 0.6], "std": [0.2, 0.3, 0.25]}, num_heads=6)
    enc = load_encoder(path)
    assert enc.info.layout == "umae"
    assert enc.info.mean == (0.4, 0.5, 0.6) and enc.info.std == (0.2, 0.3, 0.25)
    assert enc.info.arch.num_heads == 6  # from the metadata: not visible in the weights
    assert enc.info.run_dir == str(run)
    assert enc.info.metadata["method"] == "u-mae"
    with torch.no_grad():
        assert torch.equal(enc.model(images()), tiny_vit(num_heads=6)(images()))
    # An explicit norm wins over the metadata; without metrics.jsonl there is no run_dir.
    (run / "metrics.jsonl").unlink()
    enc = load_encoder(path, norm=((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)))
    assert enc.info.mean == (0.5, 0.5, 0.5) and enc.info.run_dir is None


def test_non_default_dim_needs_heads_override(tmp_path: Path) -> None:
    path = tmp_path / "dim96.pth"
    make_official_encoder(path, embed_dim=96, num_heads=2, mlp_ratio=2.0)
    with pytest.raises(UmaeError, match=r"dim96\.pth: cannot infer the number of attention heads "
                                        r"for embed dim 96.*arch_overrides=\{'num_heads': N\}"):
        load_encoder(path)
    enc = load_encoder(path, arch_overrides={"num_heads": 2})
    assert enc.info.arch == ViTArch(32, 4, 96, 2, 2, 2.0, False)
    with torch.no_grad():
        assert torch.equal(enc.model(images()),
                           tiny_vit(embed_dim=96, num_heads=2, mlp_ratio=2.0)(images()))


def meta_vit(dim: int, depth: int, patch: int, grid: int, hidden: int) -> dict[str, torch.Tensor]:
    """Shapes only (meta tensors): lets the test check inference for real-size ViTs for free."""
    t = lambda *s: torch.empty(*s, device="meta")  # noqa: E731
    state = {"cls_token": t(1, 1, dim), "pos_embed": t(1, grid * grid + 1, dim),
             "patch_embed.proj.weight": t(dim, 3, patch, patch), "norm.weight": t(dim)}
    for i in range(depth):
        state[f"blocks.{i}.mlp.fc1.weight"] = t(hidden, dim)
    return state


@pytest.mark.parametrize("dim,depth,patch,grid,heads,img", [
    (768, 12, 16, 14, 12, 224), (1024, 24, 16, 14, 16, 224), (1280, 32, 14, 16, 16, 224),
    (192, 12, 2, 16, 3, 32), (128, 6, 4, 8, 2, 32),
])
def test_infer_arch_for_published_sizes(dim: int, depth: int, patch: int, grid: int, heads: int,
                                        img: int) -> None:
    arch = infer_arch(meta_vit(dim, depth, patch, grid, 4 * dim))
    assert arch == ViTArch(img, patch, dim, depth, heads, 4.0, False, True)


def test_infer_arch_rejects_unknown_override() -> None:
    with pytest.raises(UmaeError, match="unknown architecture override.*heads.*valid names"):
        infer_arch(meta_vit(192, 2, 4, 8, 768), source="x.pth", overrides={"heads": 3})


def test_detect_layout_and_encoder_state_dict() -> None:
    enc = {"cls_token": 0, "pos_embed": 0, "patch_embed.proj.weight": 0, "blocks.0.norm1.weight": 0}
    assert detect_layout(enc) == "timm"
    assert detect_layout({f"module.{k}": v for k, v in enc.items()}) == "timm"
    assert detect_layout({"model": enc}) == "official-encoder"
    assert detect_layout({"model": {**enc, "decoder_pred.weight": 0}}) == "official-full"
    assert detect_layout({"model": {**enc, "fc.weight": 0, "fc_norm.weight": 0}}) == "u-mae"
    assert detect_layout({"model": enc, "umae": {"format_version": 1}}) == "umae"
    full = {**enc, "mask_token": 1, "decoder_embed.weight": 1, "decoder_pos_embed": 1,
            "decoder_blocks.0.norm1.weight": 1, "decoder_norm.bias": 1, "decoder_pred.bias": 1,
            "fc_norm.weight": 2, "fc.weight": 3, "head.bias": 4}
    assert encoder_state_dict(full) == {**enc, "fc_norm.weight": 2}
    assert encoder_state_dict({f"module.{k}": v for k, v in enc.items()}) == enc


def test_random_init_is_deterministic_and_leaves_global_rng(tmp_path: Path) -> None:
    arch = ViTArch(32, 4, 192, 2, 3)
    state = torch.get_rng_state()
    a, b, c = random_init_encoder(arch, seed=3), random_init_encoder(arch, seed=3), \
        random_init_encoder(arch, seed=4)
    assert torch.equal(torch.get_rng_state(), state)
    sa, sb, sc = (e.model.state_dict() for e in (a, b, c))
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert not torch.equal(sa["blocks.0.attn.qkv.weight"], sc["blocks.0.attn.qkv.weight"])
    assert a.info.layout == "random-init" and a.info.sha256 == "random-init-seed3"
    assert a.info.summary().endswith("sha256 random-init-seed3")
    assert a.info.arch == arch and not a.model.training


# ---------------------------------------------------------------------------------------------
# Refusals: one line, naming the file and the fix, exit code 2
# ---------------------------------------------------------------------------------------------

def refusal(path: Path, **kwargs) -> UmaeError:
    with pytest.raises(UmaeError) as info:
        load_encoder(path, **kwargs)
    err = info.value
    assert err.exit_code == 2
    assert "\n" not in str(err)
    assert str(path) in str(err)
    return err


def test_missing_file(tmp_path: Path) -> None:
    assert "checkpoint not found" in str(refusal(tmp_path / "nope.pth"))


def test_empty_file(tmp_path: Path) -> None:
    (tmp_path / "empty.pth").write_bytes(b"")
    assert "empty" in str(refusal(tmp_path / "empty.pth"))


def test_truncated_pth(tmp_path: Path) -> None:
    make_official_full(tmp_path / "full.pth")
    cut = truncated_copy(tmp_path / "full.pth", tmp_path / "cut.pth")
    assert "truncated or not a PyTorch checkpoint" in str(refusal(cut))


def test_random_bytes(tmp_path: Path) -> None:
    path = random_bytes_file(tmp_path / "noise.pth")
    assert "truncated or not a PyTorch checkpoint" in str(refusal(path))


def test_truncated_safetensors(tmp_path: Path) -> None:
    make_timm(tmp_path / "w.safetensors", "safetensors")
    cut = truncated_copy(tmp_path / "w.safetensors", tmp_path / "cut.safetensors")
    assert "truncated or not a safetensors file" in str(refusal(cut))


def test_unknown_layout_lists_keys(tmp_path: Path) -> None:
    path = tmp_path / "lightning.ckpt"
    torch.save({"state_dict": {"backbone.w": torch.zeros(2)}, "global_step": 5,
                "hyper_parameters": {}}, path)
    msg = str(refusal(path))
    assert "unknown checkpoint layout" in msg
    assert "state_dict, global_step, hyper_parameters" in msg


def test_unknown_inner_model_lists_inner_keys(tmp_path: Path) -> None:
    path = tmp_path / "resnet.pth"
    torch.save({"model": {f"layer{i}.weight": torch.zeros(1) for i in range(14)}}, path)
    msg = str(refusal(path))
    assert "'model' keys: layer0.weight, layer1.weight" in msg and "(14 keys)" in msg
    assert "layer10.weight" not in msg  # only the first ten


def test_needs_trust_pickle(tmp_path: Path) -> None:
    path = tmp_path / "custom.pth"
    saved = make_needs_pickle(path)
    msg = str(refusal(path))
    assert "ckpt_factory.OpaqueConfig" in msg and "--trust-pickle" in msg
    enc = load_encoder(path, trust_pickle=True)
    assert enc.info.layout == "official-encoder"
    assert all(torch.equal(enc.model.state_dict()[k], v) for k, v in saved.items())


def test_shape_mismatch_names_key_and_shapes(tmp_path: Path) -> None:
    state = make_official_encoder(tmp_path / "ok.pth")
    state["blocks.1.mlp.fc1.weight"] = torch.zeros(384, 192)
    state["blocks.1.mlp.fc1.bias"] = torch.zeros(384)
    state["blocks.1.mlp.fc2.weight"] = torch.zeros(192, 384)
    torch.save({"model": state}, tmp_path / "bad.pth")
    msg = str(refusal(tmp_path / "bad.pth"))
    assert "shape mismatch for 'blocks.1.mlp.fc1.weight'" in msg
    assert "(384, 192)" in msg and "(768, 192)" in msg


def test_override_that_does_not_fit_is_a_shape_mismatch(tmp_path: Path) -> None:
    make_official_encoder(tmp_path / "ok.pth")
    msg = str(refusal(tmp_path / "ok.pth", arch_overrides={"img_size": 64}))
    assert "shape mismatch for 'pos_embed'" in msg and "(1, 65, 192)" in msg and "(1, 257, 192)" in msg


def test_missing_key(tmp_path: Path) -> None:
    state = make_timm(tmp_path / "ok.pth")
    del state["blocks.0.attn.qkv.bias"]
    torch.save(state, tmp_path / "nobias.pth")
    msg = str(refusal(tmp_path / "nobias.pth"))
    assert "missing blocks.0.attn.qkv.bias" in msg


def test_bad_umae_metadata_norm(tmp_path: Path) -> None:
    make_umae(tmp_path / "u.pth", metadata={"std": [0.5, 0.0, 0.5]})
    assert "std must be positive" in str(refusal(tmp_path / "u.pth"))



def test_official_finetuned_layout_uses_fc_norm_without_final_norm(tmp_path: Path) -> None:
    """MAE's fine-tuned files (global pooling) drop ``norm.*`` and add ``fc_norm.*`` + ``head.*``."""
    state = make_official_encoder(tmp_path / "enc.pth")
    state["fc_norm.weight"], state["fc_norm.bias"] = state.pop("norm.weight"), state.pop("norm.bias")
    state["head.weight"], state["head.bias"] = torch.ones(10, 192), torch.zeros(10)
    torch.save({"model": state}, tmp_path / "mae_finetuned.pth")
    enc = load_encoder(tmp_path / "mae_finetuned.pth")
    assert enc.info.layout == "official-encoder"
    assert enc.info.arch.has_fc_norm and not enc.info.arch.has_final_norm
    assert "no-final-norm" in enc.info.summary()
    assert set(enc.model.state_dict()) == set(state) - {"head.weight", "head.bias"}
    original = tiny_vit()
    with torch.no_grad():  # blocks unchanged, no final norm on the tokens
        want = original.blocks(original._pos_embed(original.patch_embed(images())))
        torch.testing.assert_close(enc.model.forward_features(images()), want, rtol=0, atol=0)


def test_blocked_module_global_names_trust_pickle(tmp_path: Path) -> None:
    """torch blocks some modules outright (os.system -> 'posix.system ... is blocked'): same advice."""
    import os

    class Hostile:  # unpickling it would run a shell command
        def __reduce__(self) -> tuple:
            return (os.system, ("echo pwned",))

    torch.save({"model": tiny_vit().state_dict(), "extra": Hostile()}, tmp_path / "hostile.pth")
    msg = str(refusal(tmp_path / "hostile.pth"))
    assert f"needs full unpickling of {os.system.__module__}.system" in msg and "--trust-pickle" in msg
