"""``.npz`` datasets: ``x_train, y_train, x_test, y_test`` (+ ``class_names``)."""

from __future__ import annotations

import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from umae_eval.data.formats import NPZ_KEYS
from umae_eval.data.imageset import Arrays
from umae_eval.errors import UmaeError

# --------------------------------------------------------------------------------------------
# .npz
# --------------------------------------------------------------------------------------------


def read_npz(path: Path, source: str) -> Arrays:
    try:
        with np.load(path, allow_pickle=False) as z:
            missing = [k for k in NPZ_KEYS if k not in z.files]
            if missing:
                raise UmaeError(
                    f"{source}: the .npz lacks {', '.join(missing)} (it holds {', '.join(z.files) or 'nothing'}); "
                    "save it with np.savez(path, x_train=..., y_train=..., x_test=..., y_test=..., "
                    "class_names=...)"
                )
            arrays = {k: _npz_array(z, k, source) for k in z.files if k in (*NPZ_KEYS, "class_names")}
    except UmaeError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise UmaeError(f"{source}: corrupt or truncated .npz ({type(exc).__name__}: {exc}); "
                        "write it again with np.savez") from None
    x_train = _as_nhwc_uint8(arrays["x_train"], "x_train", source)
    x_test = _as_nhwc_uint8(arrays["x_test"], "x_test", source)
    y_train, y_test = arrays["y_train"], arrays["y_test"]
    if "class_names" in arrays:
        names = [n.decode("utf-8") if isinstance(n, bytes) else str(n)
                 for n in arrays["class_names"].reshape(-1).tolist()]
    else:
        top = max(int(np.max(y)) if np.size(y) and np.issubdtype(np.asarray(y).dtype, np.integer) else -1
                  for y in (y_train, y_test))
        names = [str(k) for k in range(top + 1)]
    return Arrays(x_train, y_train, x_test, y_test, names, "npz")


def _npz_array(z: Any, key: str, source: str) -> np.ndarray:
    try:
        return np.asarray(z[key])
    except ValueError as exc:
        if "allow_pickle" in str(exc):
            raise UmaeError(f"{source}: '{key}' holds pickled Python objects, which umae does not load; "
                            f"save it as a plain array (e.g. np.array(class_names, dtype=str))") from None
        raise


def _as_nhwc_uint8(x: np.ndarray, key: str, source: str) -> np.ndarray:
    """Bring (N,H,W,3), (N,3,H,W), (N,H,W[,1]) uint8 / 0..255 ints / [0,1] floats to (N,H,W,3) uint8."""
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim == 4 and x.shape[-1] not in (1, 3) and x.shape[1] in (1, 3):
        x = x.transpose(0, 2, 3, 1)
    if x.ndim != 4 or x.shape[-1] not in (1, 3):
        raise UmaeError(f"{source}: '{key}' has shape {x.shape}; store images as (N, H, W, 3) "
                        "(or (N, 3, H, W), or grayscale (N, H, W))")
    if x.dtype != np.uint8:
        if np.issubdtype(x.dtype, np.floating):
            if x.size and not (np.isfinite(x).all() and x.min() >= 0.0 and x.max() <= 1.0):
                raise UmaeError(f"{source}: float '{key}' must lie in [0, 1]; "
                                "store uint8 pixels or divide by 255")
            x = np.rint(x * 255.0).astype(np.uint8)
        elif np.issubdtype(x.dtype, np.integer) and not np.issubdtype(x.dtype, np.bool_):
            if x.size and (x.min() < 0 or x.max() > 255):
                raise UmaeError(f"{source}: integer '{key}' must lie in 0..255; store uint8 pixels")
            x = x.astype(np.uint8)
        else:
            raise UmaeError(f"{source}: '{key}' has dtype {x.dtype}; store uint8 pixels")
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    return np.ascontiguousarray(x)


