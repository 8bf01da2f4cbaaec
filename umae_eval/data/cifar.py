"""CIFAR-10 / CIFAR-100 python pickles, read without running any pickled code."""

from __future__ import annotations

import codecs
import importlib
import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from umae_eval.data.formats import CIFAR10_TRAIN
from umae_eval.data.imageset import Arrays
from umae_eval.errors import UmaeError
from umae_eval.oom import is_out_of_memory

# --------------------------------------------------------------------------------------------
# CIFAR python pickles
# --------------------------------------------------------------------------------------------


def _cifar_kind(folder: Path) -> str | None:
    if any((folder / n).is_file() for n in ("batches.meta", "data_batch_1", "test_batch")):
        return "cifar-10"
    if (folder / "meta").is_file() and (folder / "train").is_file():
        return "cifar-100"
    return None


def find_cifar_dir(path: Path) -> Path | None:
    """``path`` itself if it holds CIFAR batches, else its one child folder that does."""
    if _cifar_kind(path):
        return path
    for name in ("cifar-10-batches-py", "cifar-100-python"):
        if (path / name).is_dir() and _cifar_kind(path / name):
            return path / name
    return None


_PICKLE_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"), ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"), ("numpy._core.numeric", "_frombuffer"),
    ("numpy", "ndarray"), ("numpy", "dtype"),
}


class _RefusedGlobal(pickle.UnpicklingError):
    """A pickle names a callable that CIFAR batches never contain."""


class _ArrayUnpickler(pickle.Unpickler):
    """Unpickles dicts, lists, bytes and numpy arrays only: a dataset file cannot run code."""

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) == ("_codecs", "encode"):  # bytes pickled by Python 3 at protocol < 3
            return codecs.encode
        if module in ("builtins", "__builtin__") and name == "bytes":  # b"" at protocol < 3
            return bytes
        if (module, name) not in _PICKLE_ALLOWED:
            raise _RefusedGlobal(f"{module}.{name}")
        # numpy 2 moved numpy.core to numpy._core; files name either (CIFAR's own: numpy.core).
        for candidate in (module.replace("numpy.core", "numpy._core"), module.replace("numpy._core", "numpy.core")):
            try:
                return getattr(importlib.import_module(candidate), name)
            except (ImportError, AttributeError):
                continue
        raise pickle.UnpicklingError(f"this numpy has no {module}.{name}")


def _unpickle(data: bytes, where: str) -> dict[Any, Any]:
    try:
        obj = _ArrayUnpickler(io.BytesIO(data), encoding="bytes").load()
    except _RefusedGlobal as exc:
        raise UmaeError(f"{where}: the pickle calls {exc}, which a CIFAR batch never does; umae refuses "
                        "to load it (use the files from the official cifar-*-python.tar.gz)") from None
    except Exception as exc:  # pickle raises many types on damaged input
        if is_out_of_memory(exc):
            raise  # not damage: the CLI says so and names the option to lower
        raise UmaeError(f"{where}: corrupt or truncated CIFAR pickle ({type(exc).__name__}: {exc}); "
                        "re-extract it from cifar-10-python.tar.gz / cifar-100-python.tar.gz") from None
    if not isinstance(obj, dict):
        raise UmaeError(f"{where}: expected a pickled dict, found {type(obj).__name__}; "
                        "this is not a CIFAR python batch")
    return obj


def _key(d: dict[Any, Any], key: str, where: str) -> Any:
    for k in (key.encode(), key):
        if k in d:
            return d[k]
    seen = ", ".join(sorted(k.decode() if isinstance(k, bytes) else str(k) for k in d))
    raise UmaeError(f"{where}: no {key!r} entry (found {seen}); this is not a CIFAR python batch")


def _cifar_batch(data: bytes, where: str, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    d = _unpickle(data, where)
    pixels = np.asarray(_key(d, "data", where))
    labels = np.asarray(_key(d, label_key, where))
    if pixels.ndim != 2 or pixels.shape[1] != 3072 or pixels.dtype != np.uint8:
        raise UmaeError(f"{where}: 'data' must be N x 3072 uint8, got {pixels.dtype} {pixels.shape}; "
                        "this is not a CIFAR python batch")
    if labels.shape != (len(pixels),):
        raise UmaeError(f"{where}: {len(pixels)} images but {labels.size} labels; the batch is damaged")
    # Rows are RRR..GGG..BBB (1024 values per channel, row-major) -> (N, 32, 32, 3).
    images = pixels.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return images, labels.astype(np.int64)


def read_cifar(read: Callable[[str], bytes], exists: Callable[[str], bool], where: str) -> Arrays:
    """Parse CIFAR-10 or CIFAR-100 python files, fetched by name through ``read``."""
    if any(exists(n) for n in ("batches.meta", "data_batch_1", "test_batch")):
        train_files, test_file, meta_file = CIFAR10_TRAIN, "test_batch", "batches.meta"
        label_key, names_key = "labels", "label_names"
    else:
        train_files, test_file, meta_file = ("train",), "test", "meta"
        label_key, names_key = "fine_labels", "fine_label_names"
    missing = [n for n in (*train_files, test_file, meta_file) if not exists(n)]
    if missing:
        raise UmaeError(f"{where}: CIFAR python folder lacks {', '.join(missing)}; "
                        "re-extract the complete cifar-*-python.tar.gz")
    parts = [_cifar_batch(read(n), f"{where}/{n}", label_key) for n in train_files]
    x_test, y_test = _cifar_batch(read(test_file), f"{where}/{test_file}", label_key)
    meta = _unpickle(read(meta_file), f"{where}/{meta_file}")
    names = [n.decode("utf-8") if isinstance(n, bytes) else str(n)
             for n in _key(meta, names_key, f"{where}/{meta_file}")]
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    return Arrays(x_train, y_train, np.ascontiguousarray(x_test), y_test, names, "cifar-python")


