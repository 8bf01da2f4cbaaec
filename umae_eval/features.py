"""The one feature extractor every command uses and its disk cache.

Features are what MAE's linear probe reads (He et al. 2022, Sec. 4 and appendix A.2):

- ``pool='cls'``: the [CLS] token after the encoder's final LayerNorm (``norm``), i.e.
  ``model.forward_features(x)[:, 0]`` -- MAE's and U-MAE's linear-probe feature and the feature of
  U-MAE's uniformity loss (``unif_form='code'`` L2-normalises it afterwards, not here).
- ``pool='avg'``: the mean over the ``L`` patch tokens (the [CLS] token excluded) of
  ``model.forward_features(x)`` (so after the final norm), then ``model.fc_norm``: the
  checkpoint's own LayerNorm when it has one (U-MAE's ``global_pool`` feature; official
  fine-tuned files), ``nn.Identity`` otherwise.
- ``pool='cls+avg'``: both, concatenated (DINO's linear-eval feature), width ``2 D``.

Other blocks and the final norm off: a :class:`umae_eval.readout.Readout` (``readout=``); the
default ``None`` is the last block with the final norm, computed by ``forward_features`` as always.

Masked-view encoding lives in :mod:`umae_eval.masked_views`; ``keep_indices`` and
``encode_masked_views`` are re-exported here so that imports from this module keep working.

Example
-------
>>> enc = load_encoder("checkpoint.pth")                              # doctest: +SKIP
>>> feats = extract_features(enc, imageset.x_test, pool="cls")        # (N, D) float32
"""

from __future__ import annotations

import hashlib
import json
import re
import warnings as _pywarnings
from pathlib import Path
from typing import Literal

import numpy as np
import torch

from umae_eval.cache import cache_root, cache_unwritable_message
from umae_eval.checkpoints import LoadedEncoder
from umae_eval.errors import UmaeError
from umae_eval.masked_views import encode_masked_views, keep_indices
from umae_eval.preprocess import to_model_input
from umae_eval.progress import ProgressFactory, null_progress
from umae_eval.provenance import atomic_write
from umae_eval.readout import Readout, check_pool, encode_readout, pool_block, pool_width

__all__ = [
    "Pool",
    "cached_features",
    "encode_batch",
    "encode_masked_views",
    "extract_features",
    "feature_cache_path",
    "feature_precision",
    "keep_indices",
    "pool_tokens",
    "resolve_device",
]

Pool = Literal["cls", "avg", "cls+avg"]
#: Bump when the meaning of cached features changes, so old cache files are not reused.
FEATURE_CACHE_VERSION = 1


def resolve_device(spec: str | torch.device) -> torch.device:
    """Turn ``'auto'``, ``'cpu'``, ``'cuda'`` or ``'cuda:N'`` into a usable ``torch.device``.

    Parameters
    ----------
    spec : str or torch.device
        ``'auto'`` picks CUDA device 0 when available, else the CPU.

    Returns
    -------
    torch.device

    Raises
    ------
    UmaeError
        For an unknown name, or a CUDA device that this machine does not have.
    """
    if isinstance(spec, torch.device):
        spec = str(spec)
    text = spec.strip().lower()
    if text == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if text == "cpu":
        return torch.device("cpu")
    match = re.fullmatch(r"cuda(?::(\d+))?", text)
    if match is None:
        raise UmaeError(f"unknown device {spec!r}; use auto, cpu, cuda or cuda:N")
    if not torch.cuda.is_available():
        raise UmaeError(f"device {spec!r} requested but CUDA is not available here; "
                        "use --device cpu (or auto)")
    index = int(match.group(1) or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise UmaeError(f"device {spec!r} does not exist: this machine has {count} CUDA "
                        f"device(s), cuda:0 to cuda:{count - 1}")
    return torch.device("cuda", index)


def _check_pool(pool: str) -> None:
    check_pool(pool)


def feature_width(encoder: LoadedEncoder, pool: str = "cls", readout: Readout | None = None) -> int:
    """Columns of ``encoder``'s features: blocks read x (``D``, or ``2 D`` for ``cls+avg``)."""
    n_blocks = 1 if readout is None else len(readout.resolved(encoder.info.arch.depth))
    return n_blocks * pool_width(encoder.info.arch.embed_dim, pool)


def _is_default(encoder: LoadedEncoder, readout: Readout | None) -> bool:
    return readout is None or readout.is_default(encoder.info.arch.depth)


def pool_tokens(model: torch.nn.Module, tokens: torch.Tensor, pool: Pool = "cls") -> torch.Tensor:
    """Pool encoder output tokens into one feature per image.

    Parameters
    ----------
    model : MAEEncoderViT
        The encoder that produced ``tokens`` (for ``fc_norm`` and ``num_prefix_tokens``).
    tokens : Tensor, shape (B, 1 + L', D)
        ``forward_features`` output: [CLS] first, then ``L'`` patch tokens (all ``L`` patches,
        or only the visible ones of a masked view), after the final norm.
    pool : {'cls', 'avg', 'cls+avg'}
        ``'cls'``: ``tokens[:, 0]``. ``'avg'``: ``model.fc_norm(tokens[:, 1:].mean(1))``.
        ``'cls+avg'``: both, concatenated.

    Returns
    -------
    Tensor, shape (B, D) (``(B, 2 D)`` for ``cls+avg``)
    """
    return pool_block(model, tokens, pool)


def _check_images(images: np.ndarray) -> None:
    if not isinstance(images, np.ndarray) or images.ndim != 4 or images.shape[-1] != 3:
        shape = getattr(images, "shape", None)
        raise UmaeError(f"images must be a (N, H, W, 3) uint8 array, got {type(images).__name__} "
                        f"with shape {shape}")
    if images.dtype != np.uint8:
        raise UmaeError(f"images must be uint8 (0-255 pixels), got {images.dtype}; convert with "
                        "np.clip(x, 0, 255).astype(np.uint8)")


def extract_features(encoder: LoadedEncoder, images: np.ndarray, *, pool: Pool = "cls",
                     device: str | torch.device = "auto", batch_size: int = 256,
                     progress: ProgressFactory = null_progress,
                     readout: Readout | None = None) -> np.ndarray:
    """Encode images with a frozen encoder: one feature vector per image.

    Each batch goes to ``device`` as uint8, then ``umae_eval.preprocess.to_model_input`` resizes
    it to the encoder's image size and normalises it with ``encoder.info.mean/std``. The encoder
    runs in eval mode under ``torch.inference_mode``, in bfloat16 autocast on CUDA and float32 on
    CPU. The model is moved to ``device`` and left there.

    Parameters
    ----------
    encoder : LoadedEncoder
        From ``umae_eval.checkpoints.load_encoder`` or ``random_init_encoder``.
    images : ndarray, shape (N, H, W, 3), uint8
        RGB pixels.
    pool : {'cls', 'avg'}
        ``'cls'``: the [CLS] token after the final norm, ``forward_features(x)[:, 0]`` (MAE's
        linear-probe feature). ``'avg'``: the mean of the ``L`` patch tokens of
        ``forward_features(x)`` (after the final norm), then the checkpoint's ``fc_norm`` if it
        has one (identity otherwise).
    device : str or torch.device
        ``'auto'``, ``'cpu'``, ``'cuda'``, ``'cuda:N'`` (see :func:`resolve_device`).
    batch_size : int
        Images per forward pass; the result does not depend on it beyond float rounding.
    progress : ProgressFactory
        Advanced by the number of images after each batch.
    readout : Readout, optional
        Blocks read and final norm (:mod:`umae_eval.readout`); None: the last block, final norm.
        Every block read comes from the same forward pass.

    Returns
    -------
    ndarray, shape (N, n_blocks * W), float32
        Row ``i`` is the feature of ``images[i]`` (``W`` = D, or 2 D for ``cls+avg``; one block
        after another).

    Raises
    ------
    UmaeError
        Bad ``images``, ``pool``, ``batch_size`` or ``device``.
    """
    _check_images(images)
    _check_pool(pool)
    if batch_size < 1:
        raise UmaeError(f"batch size must be at least 1, got {batch_size}")
    dev = resolve_device(device)
    encoder.model.to(dev).eval()
    n = len(images)
    out = np.empty((n, feature_width(encoder, pool, readout)), dtype=np.float32)
    with torch.inference_mode(), progress("extracting features", total=n) as advance:
        for start in range(0, n, batch_size):
            chunk = np.array(images[start:start + batch_size], dtype=np.uint8, copy=True)
            batch = torch.from_numpy(chunk)
            out[start:start + len(chunk)] = encode_batch(encoder, batch, dev, pool, readout).cpu().numpy()
            advance(len(chunk))
    return out


def feature_precision(device: torch.device) -> str:
    """The arithmetic features are computed in on ``device``: ``'bf16'`` on CUDA, else ``'fp32'``.

    Part of every cache/store key: the same images give (slightly) different features in each.
    """
    return "bf16" if device.type == "cuda" else "fp32"


def encode_batch(encoder: LoadedEncoder, batch: torch.Tensor, device: torch.device,
                 pool: Pool = "cls", readout: Readout | None = None) -> torch.Tensor:
    """One batch of uint8 images to features: the single code path of every extractor.

    The uint8 batch moves to ``device`` (4x fewer bytes than float32), is resized and normalised
    there by :func:`umae_eval.preprocess.to_model_input`, and runs through
    ``model.forward_features`` under bfloat16 autocast on CUDA (float32 on CPU), then
    :func:`pool_tokens`. The caller puts the model on ``device`` in eval mode and holds
    ``torch.inference_mode``.

    Parameters
    ----------
    encoder : LoadedEncoder
    batch : Tensor, shape (B, H, W, 3), uint8
    device : torch.device
        From :func:`resolve_device`.
    pool : {'cls', 'avg', 'cls+avg'}
    readout : Readout, optional
        Other blocks / no final norm: :func:`umae_eval.readout.encode_readout` (one pass).

    Returns
    -------
    Tensor, shape (B, n_blocks * W), float32, on ``device``
    """
    model = encoder.model
    info = encoder.info
    x = to_model_input(batch.to(device, non_blocking=True), info.arch.img_size, info.mean,
                       info.std, device)
    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=device.type == "cuda"):
        if _is_default(encoder, readout):
            feats = pool_tokens(model, model.forward_features(x), pool)
        else:
            assert readout is not None
            feats = encode_readout(model, x, pool, readout)
    return feats.float()


def feature_cache_path(encoder: LoadedEncoder, images_key: str, *, n_images: int,
                       pool: Pool = "cls", device: str | torch.device = "auto",
                       readout: Readout | None = None) -> Path:
    """Where :func:`cached_features` keeps these features: ``cache_root()/features/<name>.npy``.

    The name hashes everything that changes the numbers: the checkpoint's sha256, its
    architecture (so an ``arch_overrides`` change is a different entry), ``images_key``,
    ``n_images``, ``pool``, image size, mean/std, the precision (bf16 on CUDA, fp32 on CPU) and,
    for any readout but the default, the blocks read and the final norm.

    Returns
    -------
    Path
    """
    info = encoder.info
    dev = resolve_device(device)
    key = {
        "version": FEATURE_CACHE_VERSION,
        "sha256": info.sha256,
        "arch": info.to_json()["arch"],
        "images_key": images_key,
        "n_images": n_images,
        "pool": pool,
        "img_size": info.arch.img_size,
        "mean": [float(v) for v in info.mean],
        "std": [float(v) for v in info.std],
        "precision": feature_precision(dev),
    }
    tag = ""
    if readout is not None and not _is_default(encoder, readout):
        key.update(readout.key(info.arch.depth))
        tag = "-" + readout.tag(info.arch.depth)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", images_key)[:48]
    return cache_root() / "features" / f"{readable}-{pool.replace('+', '')}{tag}-{info.arch.img_size}px-{digest[:20]}.npy"


def cached_features(encoder: LoadedEncoder, images: np.ndarray, *, images_key: str,
                    pool: Pool = "cls", device: str | torch.device = "auto",
                    batch_size: int = 256, progress: ProgressFactory = null_progress,
                    warnings: list[str] | None = None, readout: Readout | None = None) -> np.ndarray:
    """:func:`extract_features`, cached on disk so a second call does not run the model.

    Parameters
    ----------
    encoder, images, pool, device, batch_size, progress, readout
        As for :func:`extract_features`: every block read comes from one pass and is one entry.
    images_key : str
        Identifies the images, e.g. ``f"{imageset.fingerprint}-test"``. The caller guarantees
        that the same key always means the same images.
    warnings : list of str, optional
        Where a cache that cannot be written (disk full, read-only, no permission) is reported:
        one line, appended unless the list already holds it, so a command that calls this for
        several splits warns once. Without a list it goes to Python's ``warnings.warn``.

    Returns
    -------
    ndarray, shape (N, D), float32
        Read from ``cache_root()/features/`` when present and of the right shape (an unreadable
        or mismatched file is recomputed); otherwise computed and written atomically. A cache
        that cannot be written never fails the call: the features are returned uncached.
    """
    _check_images(images)
    _check_pool(pool)
    if not images_key:
        raise UmaeError("images_key must name the images (e.g. '<dataset fingerprint>-test')")
    try:  # cache_root() creates the folder: a read-only home fails here already
        path: Path | None = feature_cache_path(encoder, images_key, n_images=len(images),
                                               pool=pool, device=device, readout=readout)
    except OSError as exc:
        _warn_once(warnings, cache_unwritable_message(getattr(exc, "filename", None)
                                                      or "the cache folder", exc))
        path = None
    expected = (len(images), feature_width(encoder, pool, readout))
    if path is not None and path.is_file():
        try:
            cached = np.load(path, allow_pickle=False)
            recorded = path.with_name(path.name + ".sha256").read_text("ascii").strip()
            if cached.shape == expected and cached.dtype == np.float32:
                if _digest(cached) == recorded:
                    return cached
                _warn_once(warnings, f"feature cache entry {path} is damaged (checksum mismatch); "
                                     "computing the features again")
        except (OSError, ValueError, EOFError):
            pass  # a damaged or unverifiable cache entry: compute it again
    feats = extract_features(encoder, images, pool=pool, device=device, batch_size=batch_size,
                             progress=progress, readout=readout)
    if path is not None:
        try:
            atomic_write(path, lambda fh: np.save(fh, feats, allow_pickle=False))
            atomic_write(path.with_name(path.name + ".sha256"), lambda fh: fh.write(_digest(feats).encode()))
        except OSError as exc:  # full or read-only cache disk: the analysis goes on uncached
            _warn_once(warnings, cache_unwritable_message(path.parent, exc))
    return feats


def _digest(feats: np.ndarray) -> str:
    """sha256 of a feature array's bytes: the checksum beside each cache entry."""
    return hashlib.sha256(np.ascontiguousarray(feats).tobytes()).hexdigest()


def _warn_once(sink: list[str] | None, message: str) -> None:
    if sink is None:
        _pywarnings.warn(message, stacklevel=3)
    elif message not in sink:
        sink.append(message)
