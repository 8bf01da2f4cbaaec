"""The entry point :func:`load_dataset`: detect the format of a spec and read it."""

from __future__ import annotations

import tarfile
from pathlib import Path

from umae_eval.data.cifar import find_cifar_dir, read_cifar
from umae_eval.data.decode_cache import cached_decode
from umae_eval.data.demo_sample import load_demo
from umae_eval.data.folder import decode_listing, is_layout_folder, list_imagefolder, load_tar
from umae_eval.data.formats import ACCEPTED, TAR_SUFFIXES
from umae_eval.data.imageset import ImageSet
from umae_eval.data.npz import read_npz
from umae_eval.errors import UmaeError
from umae_eval.progress import ProgressFactory, null_progress

# --------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------


def load_dataset(spec: str | Path, *, cache: bool = True, decode_size: int | None = None,
                 progress: ProgressFactory = null_progress) -> ImageSet:
    """Load train/test images, labels and class names from a dataset spec.

    Parameters
    ----------
    spec : str or Path
        ``'demo'`` (the embedded CIFAR-10 sample), or a path to a CIFAR python folder (or
        its parent, or its ``.tar.gz``), an ImageFolder folder, an ImageFolder packed as
        ``.tar``/``.tar.gz``/``.tgz``, or an ``.npz`` (see the module docstring).
        A folder literally named ``demo`` is reached as ``./demo``.
    cache : bool
        Read and write decoded images under ``cache_root()/images`` (ImageFolder, tar and
        demo sources; CIFAR pickles and .npz files load fast without it).
    decode_size : int, optional
        Resize every image to ``decode_size x decode_size`` (shorter side, bicubic, then
        centre crop); JPEGs at least twice that size are first decoded at a reduced scale
        (PIL draft mode), which is much faster. By default images keep their native size
        when they all share one, and are brought to :data:`DEFAULT_DECODE_SIZE` when an
        ImageFolder's images differ.
    progress : ProgressFactory
        Reports reading and decoding; silent by default.

    Returns
    -------
    ImageSet
        ``x_train (N, H, W, 3)`` uint8, ``y_train (N,)`` int64, the same for test, the class
        names, the format detected and the content fingerprint.

    Raises
    ------
    UmaeError
        One line naming the file and the fix: missing path, unknown format, missing .npz
        keys, corrupt pickle/archive, ImageFolder without classes or images, an unreadable
        image, test classes that train lacks, labels out of range.
    """
    if decode_size is not None and (int(decode_size) != decode_size or decode_size < 1):
        raise UmaeError(f"decode_size must be a positive integer, got {decode_size!r}")
    if isinstance(spec, str) and spec.strip().lower() == "demo":
        return load_demo(cache, decode_size, progress)
    path = Path(spec).expanduser()
    source = str(spec)
    if not path.exists():
        raise UmaeError(f"{source}: no such file or folder; pass an existing dataset path or 'demo'")
    if not (path.is_dir() or path.is_file()):  # /dev/zero, a FIFO: format detection would never end
        raise UmaeError(f"{source}: not a regular file or folder (a device, pipe or socket); pass a "
                        "dataset file or folder")
    if path.is_dir():
        cifar = find_cifar_dir(path)
        if cifar is not None:
            arrays = read_cifar(lambda name: (cifar / name).read_bytes(),
                                 lambda name: (cifar / name).is_file(), str(cifar))
            return arrays.resized(decode_size).to_imageset(source)
        if is_layout_folder(path):
            return cached_decode(path, source, "imagefolder", decode_size, cache,
                           lambda: decode_listing(list_imagefolder(path, source), source, "imagefolder",
                                                   decode_size, progress, path.name or source))
        raise UmaeError(f"{source}: not a dataset umae can read (it holds {_seen(path)}); {ACCEPTED}")
    lower = path.name.lower()
    if lower.endswith(".npz"):
        return read_npz(path, source).resized(decode_size).to_imageset(source)
    if lower.endswith(TAR_SUFFIXES) or _is_tarfile(path):
        return cached_decode(path, source, "tar", decode_size, cache,
                       lambda: load_tar(path, source, decode_size, progress))
    raise UmaeError(f"{source}: not a dataset umae can read (a file of {path.stat().st_size} bytes "
                    f"with suffix {path.suffix or '(none)'!r}); {ACCEPTED}")


def _seen(path: Path, limit: int = 8) -> str:
    names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    if not names:
        return "nothing"
    more = f" and {len(names) - limit} more" if len(names) > limit else ""
    return ", ".join(names[:limit]) + more


def _is_tarfile(path: Path) -> bool:
    try:
        return tarfile.is_tarfile(path)
    except OSError:
        return False


