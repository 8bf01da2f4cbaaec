"""Feature files in every format `--features` reads, written by the real libraries (numpy,
safetensors, umae's feature store), from one planted class structure."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

CLASS_NAMES = ["ant", "bee", "cat", "dog"]


def planted(seed: int = 0, n_train: int = 400, n_test: int = 200, classes: int = 4, dim: int = 16,
            spread: float = 0.9, dtype: str = "float16") -> dict[str, np.ndarray]:
    """Gaussian classes around random means (``spread`` scales the means against unit noise):
    separable enough that the probes are far above chance, noisy enough that they differ."""
    rng = np.random.default_rng(seed)
    mu = rng.standard_normal((classes, dim)) * spread
    out: dict[str, np.ndarray] = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = np.arange(n) % classes
        rng.shuffle(y)
        out[f"{split}_features"] = (mu[y] + rng.standard_normal((n, dim))).astype(dtype)
        out[f"{split}_labels"] = y.astype(np.int64)
    return out


def write_npz(path: Path, a: dict[str, np.ndarray], names: list[str] | None = None, compressed: bool = False) -> Path:
    extra = {} if names is None else {"class_names": np.array(names)}
    (np.savez_compressed if compressed else np.savez)(path, **a, **extra)
    return path


def write_npy_folder(path: Path, a: dict[str, np.ndarray], names: list[str] | None = None) -> Path:
    """Features as .npy, train labels as .npy, test labels as .txt (both label forms read)."""
    path.mkdir(parents=True, exist_ok=True)
    np.save(path / "train_features.npy", a["train_features"])
    np.save(path / "test_features.npy", a["test_features"])
    np.save(path / "train_labels.npy", a["train_labels"])
    (path / "test_labels.txt").write_text("".join(f"{int(v)}\n" for v in a["test_labels"]))
    if names is not None:
        (path / "class_names.txt").write_text("\n".join(names) + "\n")
    return path


def write_safetensors(path: Path, a: dict[str, np.ndarray], names: list[str] | None = None) -> Path:
    from safetensors.numpy import save_file

    meta = None if names is None else {"class_names": json.dumps(names)}
    save_file({k: np.ascontiguousarray(v) for k, v in a.items()}, str(path), metadata=meta)
    return path


def write_store_pair(path: Path, a: dict[str, np.ndarray], names: list[str] | None = None,
                     invalid: dict[str, list[int]] | None = None, chunk_rows: int = 64) -> Path:
    """train/ and test/ feature stores written chunk by chunk by umae's own store code."""
    from umae_eval.featurestore.key import StoreKey
    from umae_eval.featurestore.store import create_store

    path.mkdir(parents=True, exist_ok=True)
    for split in ("train", "test"):
        x = a[f"{split}_features"]
        key = StoreKey(checkpoint_sha256="0" * 64, arch={"embed_dim": int(x.shape[1])}, data_fingerprint="f" * 64,
                       split=split, subset="all", transform="none", pool="cls", img_size=32, mean=(0.5,) * 3,
                       std=(0.5,) * 3, precision="fp32", n=len(x), dim=int(x.shape[1]), dtype=str(x.dtype))
        store = create_store(path / split, key, chunk_rows)
        valid = np.ones(len(x), dtype=bool)
        valid[(invalid or {}).get(split, [])] = False
        for i in range(store.n_chunks):
            lo, hi = store.chunk_range(i)
            store.write_chunk(i, x[lo:hi], valid[lo:hi], seconds=0.0)
        np.save(path / f"{split}_labels.npy", a[f"{split}_labels"])
    if names is not None:
        (path / "class_names.json").write_text(json.dumps(names))
    return path


WRITERS = {
    "npz": lambda p, a, n=None: write_npz(p / "f.npz", a, n),
    "npz-compressed": lambda p, a, n=None: write_npz(p / "fc.npz", a, n, compressed=True),
    "npy-folder": lambda p, a, n=None: write_npy_folder(p / "npy", a, n),
    "safetensors": lambda p, a, n=None: write_safetensors(p / "f.safetensors", a, n),
    "feature-store": lambda p, a, n=None: write_store_pair(p / "stores", a, n),
}
