"""A run killed mid-epoch and resumed with --resume auto ends bit-equal to an uninterrupted run."""

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

from trainer.loop import StepInfo, TrainConfig, train_run
from trainer.runlog import read_metrics
from umae_eval.cli import main

from toy_images import toy_npz

ROOT = Path(__file__).resolve().parents[2]

#: Runs train_run in a child process and stalls (forever) after optimiser step STALL, having
#: written MARKER: the parent then kills it with SIGKILL, in the middle of an epoch.
_CHILD = r"""
import json, sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from trainer.loop import TrainConfig, train_run
kw, stall, marker = json.loads(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])

def on_step(info):
    if info.step == stall:
        marker.write_text(str(info.step))
        while True:
            time.sleep(1)

train_run(TrainConfig(**kw), on_step=on_step)
"""

# 64 train images, batch 16: 4 steps per epoch, 3 epochs, U-MAE so every loss term matters.
_COMMON: dict[str, Any] = dict(preset="tiny-test", epochs=3, lam=0.01, eval_images=32, knn_train_images=64,
                               deterministic=True, seed=3)


def _cli_args(data: Path, out: Path) -> list[str]:
    return ["train", "--data", str(data), "--preset", "tiny-test", "--epochs", "3", "--lam", "0.01",
            "--eval-images", "32", "--knn-train-images", "64", "--deterministic", "--seed", "3",
            "--out", str(out)]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return toy_npz(tmp_path_factory.mktemp("resume") / "toy.npz", seed=0)


@pytest.fixture(scope="module")
def reference(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The uninterrupted run."""
    out = tmp_path_factory.mktemp("resume") / "reference"
    train_run(TrainConfig(data=str(data), out=out, **_COMMON))
    return out


def _assert_same_run(a: Path, b: Path) -> None:
    ca = torch.load(a / "last.pth", weights_only=True)
    cb = torch.load(b / "last.pth", weights_only=True)
    assert ca["step"] == cb["step"] == 12
    assert ca["model"].keys() == cb["model"].keys()
    for k in ca["model"]:
        assert torch.equal(ca["model"][k], cb["model"][k]), k
    for (i, sa), (_, sb) in zip(ca["optimizer"]["state"].items(), cb["optimizer"]["state"].items()):
        assert torch.equal(sa["exp_avg"], sb["exp_avg"]) and torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"]), i
    ma, mb = read_metrics(a), read_metrics(b)
    assert [r["epoch"] for r in mb] == [1, 2, 3]
    for ra, rb in zip(ma, mb):
        for key in ("step", "loss", "loss_recon", "loss_unif", "lr", "effective_rank", "rankme", "knn_accuracy"):
            assert ra[key] == rb[key], (ra["epoch"], key)


def test_sigkill_mid_epoch_then_resume_auto_is_bit_equal(data: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    marker = tmp_path / "stalled"
    kw = dict(data=str(data), out=str(out), **_COMMON)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.Popen([sys.executable, "-c", _CHILD, json.dumps(kw), "6", str(marker)], cwd=ROOT, env=env,
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            if child.poll() is not None:
                err = child.stderr.read().decode() if child.stderr else ""
                pytest.fail(f"training child exited early: {err[-2000:]}")
            if time.monotonic() > deadline:
                pytest.fail("training child did not reach step 6 within 120 s")
            time.sleep(0.05)
        os.kill(child.pid, signal.SIGKILL)  # mid-epoch 2 (step 6 of 4-step epochs)
    finally:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=30)
    assert child.returncode == -signal.SIGKILL
    stopped = torch.load(out / "last.pth", weights_only=True)
    assert stopped["step"] == 4 and stopped["sampler"]["step_in_epoch"] == 0  # epoch-1 checkpoint
    assert main(_cli_args(data, out) + ["--resume", "auto"]) == 0  # redoes epoch 2 from its start
    _assert_same_run(reference, out)
    resumes = json.loads((out / "config.json").read_text())["resumes"]
    assert resumes[0]["step"] == 4


class _Stop(Exception):
    pass


def test_resume_from_mid_epoch_save_is_bit_equal(data: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "mid"
    cfg = TrainConfig(data=str(data), out=out, save_every_steps=3, **_COMMON)

    def stop_at_7(info: StepInfo) -> None:
        if info.step == 7:
            raise _Stop  # like a kill: nothing is written after the last save (step 6)

    with pytest.raises(_Stop):
        train_run(cfg, on_step=stop_at_7)
    saved = torch.load(out / "last.pth", weights_only=True)
    assert saved["step"] == 6 and saved["sampler"] == {"epoch": 1, "step_in_epoch": 2, "seed": 3, "num_samples": 64}
    assert main(_cli_args(data, out) + ["--save-every-steps", "3", "--resume", "auto"]) == 0
    _assert_same_run(reference, out)


def test_resume_of_a_finished_run_can_extend_it(data: Path, reference: Path, tmp_path: Path) -> None:
    import shutil

    out = tmp_path / "extended"
    shutil.copytree(reference, out)
    assert main(_cli_args(data, out)[:-2] + ["--out", str(out), "--resume", "auto"]) == 0  # nothing to do
    assert [r["epoch"] for r in read_metrics(out)] == [1, 2, 3]
    args = _cli_args(data, out)
    args[args.index("--epochs") + 1] = "4"
    assert main(args + ["--resume", "auto"]) == 0
    assert [r["epoch"] for r in read_metrics(out)] == [1, 2, 3, 4]
    assert torch.load(out / "last.pth", weights_only=True)["step"] == 16
