"""A full disk, and caches that lie (issue 11 items 5 and 6).

Where this process may mount (root in a container), a small tmpfs really fills up; elsewhere
the same write is made to raise ENOSPC the way the real one does.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

import ckpt_factory as CF
from umae_eval.cli import main


class SmallDisk:
    """A folder on a tmpfs of ``size`` bytes, or None where mounting is not allowed."""

    def __init__(self, root: Path, size: str) -> None:
        self.path = root
        try:
            self.mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(root)],
                                          capture_output=True).returncode == 0
        except OSError:  # no mount(8) here
            self.mounted = False

    def fill(self, leave: int) -> None:
        """Fill the disk up to ``leave`` free bytes."""
        st = os.statvfs(self.path)
        free = st.f_bavail * st.f_frsize
        with open(self.path / ".filler", "wb") as fh:
            fh.write(b"\0" * max(free - leave, 0))

    def unfill(self) -> None:
        (self.path / ".filler").unlink(missing_ok=True)

    def entries(self) -> list[str]:
        return sorted(p for p in os.listdir(self.path) if p != ".filler")

    def close(self) -> None:
        if self.mounted:
            subprocess.run(["umount", str(self.path)], check=False)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[SmallDisk]:
    root = tmp_path / "disk"
    root.mkdir()
    disk = SmallDisk(root, "3m")
    yield disk
    disk.close()


@pytest.fixture(scope="module")
def npz(tmp_path_factory: pytest.TempPathFactory) -> Path:
    rng = np.random.default_rng(0)
    path = tmp_path_factory.mktemp("data") / "tiny.npz"
    y_train, y_test = np.repeat(np.arange(2), 12), np.repeat(np.arange(2), 6)
    base = np.array([[200, 40, 40], [40, 40, 200]])
    x = lambda y: np.clip(base[y][:, None, None, :] + rng.normal(0, 30, (len(y), 32, 32, 3)), 0, 255).astype(np.uint8)  # noqa: E731
    np.savez(path, x_train=x(y_train), y_train=y_train, x_test=x(y_test), y_test=y_test)
    return path


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("ckpt") / "tiny.pth"
    CF.make_umae(path, seed=1)
    return path


def _enospc(path: str | Path) -> OSError:
    return OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))


def _last_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    return lines[-1]


def test_probe_on_a_full_disk_says_so_and_leaves_no_half_outputs(
        small_disk: SmallDisk, npz: Path, ckpt: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    out = small_disk.path / "probe"
    if small_disk.mounted:
        small_disk.fill(leave=64 << 10)  # room for the CSV and the write check, not for report.html
    else:
        from umae_eval.report.writer import HtmlReport

        monkeypatch.setattr(HtmlReport, "write", lambda self, path: (_ for _ in ()).throw(_enospc(path)))
    code = main(["probe", str(ckpt), "--data", str(npz), "--methods", "mean", "--device", "cpu",
                 "--out", str(out)])
    err = capsys.readouterr().err
    line = _last_line(err)
    assert code == 2, err
    # the first file that does not fit: report.html, or one of figures/ written before it
    failed = line.split(": no space left")[0].removeprefix("error: ")
    assert failed in (str(out / "report.html"),) or failed.startswith(str(out / "figures") + os.sep), err
    assert line == (f"error: {failed}: no space left on the device; free some space, or write "
                    "to another disk (--out, or $UMAE_CACHE_DIR for the cache)"), err
    assert "internal error" not in err and "Traceback" not in err
    # no accuracy.csv without its report and results.json, no hidden stage folder either
    assert small_disk.entries() == []


def test_a_full_cache_disk_warns_and_the_analysis_goes_on(
        small_disk: SmallDisk, npz: Path, ckpt: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("UMAE_CACHE_DIR", str(small_disk.path / "cache"))
    if small_disk.mounted:
        small_disk.fill(leave=0)
    else:
        import umae_eval.features as features

        monkeypatch.setattr(features, "atomic_write", lambda path, write: (_ for _ in ()).throw(_enospc(path)))
    out = tmp_path / "probe"
    code = main(["probe", str(ckpt), "--data", str(npz), "--methods", "mean", "--device", "cpu",
                 "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert (out / "results.json").is_file() and (out / "report.html").is_file()
    warning = [line for line in err.splitlines() if line.startswith("warning:")]
    assert len(warning) == 1 and "feature cache not written" in warning[0], err
    assert "UserWarning" not in err and "Traceback" not in err


def test_training_on_a_full_disk_names_the_checkpoint_and_resumes_once_there_is_room(
        small_disk: SmallDisk, npz: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    run = small_disk.path / "run"
    args = ["train", "--data", str(npz), "--preset", "tiny-test", "--epochs", "2", "--eval-every", "0",
            "--eval-images", "8", "--knn-train-images", "8", "--device", "cpu", "--out", str(run)]
    if small_disk.mounted:
        small_disk.fill(leave=200 << 10)  # config.json fits, a 700 KB checkpoint does not
    else:
        import torch

        import trainer.checkpoint as ckpt_mod

        real_save = torch.save

        def full_disk_save(obj: object, fh: object) -> None:
            try:  # what torch.save does on a full disk: the OSError only as context
                raise _enospc("")
            except OSError:
                raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598")

        monkeypatch.setattr(ckpt_mod.torch, "save", full_disk_save)
    code = main(args)
    err = capsys.readouterr().err
    assert code == 2, err
    assert _last_line(err) == (f"error: {run / 'checkpoint-1.pth'}: no space left on the device; free some "
                               "space, or write to another disk (--out, or $UMAE_CACHE_DIR for the cache)"), err
    assert "unexpected pos" not in err and "internal error" not in err
    left = sorted(os.listdir(run))
    assert not any(name.endswith(".tmp") for name in left) and "checkpoint-1.pth" not in left, left

    if small_disk.mounted:
        small_disk.unfill()
    else:
        monkeypatch.setattr(ckpt_mod.torch, "save", real_save)
    assert main(args + ["--resume", "auto"]) == 0, capsys.readouterr().err
    assert {"checkpoint-1.pth", "checkpoint-2.pth", "last.pth"} <= set(os.listdir(run))


def test_demo_on_a_full_disk_is_one_clear_error_not_a_runtime_error(
        small_disk: SmallDisk, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    from umae_eval.commands import demo as demo_cmd

    monkeypatch.setattr(demo_cmd, "DEMO_OVERRIDES", {
        "img_size": 16, "embed_dim": 32, "depth": 1, "num_heads": 2,
        "decoder_embed_dim": 32, "decoder_depth": 1, "decoder_num_heads": 2,
    })
    # the smoke run's first checkpoint meets the full disk before the shipped encoders are read
    monkeypatch.setattr(demo_cmd, "shipped_encoders", lambda: [])
    out = small_disk.path / "demo"
    if small_disk.mounted:
        small_disk.fill(leave=64 << 10)
    else:
        import trainer.loop as loop

        monkeypatch.setattr(loop, "save_checkpoint", lambda path, payload: (_ for _ in ()).throw(_enospc(path)))
    code = main(["demo", "--epochs", "1", "--embed", "none", "--device", "cpu", "--out", str(out)])
    err = capsys.readouterr().err
    line = _last_line(err)
    assert code == 2, err
    assert line.startswith(f"error: {out / 'runs' / 'smoke'}") and "no space left on the device" in line, err
    assert "RuntimeError" not in err and "unexpected pos" not in err
