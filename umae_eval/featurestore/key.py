"""What a feature store holds: :class:`StoreKey`, and where a store lives by default.

Everything that changes the numbers is in the key, and the key's digest names the store's folder,
so two commands asking for the same features share one store and any change (another
checkpoint, transform, pooling, blocks read, final norm, subset, precision or storage dtype) is
another store. A store of several blocks holds them side by side (one pass fills them all).
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from umae_eval.cache import cache_root
from umae_eval.checkpoints import LoadedEncoder
from umae_eval.errors import UmaeError
from umae_eval.features import feature_precision, feature_width, resolve_device
from umae_eval.readout import POOLS, Readout

#: Bump when the meaning or layout of stored features changes, so old stores are not reused.
FEATURE_STORE_VERSION = 1
DTYPES = ("float32", "float16")
PRECISIONS = ("fp32", "bf16")


@dataclass(frozen=True)
class StoreKey:
    """Identity of one ``(N, D)`` feature matrix.

    Attributes
    ----------
    checkpoint_sha256 : str
        ``EncoderInfo.sha256`` (``'random-init-seed<N>'`` for a random encoder).
    arch : dict
        ``asdict(EncoderInfo.arch)``: an ``arch_overrides`` change is another store.
    data_fingerprint : str
        ``ImageSet.fingerprint`` (or the lazy set's fingerprint).
    split : str
        ``'train'`` or ``'test'`` (any label the caller keeps stable).
    subset : str
        ``'all'`` or :func:`umae_eval.subsets.subset_digest` of the row indices, in order.
    transform : str
        The eval transform that produced the pixels, e.g. ``'resize256-crop224-bicubic'``.
    pool : {'cls', 'avg', 'cls+avg'}
    img_size : int
        The encoder's input side.
    mean, std : tuple of 3 floats
        The normalisation applied on the device.
    precision : {'fp32', 'bf16'}
        :func:`umae_eval.features.feature_precision` of the device that computes the features.
    n, dim : int
        Rows (images) and feature width.
    dtype : {'float32', 'float16'}
        Storage dtype. Features are always computed in float32 and cast when stored.
    blocks : tuple of int, optional
        0-based blocks read, side by side in the columns; None: the last block (umae's feature).
    final_norm : bool
        Whether the final norm applies to the blocks read. ``blocks`` None with ``final_norm``
        True is the default readout, and such a key is the key umae always wrote (same digest).
    """

    checkpoint_sha256: str
    arch: dict[str, Any] = field(hash=False)
    data_fingerprint: str
    split: str
    subset: str
    transform: str
    pool: str
    img_size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    precision: str
    n: int
    dim: int
    dtype: str = "float32"
    blocks: tuple[int, ...] | None = None
    final_norm: bool = True

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise UmaeError(f"feature dtype {self.dtype!r} is not supported; use float32 or float16")
        if self.pool not in POOLS:
            raise UmaeError(f"unknown pooling {self.pool!r}; use {', '.join(POOLS)}")
        if self.precision not in PRECISIONS:
            raise UmaeError(f"precision must be one of {PRECISIONS}, got {self.precision!r}")
        if int(self.n) < 0 or int(self.dim) < 1 or int(self.img_size) < 1:
            raise UmaeError(f"a feature store needs n >= 0, dim >= 1 and img_size >= 1, got "
                            f"n={self.n}, dim={self.dim}, img_size={self.img_size}")
        # Normalise types so that a key read back from JSON compares equal to the original.
        object.__setattr__(self, "arch", json.loads(json.dumps(dict(self.arch), sort_keys=True)))
        object.__setattr__(self, "mean", tuple(float(v) for v in self.mean))
        object.__setattr__(self, "std", tuple(float(v) for v in self.std))
        for name in ("n", "dim", "img_size"):
            object.__setattr__(self, name, int(getattr(self, name)))
        if self.blocks is not None:
            object.__setattr__(self, "blocks", tuple(int(b) for b in self.blocks))
        object.__setattr__(self, "final_norm", bool(self.final_norm))

    def __hash__(self) -> int:  # arch is a dict: hash the digest instead
        return hash(self.digest())

    def to_json(self) -> dict[str, Any]:
        """A JSON-safe dict of every field."""
        out = asdict(self)
        out["mean"], out["std"] = list(self.mean), list(self.std)
        # the default readout adds nothing: its digest is the one earlier stores were written under
        if self.blocks is None and self.final_norm:
            del out["blocks"], out["final_norm"]
        elif self.blocks is not None:
            out["blocks"] = list(self.blocks)
        return out

    @classmethod
    def from_json(cls, obj: dict[str, Any]) -> StoreKey:
        """The inverse of :meth:`to_json`."""
        obj = dict(obj)
        if obj.get("blocks") is not None:
            obj["blocks"] = tuple(obj["blocks"])
        return cls(**obj)

    def digest(self) -> str:
        """Hex sha256 of the key (with :data:`FEATURE_STORE_VERSION`)."""
        text = json.dumps({"version": FEATURE_STORE_VERSION, **self.to_json()}, sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()

    def readable_name(self) -> str:
        """A folder-safe summary: fingerprint, split, subset, pooling, size, dtype."""
        subset = "all" if self.subset == "all" else f"sub{self.subset[:8]}"
        blocks = "" if self.blocks is None else "b" + ".".join(map(str, self.blocks))[:24] + "-"
        norm = "" if self.final_norm else "nonorm-"
        text = (f"{self.data_fingerprint[:12]}-{self.split}-{subset}-{self.pool}-{blocks}{norm}"
                f"{self.img_size}px-{'fp16' if self.dtype == 'float16' else 'fp32'}")
        return re.sub(r"[^A-Za-z0-9._-]+", "_", text)[:80]


def store_key(encoder: LoadedEncoder, *, data_fingerprint: str, split: str, n: int,
              subset: str = "all", transform: str = "none", pool: str = "cls",
              device: str | torch.device = "auto", dtype: str = "float32",
              readout: Readout | None = None) -> StoreKey:
    """The :class:`StoreKey` of ``encoder``'s features of ``n`` images on ``device``.

    Fills the checkpoint hash, architecture, image size, mean/std, width and precision from the
    encoder and the device; the caller says which images (fingerprint, split, subset, transform).
    A ``readout`` other than the default (last block, final norm) adds its blocks and norm.
    """
    info = encoder.info
    depth = info.arch.depth
    default = readout is None or readout.is_default(depth)
    blocks = None if default else readout.resolved(depth)  # type: ignore[union-attr]
    final_norm = True if default else bool(readout.final_norm)  # type: ignore[union-attr]
    return StoreKey(checkpoint_sha256=info.sha256, arch=asdict(info.arch),
                    data_fingerprint=data_fingerprint, split=split, subset=subset,
                    transform=transform, pool=pool, img_size=info.arch.img_size, mean=info.mean,
                    std=info.std, precision=feature_precision(resolve_device(device)), n=n,
                    dim=feature_width(encoder, pool, readout), dtype=dtype, blocks=blocks,
                    final_norm=final_norm)


def default_store_dir(key: StoreKey, root: str | Path | None = None) -> Path:
    """``<root>/<readable name>-<20 hex digits of the key digest>``.

    ``root`` defaults to ``umae_eval.cache.cache_root()/features`` (``$UMAE_CACHE_DIR``); a
    caller that wants the stores elsewhere (a bigger disk) passes its own ``root``, or passes
    ``store_dir`` to the extractor directly.
    """
    base = Path(root) if root is not None else cache_root() / "features"
    return base / f"{key.readable_name()}-{key.digest()[:20]}"


def key_readout(key: StoreKey) -> Readout | None:
    """The :class:`~umae_eval.readout.Readout` a key's features were computed with (None: default)."""
    if key.blocks is None and key.final_norm:
        return None
    return Readout(key.blocks, key.final_norm)
