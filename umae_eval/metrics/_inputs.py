"""Argument checks shared by the metrics, probes and maps.

Each helper raises :class:`umae_eval.errors.UmaeError` with one line that names the argument,
the shape or value it got, and what it needs. The helpers accept ``numpy.ndarray`` or
``torch.Tensor`` (on any device) and never copy more than a conversion needs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Union

import numpy as np
import torch

from umae_eval.errors import UmaeError

#: What every public function of ``umae_eval.metrics`` / ``probes`` / ``embed`` accepts.
ArrayLike = Union[np.ndarray, torch.Tensor]


def _shape(x: ArrayLike) -> tuple[int, ...]:
    return tuple(int(s) for s in x.shape)


#: Elements per block of the finite check on arrays (a memory-mapped store is never copied whole).
_FINITE_BLOCK = 1 << 24


def _all_finite(x: np.ndarray) -> bool:
    """``np.isfinite(x).all()`` in row blocks, so a memory-mapped (N, D) array needs no N x D mask."""
    rows = max(1, _FINITE_BLOCK // max(1, x.shape[1]))
    return all(bool(np.isfinite(x[i:i + rows]).all()) for i in range(0, x.shape[0], rows))


def check_features(x: object, name: str = "features", min_rows: int = 1) -> ArrayLike:
    """Check that ``x`` is a finite, real 2-D array ``(N, D)`` with ``N >= min_rows``, ``D >= 1``.

    Returns ``x`` unchanged (an ndarray or a tensor), so that tensors stay on their device.
    """
    if isinstance(x, torch.Tensor):
        if x.is_complex() or x.dtype == torch.bool:
            raise UmaeError(f"{name} must be real numbers, got a tensor of dtype {x.dtype}")
        arr: ArrayLike = x
    elif isinstance(x, np.ndarray):
        if not (np.issubdtype(x.dtype, np.floating) or np.issubdtype(x.dtype, np.integer)):
            raise UmaeError(f"{name} must be real numbers, got an array of dtype {x.dtype}")
        arr = x
    else:
        raise UmaeError(f"{name} must be a numpy array or a torch tensor of shape (N, D), "
                        f"got {type(x).__name__}")
    if arr.ndim != 2:
        raise UmaeError(f"{name} must be 2-D (N samples, D dimensions), got shape {_shape(arr)}")
    n, d = _shape(arr)
    if n < min_rows:
        raise UmaeError(f"{name} needs at least {min_rows} row(s), got shape {(n, d)}")
    if d < 1:
        raise UmaeError(f"{name} needs at least one dimension, got shape {(n, d)}")
    finite = bool(torch.isfinite(arr).all()) if isinstance(arr, torch.Tensor) else _all_finite(arr)
    if not finite:
        raise UmaeError(f"{name} contains NaN or infinite values (shape {(n, d)}); the weights are checked "
                        "finite when loaded, so look at the input side: --norm (a std of 0 divides by zero) "
                        "and the checkpoint's LayerNorm eps (0 gives NaN on a flat image), or the features file")
    return arr


def check_same_shape(a: ArrayLike, b: ArrayLike, names: tuple[str, str]) -> None:
    """Raise unless ``a`` and ``b`` have the same shape (paired views of the same images)."""
    if _shape(a) != _shape(b):
        raise UmaeError(f"{names[0]} and {names[1]} must have the same shape (paired rows), "
                        f"got {_shape(a)} and {_shape(b)}")


def check_same_dim(a: ArrayLike, b: ArrayLike, names: tuple[str, str]) -> None:
    """Raise unless ``a`` and ``b`` have the same number of columns."""
    if a.shape[1] != b.shape[1]:
        raise UmaeError(f"{names[0]} and {names[1]} must have the same feature dimension, "
                        f"got {int(a.shape[1])} and {int(b.shape[1])}")


def check_labels(y: object, n: int, name: str = "labels", features_name: str = "features") -> np.ndarray:
    """Check that ``y`` holds ``n`` non-negative integer class labels; return them as int64 ``(n,)``."""
    if isinstance(y, torch.Tensor):
        arr = y.detach().cpu().numpy()
    elif isinstance(y, (np.ndarray, list, tuple)):
        arr = np.asarray(y)
    else:
        raise UmaeError(f"{name} must be a 1-D array of integer class labels, got {type(y).__name__}")
    if arr.ndim != 1:
        raise UmaeError(f"{name} must be 1-D (one class index per sample), got shape {arr.shape}")
    if arr.shape[0] != n:
        raise UmaeError(f"{name} has {arr.shape[0]} entries but {features_name} has {n} rows")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise UmaeError(f"{name} must be integer class indices, got dtype {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        raise UmaeError(f"{name} must be class indices >= 0, found {int(arr.min())}")
    return arr


def resolve_num_classes(num_classes: int | None, *labels: np.ndarray) -> int:
    """``num_classes`` if given (checked against the labels), else ``max(label) + 1``."""
    top = max((int(y.max()) for y in labels if y.size), default=-1)
    if num_classes is None:
        if top < 0:
            raise UmaeError("cannot infer the number of classes from empty labels; pass num_classes")
        return top + 1
    if num_classes < 1:
        raise UmaeError(f"num_classes must be >= 1, got {num_classes}")
    if top >= num_classes:
        raise UmaeError(f"a label equals {top} but num_classes is {num_classes}; "
                        "labels must lie in [0, num_classes)")
    return int(num_classes)


def check_positive(value: float, name: str) -> float:
    """Raise unless ``value`` is a finite number > 0."""
    if not np.isfinite(value) or value <= 0:
        raise UmaeError(f"{name} must be a positive number, got {value}")
    return float(value)


def check_choice(value: str, choices: Sequence[str], name: str) -> str:
    """Raise unless ``value`` is one of ``choices`` (the runtime twin of a ``Literal`` type)."""
    if value not in choices:
        raise UmaeError(f"{name} must be one of {', '.join(repr(c) for c in choices)}, got {value!r}")
    return value


def to_numpy64(x: ArrayLike) -> np.ndarray:
    """A float64 numpy copy/view of ``x`` (tensors are detached and moved to the CPU)."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float64).numpy()
    return np.asarray(x, dtype=np.float64)


def to_tensor(x: ArrayLike, device: str | torch.device | None = None,
              dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``x`` as a detached tensor of ``dtype`` on ``device`` (default: where it already is)."""
    if isinstance(x, torch.Tensor):
        t = x.detach()
    else:
        a = np.ascontiguousarray(x)
        if not a.flags.writeable:  # a read-only memmap (--features): torch would share it and warn
            a = np.array(a, dtype=np.float32) if dtype == torch.float32 and a.dtype.kind == "f" else np.array(a)
        t = torch.from_numpy(a)
    return t.to(device=device if device is not None else t.device, dtype=dtype)


def check_probe_inputs(train_x: object, train_y: object, test_x: object, test_y: object,
                       num_classes: int | None) -> tuple[ArrayLike, np.ndarray, ArrayLike, np.ndarray, int]:
    """Check a probe's four arrays together; return them with labels as int64 and the class count."""
    tr = check_features(train_x, "train_x")
    te = check_features(test_x, "test_x")
    check_same_dim(tr, te, ("train_x", "test_x"))
    ytr = check_labels(train_y, int(tr.shape[0]), "train_y", "train_x")
    yte = check_labels(test_y, int(te.shape[0]), "test_y", "test_x")
    return tr, ytr, te, yte, resolve_num_classes(num_classes, ytr, yte)


def accuracy_percent(pred: np.ndarray, target: np.ndarray) -> float:
    """``100 * mean(pred == target)`` as a Python float."""
    return float(100.0 * np.mean(np.asarray(pred) == np.asarray(target)))
