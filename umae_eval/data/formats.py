"""Names every data module shares: formats, suffixes, sizes, the accepted-input sentence."""


from __future__ import annotations

import lzma
import tarfile
import zlib
from collections.abc import Iterable

from umae_eval.errors import UmaeError

#: The values ``ImageSet.format`` takes.
FORMATS: tuple[str, ...] = ("cifar-python", "imagefolder", "imagefolder-tar", "npz", "demo")

#: File suffixes read as images in an ImageFolder tree (others, e.g. README files, are ignored).
IMAGE_SUFFIXES: frozenset[str] = frozenset(
    {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pbm"}
)

#: Archive suffixes read as a packed ImageFolder (or packed CIFAR python folder).
TAR_SUFFIXES: tuple[str, ...] = (".tar.gz", ".tgz", ".tar", ".tar.bz2", ".tbz2", ".tar.xz", ".txz")

#: The side images are resized to when an ImageFolder's images differ in size and no
#: ``decode_size`` is given (ImageNet's evaluation size).
DEFAULT_DECODE_SIZE = 224

#: The embedded sample, relative to the ``umae_eval`` package.
DEMO_FILE = "demo/cifar10-sample.npz"

TEST_SPLITS = ("test", "val")
CACHE_VERSION = 2  # 2: class ids and notes in meta.json; names from words.txt
NPZ_KEYS = ("x_train", "y_train", "x_test", "y_test")
CIFAR10_TRAIN = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_FILES = (*CIFAR10_TRAIN, "test_batch", "batches.meta")
CIFAR100_FILES = ("train", "test", "meta")
ACCEPTED = (
    "accepted: 'demo', a cifar-10-batches-py or cifar-100-python folder (or its parent), "
    "an ImageFolder folder with train/ and test/ (or val/) class folders, the same packed as "
    ".tar/.tar.gz/.tgz, or an .npz with x_train, y_train, x_test, y_test"
)
ARCHIVE_ERRORS: tuple[type[BaseException], ...] = (
    tarfile.TarError,
    EOFError,
    zlib.error,
    lzma.LZMAError,
    OSError,
)


#: The largest archive member read as an image or metadata file (CIFAR-100's 'train' pickle is
#: 155 MB); a larger one is refused from its header, before a byte of it is read.
MAX_MEMBER_BYTES = 256 << 20

#: A compressed tar may grow this many times when decompressed (JPEG/PNG images barely
#: compress; tar headers do) before it is taken for a bomb and refused, with at least
#: :data:`MIN_DECOMPRESSED_ALLOWANCE` allowed whatever its size.
MAX_COMPRESSION_RATIO = 100
MIN_DECOMPRESSED_ALLOWANCE = 1 << 30

#: Labels above this are refused before any per-class list is built (ImageNet-21k has 21,841
#: classes): a damaged label of 999999999999 would otherwise ask for a list that long.
MAX_CLASSES = 100_000


def printable_name(name: str) -> str:
    """``name`` as one printable line: undecodable bytes (surrogate escapes) as ``\\xNN``."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def check_utf8_names(names: Iterable[str], where: str) -> None:
    """Refuse a file or class name that is not valid UTF-8 (Linux hands it over with
    surrogate escapes, which no results.json, CSV or report can hold).

    Raises
    ------
    UmaeError
        Naming the first such file, shown with ``\\xNN`` for its undecodable bytes.
    """
    for name in names:
        if not name.isascii():
            try:
                name.encode("utf-8")
            except UnicodeEncodeError:
                raise UmaeError(f"{where}: the name '{printable_name(name)}' is not valid UTF-8; rename it "
                                "(e.g. `convmv -f latin1 -t utf-8 -r --notest FOLDER`)") from None
