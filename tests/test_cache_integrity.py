"""The caches must not trust their files (issue 11 item 6): an entry whose bytes were damaged
behind a valid header is detected, dropped and recomputed, with a warning.

Both caches belong to the data work (the decode cache in umae_eval/data/decode_cache.py, the
in-memory feature cache in umae_eval/features.py); until they store and verify a checksum
these tests are expected to fail.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import ckpt_factory as CF
from umae_eval.cli import main


def _zero_npy_data(path: Path) -> None:
    """Keep the .npy header, zero every data byte: the file still loads, with the wrong numbers."""
    offset = np.load(path, mmap_mode="r").offset
    size = path.stat().st_size
    with open(path, "r+b") as fh:
        fh.seek(offset)
        fh.write(b"\0" * (size - offset))


@pytest.fixture
def npz(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    y_train, y_test = np.repeat(np.arange(2), 12), np.repeat(np.arange(2), 6)
    base = np.array([[200, 40, 40], [40, 40, 200]])

    def x(y: np.ndarray) -> np.ndarray:
        return np.clip(base[y][:, None, None, :] + rng.normal(0, 30, (len(y), 32, 32, 3)), 0, 255).astype(np.uint8)

    path = tmp_path / "tiny.npz"
    np.savez(path, x_train=x(y_train), y_train=y_train, x_test=x(y_test), y_test=y_test)
    return path


def test_zeroed_feature_cache_entry_is_recomputed(npz: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    cache = tmp_path / "cache"
    monkeypatch.setenv("UMAE_CACHE_DIR", str(cache))
    ckpt = tmp_path / "tiny.pth"
    CF.make_umae(ckpt, seed=1)
    args = ["probe", str(ckpt), "--data", str(npz), "--methods", "mean,knn", "--k", "3", "--device", "cpu"]
    assert main([*args, "--out", str(tmp_path / "a")]) == 0
    entries = sorted((cache / "features").glob("*.npy"))  # the .npy.sha256 checksums beside them are not matched
    assert len(entries) == 2  # train and test
    for e in entries:
        _zero_npy_data(e)
    capsys.readouterr()
    assert main([*args, "--out", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    first = json.loads((tmp_path / "a" / "results.json").read_text())["results"]["checkpoints"]
    second = json.loads((tmp_path / "b" / "results.json").read_text())["results"]["checkpoints"]
    assert {k: v["accuracies"] for k, v in second.items()} == {k: v["accuracies"] for k, v in first.items()}
    assert "cache" in err.lower() and ("damaged" in err.lower() or "checksum" in err.lower()), err


def test_altered_decode_cache_entry_is_recomputed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from PIL import Image

    from umae_eval.data import load_dataset

    monkeypatch.setenv("UMAE_CACHE_DIR", str(tmp_path / "cache"))
    rng = np.random.default_rng(0)
    root = tmp_path / "folder"
    for split in ("train", "test"):
        for cls in ("cat", "dog"):
            (root / split / cls).mkdir(parents=True)
            for i in range(3):
                Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(root / split / cls / f"{i}.png")
    first = load_dataset(root)
    entries = sorted((tmp_path / "cache" / "images").glob("*/x_train.npy"))
    assert len(entries) == 1
    _zero_npy_data(entries[0])
    with pytest.warns(UserWarning, match="cache"):
        again = load_dataset(root)
    assert np.array_equal(again.x_train, first.x_train) and again.fingerprint == first.fingerprint
