"""`umae finetune` runs: partial fine-tuning keeps frozen tensors bit-equal, SIGKILL + --resume auto
is bit-exact, the checkpoint loads in umae's loaders, bad input is one line with exit 2 and
nothing written, and the shipped MAE encoder beats a random init after one demo epoch."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from trainer.finetune import FinetuneConfig, finetune_run
from trainer.runlog import read_metrics
from umae_eval.checkpoints import load_encoder

from ckpt_factory import make_official_encoder
from toy_images import toy_npz

ROOT = Path(__file__).resolve().parents[1]
DEMO_MAE = ROOT / "umae_eval" / "demo" / "encoders" / "mae-cifar10-vit96x6-p4-e20.pth"
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
       "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
# 64 toy train images, batch 16: 4 steps per epoch; the whole cpu-demo recipe (RandAugment,
# RandomErasing, mixup/cutmix, drop path) on the host path, so every random draw matters.
_COMMON: dict[str, Any] = dict(preset="cpu-demo", epochs=2, batch_size=16, workers=0, seed=3)


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("ft")
    enc = d / "enc.pth"
    make_official_encoder(enc, embed_dim=64, num_heads=1, depth=3, patch_size=8)
    return {"enc": enc, "data": toy_npz(d / "toy.npz", seed=0)}


def _run(files: dict[str, Path], out: Path, **kw: Any) -> Any:
    return finetune_run(FinetuneConfig(checkpoint=str(files["enc"]), data=str(files["data"]), out=out,
                                       **{**_COMMON, **kw}))


def test_freeze_blocks_leaves_frozen_tensors_bit_equal(files: dict[str, Path], tmp_path: Path) -> None:
    _run(files, tmp_path / "p", epochs=1, freeze_blocks=2)
    tuned = torch.load(tmp_path / "p" / "last.pth", weights_only=True)["model"]
    source = load_encoder(files["enc"]).model.state_dict()
    frozen = [k for k in source if k in ("cls_token", "pos_embed") or k.startswith(("patch_embed.", "blocks.0.",
                                                                                     "blocks.1."))]
    assert len(frozen) > 10
    for k in frozen:
        assert torch.equal(tuned[k], source[k].float()), k
    assert not torch.equal(tuned["blocks.2.attn.qkv.weight"], source["blocks.2.attn.qkv.weight"])
    config = json.loads((tmp_path / "p" / "config.json").read_text())
    assert config["freeze_blocks"] == 2 and config["frozen_parameters"] == 4 + 2 * 12  # cls, pos, patch w+b; 12 per block


def test_checkpoint_loads_as_umae_layout_with_its_provenance(files: dict[str, Path], tmp_path: Path) -> None:
    result = _run(files, tmp_path / "l", epochs=1, pool="cls")
    loaded = load_encoder(result.checkpoint)
    tuned = torch.load(result.checkpoint, weights_only=True)
    assert loaded.info.layout == "umae" and loaded.info.arch.depth == 3 and loaded.info.arch.num_heads == 1
    for k, v in loaded.model.state_dict().items():
        assert torch.equal(v, tuned["model"][k]), k
    meta = tuned["umae"]
    assert meta["kind"] == "finetune" and meta["finetune"]["tuned_on"] == str(files["data"])
    assert meta["finetune"]["num_classes"] == 4 and "head.weight" in tuned["model"]
    from umae_eval.checkpoints.naming import metadata_name
    from umae_eval.pipeline.recipe import recipe_of

    # shown as fine-tuned, never as a frozen MAE (whose Table 1 row is a linear probe)
    assert metadata_name(loaded.info) == "fine-tuned (official-encoder) e1"
    assert recipe_of(loaded.info.layout, loaded.info.metadata).method not in ("MAE", "U-MAE")
    record = read_metrics(tmp_path / "l")[-1]
    assert set(record) >= {"epoch", "loss", "lr", "test_top1", "test_top5"}
    assert 0 <= record["test_top1"] <= record["test_top5"] <= 100


_CHILD = r"""
import json, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from trainer.finetune import FinetuneConfig, finetune_run
kw, stall, marker = json.loads(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])

def on_step(info):
    if info.step == stall:
        marker.write_text(str(info.step))
        while True:
            time.sleep(1)

finetune_run(FinetuneConfig(**kw), on_step=on_step)
"""


@pytest.mark.slow
def test_sigkill_then_resume_auto_is_bit_exact(files: dict[str, Path], tmp_path: Path) -> None:
    reference = tmp_path / "reference"
    _run(files, reference)
    out, marker = tmp_path / "killed", tmp_path / "stalled"
    kw = dict(checkpoint=str(files["enc"]), data=str(files["data"]), out=str(out), **_COMMON)
    child = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(kw), "6", str(marker)], cwd=ROOT, env=ENV,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 300
        while not marker.exists():
            if child.poll() is not None:
                pytest.fail(f"child exited early: {child.stderr.read().decode()[-2000:]}")  # type: ignore[union-attr]
            if time.monotonic() > deadline:
                pytest.fail("child did not reach step 6")
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)  # mid-epoch 2; last.pth is the end of epoch 1
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    resumed = _run(files, out, resume="auto")
    assert resumed.resumed_from is not None and resumed.resumed_from.name == "last.pth"
    ca = torch.load(reference / "last.pth", weights_only=True)
    cb = torch.load(out / "last.pth", weights_only=True)
    assert ca["step"] == cb["step"] == 8
    for k in ca["model"]:
        assert torch.equal(ca["model"][k], cb["model"][k]), k
    for i, sa in ca["optimizer"]["state"].items():
        assert torch.equal(sa["exp_avg_sq"], cb["optimizer"]["state"][i]["exp_avg_sq"]), i
    ma, mb = read_metrics(reference), read_metrics(out)
    assert [r["epoch"] for r in mb] == [1, 2]
    for ra, rb in zip(ma, mb):
        for key in ("step", "loss", "lr", "test_top1", "test_top5", "test_loss"):
            assert ra[key] == rb[key], (ra["epoch"], key)


def _umae(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["umae", "finetune", *args], cwd=ROOT, env=ENV, capture_output=True, text=True,
                          timeout=300)


def _one_error_line(text: str, message: str) -> None:
    lines = [ln for ln in text.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0], lines


def test_checkpoint_without_encoder_through_the_umae_command(files: dict[str, Path], tmp_path: Path) -> None:
    no_encoder = tmp_path / "decoder_only.pth"
    torch.save({"model": {"decoder_embed.weight": torch.zeros(4, 4), "mask_token": torch.zeros(1, 1, 4)}},
               no_encoder)
    out = tmp_path / "out"
    proc = _umae(str(no_encoder), "--preset", "cpu-demo", "--data", str(files["data"]), "--out", str(out))
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    _one_error_line(proc.stdout + proc.stderr, "unknown checkpoint layout")
    assert not out.exists()


def test_bad_options_one_line_exit_2_nothing_written(files: dict[str, Path], tmp_path: Path,
                                                     capfd: pytest.CaptureFixture[str]) -> None:
    from umae_eval.cli import main  # the console script's entry point, in-process (saves a start-up each)

    cases = [
        (["--preset", "cpu-dem"], "--preset 'cpu-dem' is not a fine-tuning preset; choose one of"),
        (["--preset", "cpu-demo", "--freeze-blocks", "4"],
         "--freeze-blocks 4: " + str(files["enc"]) + " has 3 blocks; choose 0 to 3"),
        (["--preset", "cpu-demo", "--set", "layer_decay=2"], "layer_decay must be in (0, 1]"),
    ]
    for i, (args, message) in enumerate(cases):
        out = tmp_path / f"out{i}"
        capfd.readouterr()
        code = main(["finetune", str(files["enc"]), *args, "--data", str(files["data"]), "--out", str(out)])
        captured = capfd.readouterr()
        assert code == 2, args
        _one_error_line(captured.out + captured.err, message)
        assert not out.exists()


@pytest.mark.slow
def test_one_demo_epoch_from_mae_beats_random_init(tmp_path: Path) -> None:
    common = dict(checkpoint=str(DEMO_MAE), data="demo", preset="cpu-demo", epochs=1, batch_size=32, workers=0,
                  max_train_images=1500, eval_images=500, seed=0)
    mae = finetune_run(FinetuneConfig(out=tmp_path / "mae", **common)).final
    scratch = finetune_run(FinetuneConfig(out=tmp_path / "scratch", random_init=True, **common)).final
    assert mae["test_top1"] > scratch["test_top1"], (mae, scratch)


def test_command_writes_run_folder_and_results(files: dict[str, Path], tmp_path: Path,
                                              capfd: pytest.CaptureFixture[str]) -> None:
    from umae_eval.cli import main

    out = tmp_path / "cli"
    code = main(["finetune", str(files["enc"]), "--data", str(files["data"]), "--preset", "cpu-demo", "--epochs", "1",
                 "--batch-size", "16", "--workers", "0", "--random-init", "--set", "rand_augment=none",
                 "--aug-path", "device", "--out", str(out)])
    assert code == 0, capfd.readouterr()
    names = {p.name for p in out.iterdir()}
    assert {"checkpoint-1.pth", "config.json", "last.pth", "metrics.jsonl", "results.json"} <= names
    assert names - {"checkpoint-1.pth", "config.json", "last.pth", "metrics.jsonl", "results.json"} <= {"tensorboard"}
    results = json.loads((out / "results.json").read_text())
    assert results["command"] == "finetune" and results["results"]["encoder"]["random_init"] is True
    assert results["settings"]["aug_path"] == "device" and "batched on the device" in results["settings"]["augmentation"]
    assert results["results"]["final"]["test_top1"] == read_metrics(out)[-1]["test_top1"]
    meta = torch.load(out / "last.pth", weights_only=True)["umae"]
    assert meta["method"] == "fine-tuned (random init)" and meta["finetune"]["random_init"] is True


def test_nan_loss_stops_with_one_line_and_keeps_the_last_checkpoint(files: dict[str, Path], tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import trainer.finetune as ft
    from umae_eval.errors import UmaeError

    real = ft.train_criterion

    def poisoned(preset: Any) -> Any:
        crit, calls = real(preset), [0]

        def loss(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            calls[0] += 1
            value = crit(logits, target)
            return value * float("nan") if calls[0] == 6 else value  # step 6 = epoch 2, step 2

        return loss

    monkeypatch.setattr(ft, "train_criterion", poisoned)
    out = tmp_path / "nan"
    with pytest.raises(UmaeError) as err:
        _run(files, out)
    assert err.value.message.startswith("the loss became nan at epoch 2, step 6; ")
    assert f"{out / 'last.pth'} is intact" in err.value.message and "--resume auto" in err.value.message
    assert torch.load(out / "last.pth", weights_only=True)["epoch"] == 1
    assert [r["epoch"] for r in read_metrics(out)] == [1]


def test_worker_count_does_not_change_the_run(files: dict[str, Path], tmp_path: Path) -> None:
    """Each image's augmentation is seeded by (seed, epoch, image): 0 or 2 DataLoader workers, same bits."""
    a = _run(files, tmp_path / "w0", epochs=1, workers=0)
    b = _run(files, tmp_path / "w2", epochs=1, workers=2)
    ma = torch.load(a.checkpoint, weights_only=True)["model"]
    mb = torch.load(b.checkpoint, weights_only=True)["model"]
    for k in ma:
        assert torch.equal(ma[k], mb[k]), k
