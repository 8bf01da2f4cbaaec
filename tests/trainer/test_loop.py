"""The training loop: fast path == plain path, batches, the run folder, NaN stop, the CLI."""

from __future__ import annotations

import copy
import importlib.util
import json
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import torch

import trainer.loop as loop
import trainer.step as step  # the step (accumulate_gradients) calls loss_terms
from trainer.batches import (
    ResidentImages,
    StreamedImages,
    augment_batch,
    epoch_permutation,
    rank_indices,
    steps_per_epoch,
)
from trainer.loop import TrainConfig, accumulate_gradients, autocast_dtype, train_run
from trainer.model import build_model
from trainer.presets import get_preset
from umae_eval.provenance import sha256_file
from trainer.runlog import read_metrics
from trainer.schedule import CosineSchedule, build_optimizer
from umae_eval.cli import main
from umae_eval.errors import UmaeError

from toy_images import toy_images

ROOT = Path(__file__).resolve().parents[2]
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def toy_npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "toy.npz"
    x_train, y_train = toy_images(64, 0)
    x_test, y_test = toy_images(32, 1)
    np.savez(path, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)
    return path


def _config(data: Path, out: Path, **kw: object) -> TrainConfig:
    base: dict = dict(data=str(data), preset="tiny-test", out=out, eval_images=32, knn_train_images=64)
    base.update(kw)
    return TrainConfig(**base)


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("train_throughput", ROOT / "benchmarks" / "train_throughput.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


# --------------------------------------------------------------------------- one step


def test_fast_path_equals_plain_path_on_one_step() -> None:
    bench = _bench()
    p = get_preset("tiny-test", lam=0.01)
    images, _ = toy_images(64)
    order = epoch_permutation(64, seed=0, epoch=0)
    torch.manual_seed(0)
    base = build_model(p)
    fast_model, plain_model = copy.deepcopy(base), copy.deepcopy(base)

    _, raw = next(ResidentImages(images, CPU).epoch(order, range(1), p.batch_size))
    x = augment_batch(raw, p.img_size, p.mean, p.std, "none")
    torch.manual_seed(1)
    fast_terms = accumulate_gradients(fast_model, x, mask_ratio=p.mask_ratio, lam=p.lam, unif_form=p.unif_form,
                                      micro_batch=p.micro_batch, amp_dtype=autocast_dtype("auto", CPU))

    host_batch = next(iter(bench.plain_loader(images, order, p.batch_size)))
    assert torch.equal(raw, host_batch)
    torch.manual_seed(1)
    plain_terms = bench.plain_gradients(plain_model, host_batch, p, CPU, p.micro_batch)

    assert fast_terms[2] > 0  # the uniformity term is in play
    torch.testing.assert_close(fast_terms, plain_terms, rtol=1e-6, atol=1e-7)
    fast_params = dict(fast_model.named_parameters())
    for name, param in plain_model.named_parameters():
        if param.requires_grad:
            torch.testing.assert_close(fast_params[name].grad, param.grad, rtol=1e-5, atol=1e-7, msg=name)

    fast_opt = build_optimizer(fast_model, 1e-3, p.betas, p.weight_decay, CPU)  # foreach
    plain_opt = bench.plain_optimizer(plain_model, p)  # single-tensor
    for g in plain_opt.param_groups:
        g["lr"] = 1e-3
    fast_opt.step()
    plain_opt.step()
    for name, param in plain_model.named_parameters():
        torch.testing.assert_close(fast_params[name], param, rtol=1e-5, atol=1e-7, msg=name)


def test_micro_batches_accumulate_the_whole_batch_gradient() -> None:
    p = get_preset("tiny-test")
    torch.manual_seed(0)
    a = build_model(p)
    b = copy.deepcopy(a)
    x = torch.randn(16, 3, 32, 32)
    noise = torch.rand(16, p.num_patches)
    ta = accumulate_gradients(a, x, mask_ratio=0.75, lam=0.0, unif_form="code", micro_batch=4, noise=noise)
    tb = accumulate_gradients(b, x, mask_ratio=0.75, lam=0.0, unif_form="code", micro_batch=None, noise=noise)
    torch.testing.assert_close(ta, tb)
    grads_b = {n: q.grad for n, q in b.named_parameters()}
    for name, q in a.named_parameters():
        if q.requires_grad:
            torch.testing.assert_close(q.grad, grads_b[name], rtol=1e-4, atol=1e-7, msg=name)


# --------------------------------------------------------------------------- batches


def test_epoch_order_is_seeded_and_sharded() -> None:
    assert torch.equal(epoch_permutation(50, 3, 1), epoch_permutation(50, 3, 1))
    assert not torch.equal(epoch_permutation(50, 3, 1), epoch_permutation(50, 3, 2))
    assert sorted(epoch_permutation(50, 3, 1).tolist()) == list(range(50))
    perm = epoch_permutation(50, 0, 0)
    assert steps_per_epoch(50, 16) == 3  # drop_last
    shards = [rank_indices(perm, 1, 16, r, 4) for r in range(4)]
    assert torch.equal(torch.cat(shards), perm[16:32])
    with pytest.raises(UmaeError, match="--batch-size"):
        steps_per_epoch(10, 16)


def test_streamed_and_resident_batches_are_identical() -> None:
    images, _ = toy_images(40)
    perm = epoch_permutation(40, 0, 0)
    a = list(ResidentImages(images, CPU).epoch(perm, range(1, 4), 8, rank=1, world_size=2))
    b = list(StreamedImages(images, CPU, workers=0).epoch(perm, range(1, 4), 8, rank=1, world_size=2))
    assert [s for s, _ in a] == [s for s, _ in b] == [1, 2, 3]
    for (_, xa), (_, xb) in zip(a, b):
        assert xa.shape == (4, 32, 32, 3) and torch.equal(xa, xb)


def test_rrc_flip_is_a_crop_and_flip() -> None:
    images, _ = toy_images(6)
    raw = torch.from_numpy(images)
    g = torch.Generator().manual_seed(0)
    # full-image "crops" at the stored size: each output is the image or its mirror image
    out = augment_batch(raw, 32, (0.5,) * 3, (0.5,) * 3, "rrc-flip", g, scale=(1.0, 1.0), ratio=(1.0, 1.0))
    plain = augment_batch(raw, 32, (0.5,) * 3, (0.5,) * 3, "none")
    for o, ref in zip(out, plain):
        assert torch.allclose(o, ref, atol=1e-5) or torch.allclose(o, ref.flip(-1), atol=1e-5)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = augment_batch(raw, 16, (0.5,) * 3, (0.5,) * 3, "rrc-flip", g1)
    b = augment_batch(raw, 16, (0.5,) * 3, (0.5,) * 3, "rrc-flip", g2)
    assert a.shape == (6, 3, 16, 16) and torch.equal(a, b)
    assert not torch.allclose(a, augment_batch(raw, 16, (0.5,) * 3, (0.5,) * 3, "none"))
    assert a.min() >= -1.0 - 1e-6 and a.max() <= 1.0 + 1e-6


# --------------------------------------------------------------------------- runs


def test_online_linear_probe_equals_a_probe_of_the_saved_checkpoint(toy_npz: Path, tmp_path: Path) -> None:
    """The online linear_accuracy (Fig. 3b) is the 'fast' probe on the encoder's [CLS]
    features: recomputed here from last.pth through umae's ordinary loader and extractor."""
    from umae_eval.checkpoints import load_encoder
    from umae_eval.data import load_dataset
    from umae_eval.features import extract_features
    from umae_eval.probes.linear import linear_probe

    result = train_run(_config(toy_npz, tmp_path / "run", epochs=2, eval_every=2))
    record = read_metrics(tmp_path / "run")[-1]
    data = load_dataset(toy_npz)
    test_idx = loop._fixed_subset(len(data.y_test), 32, 0, 2)
    train_idx = loop._fixed_subset(len(data.y_train), 64, 0, 3)
    enc = load_encoder(result.run_dir / "last.pth")
    ftr = extract_features(enc, data.x_train[train_idx], device="cpu")
    fte = extract_features(enc, data.x_test[test_idx], device="cpu")
    expected = linear_probe(ftr, data.y_train[train_idx], fte, data.y_test[test_idx], seed=0).accuracy
    assert record["linear_accuracy"] == pytest.approx(expected, abs=1e-9)


def test_run_folder_contract(toy_npz: Path, tmp_path: Path) -> None:
    result = train_run(_config(toy_npz, tmp_path / "run", epochs=3, lam=0.01, eval_every=2, save_every=2))
    run = tmp_path / "run"
    names = sorted(p.name for p in run.iterdir())
    assert names == ["checkpoint-2.pth", "checkpoint-3.pth", "config.json", "last.pth", "metrics.jsonl"]
    assert (run / "last.pth").read_bytes() == (run / "checkpoint-3.pth").read_bytes()
    records = read_metrics(run)
    assert [r["epoch"] for r in records] == [1, 2, 3] and [r["step"] for r in records] == [4, 8, 12]
    required = {"epoch", "step", "loss", "loss_recon", "loss_unif", "lam", "unif_form", "lr", "img_per_s",
                "train_s", "effective_rank", "rankme"}
    for r in records:
        assert required <= set(r)
        assert r["train_s"] > 0 and r["img_per_s"] == pytest.approx(16 * 4 / r["train_s"], rel=1e-6)
        assert r["lam"] == 0.01 and r["unif_form"] == "code"
        assert r["loss"] == pytest.approx(r["loss_recon"] + 0.01 * r["loss_unif"], rel=1e-5)
        assert 1.0 <= r["effective_rank"] <= 32 and r["rankme"] > 0
    probe_keys = {"knn_accuracy", "mean_classifier_accuracy", "linear_accuracy"}
    assert [probe_keys <= set(r) for r in records] == [False, True, True]
    assert 0 <= records[1]["knn_accuracy"] <= 100
    # lr of each epoch's last step follows the schedule: 1 warm-up epoch (round(0.5 * 3) = 2 here)
    sched = CosineSchedule(1.5e-4 * 16 / 256, warmup_steps=2 * 4, total_steps=12)
    assert [r["lr"] for r in records] == pytest.approx([sched(3), sched(7), sched(11)])
    config = json.loads((run / "config.json").read_text())
    assert config["preset"]["name"] == "tiny-test" and config["lam"] == 0.01
    assert config["data"]["fingerprint"] and config["seed"] == 0 and config["device"] == "cpu"
    assert config["precision"] == "fp32" and config["batches"] == "device-resident"
    assert "torch" in config["versions"]
    assert result.epochs == 3 and result.steps == 12 and result.final == records[-1]


def test_streamed_run_equals_resident_run(toy_npz: Path, tmp_path: Path) -> None:
    over = {"augment": "rrc-flip"}
    train_run(_config(toy_npz, tmp_path / "a", epochs=1, overrides=over))
    train_run(_config(toy_npz, tmp_path / "b", epochs=1, overrides=over, stream=True, workers=0))
    a = torch.load(tmp_path / "a" / "last.pth", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "last.pth", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_simmim_run(toy_npz: Path, tmp_path: Path) -> None:
    result = train_run(_config(toy_npz, tmp_path / "s", epochs=1, method="simmim", lam=0.01, eval_every=0))
    ckpt = torch.load(result.checkpoint, weights_only=True)
    assert ckpt["umae"]["method"] == "simmim" and ckpt["umae"]["mask_ratio"] == 0.6
    assert np.isfinite(result.final["loss"]) and "knn_accuracy" not in result.final


def test_refuses_non_empty_out_without_resume(toy_npz: Path, tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "notes.txt").write_text("mine")
    with pytest.raises(UmaeError, match="--out .* not empty.*--resume auto"):
        train_run(_config(toy_npz, tmp_path / "run", epochs=1))


def test_nan_loss_stops_and_keeps_last_good_checkpoint(toy_npz: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    real = step.loss_terms
    calls = {"n": 0}

    def poisoned(*args: object, **kwargs: object) -> dict:
        calls["n"] += 1
        terms = real(*args, **kwargs)
        if calls["n"] == 11:  # 2 micro-batches per step, 4 steps per epoch: epoch 2, step 6
            terms = {**terms, "loss": terms["loss"] * float("nan")}
        return terms

    monkeypatch.setattr(step, "loss_terms", poisoned)
    run = tmp_path / "run"
    with pytest.raises(UmaeError) as err:
        train_run(_config(toy_npz, run, epochs=3))
    msg = str(err.value)
    assert "nan" in msg and "epoch 2, step 6" in msg and "--blr" in msg and "fp32" in msg
    assert "\n" not in msg
    assert (run / "last.pth").read_bytes() == (run / "checkpoint-1.pth").read_bytes()
    assert torch.load(run / "last.pth", weights_only=True)["step"] == 4
    assert [r["epoch"] for r in read_metrics(run)] == [1]


def test_cli_train_and_refusals(toy_npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    args = ["train", "--data", str(toy_npz), "--preset", "tiny-test", "--epochs", "1", "--out", str(out),
            "--eval-images", "32", "--knn-train-images", "64", "--lam", "0.01"]
    assert main(args) == 0
    captured = capsys.readouterr()
    assert str(out) in captured.out and "effective_rank" in captured.out
    assert (out / "last.pth").is_file()
    results = json.loads((out / "results.json").read_text())
    assert results["command"] == "train" and results["settings"]["lam"] == 0.01 and "torch" in results["versions"]
    assert results["results"]["checkpoint_sha256"] == sha256_file(out / "last.pth")
    assert results["results"]["final"]["epoch"] == 1 and results["results"]["steps"] == 4
    assert main(args) == 2  # non-empty --out without --resume
    assert "--resume auto" in capsys.readouterr().err
    assert main(args[:-4] + ["--resume", "auto"]) == 2  # resume with other options: --lam differs
    assert "lam=0.01" in capsys.readouterr().err
    assert main(["train", "--data", str(toy_npz), "--preset", "tiny-test", "--resume", "auto"]) == 2
    assert "--resume auto needs --out" in capsys.readouterr().err
    assert main(["train", "--data", str(toy_npz), "--preset", "nope", "--out", str(tmp_path / "x")]) == 2
    assert "tiny-test" in capsys.readouterr().err


def test_throughput_benchmark_runs_on_cpu(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bench = _bench()
    out = tmp_path / "bench.json"
    assert bench.main(["--preset", "tiny-test", "--data", "synthetic", "--steps", "2", "--warmup", "1",
                       "--batch-size", "16", "--device", "cpu", "--json", str(out)]) == 0
    result = json.loads(out.read_text())["results"][0]
    assert result["preset"] == "tiny-test" and result["flops_per_image"] == 3_171_456
    assert result["fast"]["img_per_s"] > 0 and result["plain"]["img_per_s"] > 0
    assert result["fast"]["mfu"] is None  # no GPU peak on the CPU
    assert result["speedup"] == pytest.approx(result["fast"]["img_per_s"] / result["plain"]["img_per_s"])
    assert "tiny-test" in capsys.readouterr().out


@pytest.mark.slow
def test_torchrun_two_cpu_processes(toy_npz: Path, tmp_path: Path) -> None:
    """DDP over gloo: both ranks train, rank 0 alone writes (one metrics line per epoch)."""
    import socket
    import subprocess

    with socket.socket() as sock:  # a free port for the rendezvous
        sock.bind(("127.0.0.1", 0))
        port = str(sock.getsockname()[1])
    out = tmp_path / "ddp"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_port", port,
         "-m", "umae_eval.cli", "train", "--data", str(toy_npz), "--preset", "tiny-test", "--lam", "0.01",
         "--epochs", "2", "--out", str(out), "--eval-images", "32", "--knn-train-images", "64"],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert [r["epoch"] for r in read_metrics(out)] == [1, 2]
    assert json.loads((out / "config.json").read_text())["world_size"] == 2
    assert torch.load(out / "last.pth", weights_only=True)["step"] == 8


def test_cli_set_overrides_any_preset_field(toy_npz: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "set"
    base = ["train", "--data", str(toy_npz), "--preset", "tiny-test", "--epochs", "1", "--eval-images", "32",
            "--knn-train-images", "64"]
    assert main(base + ["--out", str(out), "--set", "depth=1", "--set", "embed_dim=16", "--set", "norm_pix_loss=true",
                        "--set", "weight_decay=0.1", "--set", "mean=0.4,0.4,0.4", "--set", "mask_ratio=0.5"]) == 0
    preset = json.loads((out / "config.json").read_text())["preset"]
    assert (preset["depth"], preset["embed_dim"], preset["norm_pix_loss"]) == (1, 16, True)
    assert preset["weight_decay"] == 0.1 and preset["mean"] == [0.4, 0.4, 0.4] and preset["mask_ratio"] == 0.5
    ckpt = torch.load(out / "last.pth", weights_only=True)
    assert ckpt["model"]["cls_token"].shape == (1, 1, 16) and "blocks.1.norm1.weight" not in ckpt["model"]
    capsys.readouterr()

    cases = [(["--set", "depht=2"], "not a preset field"), (["--set", "depth=two"], "expected int"),
             (["--set", "norm_pix_loss=maybe"], "expected bool"), (["--set", "depth"], "FIELD=VALUE"),
             (["--set", "embed_dim=30"], "multiple of 4")]  # the preset refuses it before anything starts
    for i, (extra, needle) in enumerate(cases):
        assert main(base + ["--out", str(tmp_path / f"bad{i}")] + extra) == 2, extra
        err = capsys.readouterr().err
        assert err.startswith("error:") and needle in err and len(err.strip().splitlines()) == 1, err
        assert not (tmp_path / f"bad{i}").exists()
