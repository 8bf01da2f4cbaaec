"""Turn a dataset spec into uint8 train/test images, int64 labels and class names.

One entry point, :func:`load_dataset`, detects the format of what the user points at:

``'demo'``
    The class-balanced CIFAR-10 sample shipped in ``umae_eval/demo/`` (see its README).
``cifar-python``
    A ``cifar-10-batches-py`` folder (``data_batch_1`` .. ``data_batch_5``, ``test_batch``,
    ``batches.meta``) or a ``cifar-100-python`` folder (``train``, ``test``, ``meta``; fine
    labels), or the folder that holds one of them, or the ``.tar.gz`` that packs one
    (``cifar-10-python.tar.gz`` as downloaded by torchvision).
``imagefolder``
    A folder with ``train/<class>/<image>`` and ``test/<class>/<image>`` (or ``val/``) files,
    JPEG/PNG/... of any size and mode (grayscale, RGBA and palette images become RGB; alpha
    is dropped, as torchvision's loader does). Tiny ImageNet-200 and ImageNet's Kaggle layout
    are recognised as distributed (see :mod:`umae_eval.data.layouts`): val labelled from
    ``val_annotations.txt`` / ``LOC_val_solution.csv``, class names from ``words.txt`` /
    ``LOC_synset_mapping.txt``, an unlabelled ``test/`` skipped with a note.
``imagefolder-tar``
    The same tree packed as ``.tar``, ``.tar.gz`` or ``.tgz`` (any common top-level folder is
    allowed), read by streaming through the archive without extracting it.
``npz``
    An ``.npz`` with ``x_train, y_train, x_test, y_test`` and optionally ``class_names`` (a str
    array; default ``'0' .. 'K-1'``). Images are ``(N, H, W, 3)`` uint8; ``(N, 3, H, W)`` is
    transposed, grayscale ``(N, H, W)`` / ``(N, H, W, 1)`` repeated to 3 channels, floats in
    [0, 1] scaled by 255 and rounded, other integers in 0..255 cast. Labels ``(N,)`` or
    ``(N, 1)``. Object arrays (pickles) are refused.

Decoded images (ImageFolder, tar, demo) are cached as ``.npy`` files under
``umae_eval.cache.cache_root() / 'images'``, keyed by the source's resolved path, size and
modification time (every file's, for a folder) and the decode size, so a second command on
the same 60,000 JPEGs loads in a fraction of a second instead of decoding again.

Example
-------
>>> from umae_eval.data import load_dataset
>>> data = load_dataset("demo")
>>> data.x_train.shape, data.num_classes
((3000, 32, 32, 3), 10)
"""
from umae_eval.data.decode import decode_image
from umae_eval.data.decode_cache import cache_key
from umae_eval.data.demo_sample import demo_path
from umae_eval.data.formats import (
    DEFAULT_DECODE_SIZE,
    FORMATS,
    IMAGE_SUFFIXES,
    TAR_SUFFIXES,
)
from umae_eval.data.imageset import ImageSet, compute_fingerprint
from umae_eval.data.load import load_dataset

__all__ = [
    "DEFAULT_DECODE_SIZE",
    "FORMATS",
    "IMAGE_SUFFIXES",
    "TAR_SUFFIXES",
    "ImageSet",
    "cache_key",
    "compute_fingerprint",
    "decode_image",
    "demo_path",
    "load_dataset",
]
