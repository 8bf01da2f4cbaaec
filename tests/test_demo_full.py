"""`scripts/ship_demo_full.py` and `umae reconstruct --demo`: a slimmed training checkpoint
reconstructs like the full one (within float16), keeps its metadata, stays under 2 MB, and the
shipped files are what their provenance says (seed 1, the epoch stated)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch

import ckpt_factory as CF
from umae_eval.checkpoints import read_checkpoint
from umae_eval.preprocess import to_model_input
from umae_eval.visual.demo_full import MAX_BYTES, demo_full_checkpoints, demo_label
from umae_eval.visual.mae_model import build_mae
from umae_eval.visual.masks import mask_from_noise, mask_noise
from umae_eval.visual.reconstruct import predict

ROOT = Path(__file__).resolve().parents[1]


def _script() -> object:
    spec = importlib.util.spec_from_file_location("ship_demo_full", ROOT / "scripts" / "ship_demo_full.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def _predictions(path: Path, images: np.ndarray, seed: int = 4) -> torch.Tensor:
    loaded = build_mae(read_checkpoint(path))
    x = to_model_input(images, loaded.arch.img_size, (0.5,) * 3, (0.5,) * 3)
    masks = mask_from_noise(mask_noise(len(x), loaded.arch.num_patches, seed), 0.75)
    with torch.no_grad():
        return predict(loaded.model, x, masks)


def _fp16_copy(src: Path, dst: Path) -> None:
    """The same checkpoint with every float weight rounded to float16 and back (kept float32)."""
    ckpt = torch.load(src, weights_only=True)
    ckpt["model"] = {k: v.half().float() if v.is_floating_point() else v for k, v in ckpt["model"].items()}
    torch.save(ckpt, dst)


def test_slimmed_checkpoint_reconstructs_like_the_full_one(tmp_path: Path) -> None:
    run = tmp_path / "run"
    run.mkdir()
    full = run / "last.pth"
    CF.make_umae(full, {"decoder_num_heads": 2, "norm_pix_loss": True, "seed": 1, "epoch": 7,
                        "preset_fields": {"epochs": 20}}, epoch=7)
    (run / "config.json").write_text(json.dumps({"command_line": ["umae", "train", "--seed", "1"]}))
    out = tmp_path / "full" / "mae-s1.pth"
    entry = _script().ship(full, out)  # type: ignore[attr-defined]

    slim = torch.load(out, weights_only=True)
    assert set(slim) == {"model", "umae"}  # no optimiser, RNG or sampler state
    assert all(v.dtype == torch.float16 for v in slim["model"].values() if v.is_floating_point())
    assert set(slim["model"]) == set(torch.load(full, weights_only=True)["model"])  # encoder + decoder
    meta = slim["umae"]
    assert (meta["norm_pix_loss"], meta["epoch"], meta["seed"], meta["lam"]) == (True, 7, 1, 0.01)
    assert out.stat().st_size == entry["bytes"] < MAX_BYTES
    prov = json.loads((out.parent / "provenance.json").read_text())["mae-s1.pth"]
    assert prov["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert prov["source_checkpoint_sha256"] == hashlib.sha256(full.read_bytes()).hexdigest()
    assert (prov["epoch"], prov["epochs_planned"], prov["seed"], prov["command"]) == (7, 20, 1, "umae train --seed 1")
    assert demo_label(prov) == "U-MAE λ=0.01 seed 1 e7"

    images = np.random.default_rng(0).integers(0, 256, (5, 32, 32, 3), dtype=np.uint8)
    got, want = _predictions(out, images), _predictions(full, images)
    # the slimmed file is exactly the full model with float16-rounded weights ...
    _fp16_copy(full, tmp_path / "rounded.pth")
    torch.testing.assert_close(got, _predictions(tmp_path / "rounded.pth", images), rtol=1e-5, atol=1e-5)
    # ... and reconstructs like the float32 one within what float16 weights allow
    assert float((got - want).abs().max()) < 2e-2 * float(want.abs().max())
    assert build_mae(read_checkpoint(out)).decoder_hints["norm_pix_loss"] is True


def test_ship_refuses_a_file_without_a_decoder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    enc = tmp_path / "enc.pth"
    CF.make_official_encoder(enc)
    assert _script().main([str(enc), str(tmp_path / "o" / "x.pth")]) == 2  # type: ignore[attr-defined]
    assert "not a umae training checkpoint" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_shipped_full_checkpoints_are_what_their_provenance_says() -> None:
    shipped = demo_full_checkpoints()
    assert [d.path.name for d in shipped] == ["mae-s1.pth", "u-mae-s1.pth"]
    for d in shipped:
        p = d.provenance
        assert d.path.stat().st_size == p["bytes"] < MAX_BYTES
        assert hashlib.sha256(d.path.read_bytes()).hexdigest() == p["sha256"]
        meta = torch.load(d.path, weights_only=True)["umae"]
        assert (meta["seed"], meta["epoch"], meta["lam"], meta["norm_pix_loss"]) == (
            1, p["epoch"], p["lam"], p["norm_pix_loss"])
        assert d.label == demo_label(p) and f"seed 1 e{p['epoch']}" in d.label
        loaded = build_mae(read_checkpoint(d.path))
        assert loaded.decoder_arch.depth == 2
        src = Path(p["source_checkpoint"])  # the study run's full file, where this machine has it
        if src.is_file() and hashlib.sha256(src.read_bytes()).hexdigest() == p["source_checkpoint_sha256"]:
            images = np.random.default_rng(1).integers(0, 256, (4, 32, 32, 3), dtype=np.uint8)
            got, want = _predictions(d.path, images), _predictions(src, images)
            assert float((got - want).abs().max()) < 2e-2 * float(want.abs().max())


def test_demo_flag_refusals(capsys: pytest.CaptureFixture[str]) -> None:
    from umae_eval.cli import main

    for args, needle in ((["reconstruct", "--demo", "x.pth"], "either --demo or checkpoint files"),
                         (["reconstruct"], "or --demo for the shipped ones")):
        assert main(args) == 2
        err = capsys.readouterr()
        lines = [ln for ln in (err.out + err.err).splitlines() if ln.strip()]
        assert len(lines) == 1 and needle in lines[0], lines


@pytest.mark.slow  # decodes the 4,000 demo images and draws picture figures
def test_reconstruct_demo_end_to_end(tmp_path: Path) -> None:
    from umae_eval.cli import main

    out = tmp_path / "o"
    assert main(["reconstruct", "--demo", "--images", "2", "--stat-images", "4", "--bootstrap", "20",
                 "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    names = [c["name"] for c in res["results"]["checkpoints"]]
    assert names[0].startswith("MAE seed 1 e") and names[1].startswith("U-MAE λ=0.01 seed 1 e")
    assert any("seed-0 encoders" in s for s in res["settings"]["demo"])
    assert "not the seed-0" in (out / "report.html").read_text() or "seed-0 encoders" in (out / "report.html").read_text()
