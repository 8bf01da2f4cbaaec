"""The embedded CIFAR-10 sample shipped in ``umae_eval/demo/``."""

from __future__ import annotations

import zipfile
import zlib
from importlib import resources
from pathlib import Path

import numpy as np

from umae_eval.data.decode_cache import cached_decode
from umae_eval.data.folder import Entry, Listing, decode_listing
from umae_eval.data.formats import DEMO_FILE
from umae_eval.data.imageset import Arrays, ImageSet
from umae_eval.errors import UmaeError
from umae_eval.progress import ProgressFactory

# --------------------------------------------------------------------------------------------
# Demo sample
# --------------------------------------------------------------------------------------------


def demo_path() -> Path:
    """Path of the embedded CIFAR-10 sample (``umae_eval/demo/cifar10-sample.npz``)."""
    return Path(str(resources.files("umae_eval").joinpath(DEMO_FILE)))


def load_demo(cache: bool, decode_size: int | None, progress: ProgressFactory) -> ImageSet:
    path = demo_path()
    if not path.is_file():
        raise UmaeError(f"{path}: the embedded demo sample is missing; reinstall umae or run "
                        "scripts/make_demo_sample.py")
    return cached_decode(path, "demo", "demo", decode_size, cache,
                   lambda: _decode_demo(path, decode_size, progress))


def _decode_demo(path: Path, decode_size: int | None, progress: ProgressFactory) -> Arrays:
    """The sample stores each split's JPEG files back to back: ``<split>_jpeg`` + offsets."""
    try:
        with np.load(path, allow_pickle=False) as z:
            d = {k: z[k] for k in z.files}
        entries: dict[str, list[Entry]] = {}
        for split in ("train", "test"):
            blob, offsets = d[f"{split}_jpeg"], d[f"{split}_offsets"]
            labels, files = d[f"y_{split}"], d[f"{split}_files"]
            entries[split] = [(str(files[i]), int(labels[i]), blob[offsets[i]:offsets[i + 1]].tobytes())
                              for i in range(len(labels))]
        names = [str(n) for n in d["class_names"]]
    except (OSError, ValueError, KeyError, IndexError, EOFError, zipfile.BadZipFile, zlib.error) as exc:
        raise UmaeError(f"{path}: the embedded demo sample is damaged ({type(exc).__name__}: {exc}); "
                        "reinstall umae or run scripts/make_demo_sample.py") from None
    listing = Listing(names, entries["train"], entries["test"])
    return decode_listing(listing, "demo", "demo", decode_size, progress, "the demo sample")


