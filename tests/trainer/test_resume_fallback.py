"""Resuming when things went wrong: a truncated last.pth, stale temporary files, a NaN to recover
from with a lower --blr (issue 11)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import torch

import trainer.loop as loop
from trainer.checkpoint import load_resume_point, remove_stale_temp_files
from trainer.loop import TrainConfig, train_run
from trainer.runlog import read_metrics
from umae_eval.cli import main

from toy_images import toy_npz
from umae_eval.errors import UmaeError

# 64 train images, batch 16: 4 steps per epoch.
_COMMON: dict[str, Any] = dict(preset="tiny-test", epochs=3, lam=0.01, eval_images=32, knn_train_images=64, eval_every=0,
                               deterministic=True, seed=5, device="cpu")


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return toy_npz(tmp_path_factory.mktemp("fallback") / "toy.npz", seed=1)


@pytest.fixture(scope="module")
def reference(data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An uninterrupted 3-epoch run: checkpoint-1/2/3.pth, last.pth a link to checkpoint-3.pth."""
    out = tmp_path_factory.mktemp("fallback") / "reference"
    train_run(TrainConfig(data=str(data), out=out, **_COMMON))
    return out


def _model(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, weights_only=True)["model"]


def _truncate_in_place(path: Path, fraction: float = 0.5) -> None:
    """Cut a file short without a new inode: a hard-linked last.pth loses its twin's bytes too."""
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.truncate(int(size * fraction))


def test_truncated_last_falls_back_to_newest_intact_checkpoint(data: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(reference, out)  # copies: last.pth and checkpoint-3.pth are separate files here
    (out / "last.pth").unlink()
    shutil.copyfile(out / "checkpoint-3.pth", out / "last.pth")
    _truncate_in_place(out / "last.pth")
    _truncate_in_place(out / "checkpoint-3.pth")
    point = load_resume_point(out, "auto")
    assert point.path == out / "checkpoint-2.pth"
    assert [p.name for p, _ in point.skipped] == ["last.pth", "checkpoint-3.pth"]

    notes: list[str] = []
    result = train_run(TrainConfig(data=str(data), out=out, resume="auto", **_COMMON), on_note=notes.append)
    assert result.resumed_from == out / "checkpoint-2.pth" and result.steps == 12
    assert any("last.pth, checkpoint-3.pth cannot be read" in n and "checkpoint-2.pth" in n for n in notes), notes
    # epoch 3 retrained from the epoch-2 checkpoint is the uninterrupted run's epoch 3, bit for bit
    ref, got = _model(reference / "last.pth"), _model(out / "last.pth")
    assert ref.keys() == got.keys() and all(torch.equal(ref[k], got[k]) for k in ref)
    records = read_metrics(out)
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert records[2]["resumed"]["from"] == "checkpoint-2.pth"
    assert [s["path"] for s in records[2]["resumed"]["skipped"]] == [str(out / "last.pth"), str(out / "checkpoint-3.pth")]
    note = json.loads((out / "config.json").read_text())["resumes"][-1]
    assert note["from"] == str(out / "checkpoint-2.pth") and len(note["skipped"]) == 2


def test_no_intact_checkpoint_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "last.pth").write_bytes(b"PK\x03\x04 cut short")
    (tmp_path / "checkpoint-1.pth").write_bytes(b"")
    with pytest.raises(UmaeError, match=r"no intact checkpoint in .*\(last.pth, checkpoint-1.pth cannot be read"):
        load_resume_point(tmp_path, "auto")
    assert load_resume_point(tmp_path / "empty", "auto").path is None  # nothing there: a fresh start


def test_stale_temp_files_are_removed_on_resume(data: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    stale = [out / ".last.pth.k2j4h1.tmp", out / ".checkpoint-3.pth.q9x0a.tmp", out / ".metrics.jsonl.abc.tmp"]
    for p in stale:
        p.write_bytes(b"\0" * 1000)
    mine = out / ".my-notes.tmp"  # not a name umae writes: left alone
    mine.write_text("keep")
    args = dict(_COMMON, epochs=4)
    notes: list[str] = []
    train_run(TrainConfig(data=str(data), out=out, resume="auto", **args), on_note=notes.append)
    assert not any(p.exists() for p in stale) and mine.read_text() == "keep"
    assert any("removed 3 temporary file(s)" in n for n in notes), notes
    removed = json.loads((out / "config.json").read_text())["resumes"][-1]["removed_temp_files"]
    assert sorted(removed) == sorted(p.name for p in stale)
    assert remove_stale_temp_files(out) == []


def test_after_a_nan_the_advice_works_lower_blr_then_resume(data: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "run"
    args = ["train", "--data", str(data), "--preset", "tiny-test", "--epochs", "2", "--eval-images", "32",
            "--knn-train-images", "64", "--eval-every", "0", "--seed", "5", "--device", "cpu", "--blr", "0.002",
            "--out", str(out)]
    real = loop.accumulate_gradients
    calls = {"n": 0}

    def nan_at_step_6(*a: Any, **kw: Any) -> torch.Tensor:
        calls["n"] += 1
        terms = real(*a, **kw)
        return torch.full_like(terms, float("nan")) if calls["n"] == 6 else terms

    monkeypatch.setattr(loop, "accumulate_gradients", nan_at_step_6)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "Lower --blr (now 0.002)" in err and "--resume auto" in err, err
    assert torch.load(out / "last.pth", weights_only=True)["step"] == 4  # the epoch-1 checkpoint
    monkeypatch.setattr(loop, "accumulate_gradients", real)

    lower = [a if a != "0.002" else "0.001" for a in args]
    assert main(lower + ["--resume", "auto"]) == 0, capsys.readouterr().err
    assert "blr 0.002 -> 0.001" in capsys.readouterr().err
    records = read_metrics(out)
    assert [r["epoch"] for r in records] == [1, 2]
    assert records[1]["resumed"]["changed"] == {"blr": [0.002, 0.001]}
    meta = torch.load(out / "last.pth", weights_only=True)["umae"]
    assert meta["preset_fields"]["blr"] == 0.001 and meta["step"] == 8
    # epoch 2's lr follows the new schedule (warm-up 1 epoch = 4 steps, 8 steps, batch 16)
    from trainer.schedule import CosineSchedule, scaled_lr

    assert records[1]["lr"] == pytest.approx(CosineSchedule(scaled_lr(0.001, 16), 4, 8, 0.0)(7), rel=1e-12)
    assert records[0]["lr"] == pytest.approx(CosineSchedule(scaled_lr(0.002, 16), 4, 8, 0.0)(3), rel=1e-12)
    config = json.loads((out / "config.json").read_text())
    assert config["resumes"][-1]["changed"] == {"blr": [0.002, 0.001]}


def test_other_fields_still_refuse_a_resume(data: Path, reference: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    shutil.copytree(reference, out)
    with pytest.raises(UmaeError, match="the checkpoint has lam=0.01 but this run asks for 0.02"):
        train_run(TrainConfig(data=str(data), out=out, resume="auto", **dict(_COMMON, lam=0.02, epochs=4)))


def test_a_kill_during_the_first_checkpoint_leaves_nothing_for_resume_auto(data: Path, tmp_path: Path) -> None:
    """No checkpoint yet, only the temporary file of the first one: --resume auto starts over, cleanly."""
    out = tmp_path / "run"
    out.mkdir()
    stale = out / ".checkpoint-1.pth.x81kd0.tmp"
    stale.write_bytes(b"\0" * 5000)
    notes: list[str] = []
    result = train_run(TrainConfig(data=str(data), out=out, resume="auto", **dict(_COMMON, epochs=1)),
                       on_note=notes.append)
    assert result.resumed_from is None and not stale.exists()
    assert notes == [f"removed 1 temporary file(s) of interrupted writes from {out}"]
