"""Let ``import timm`` work on CPU-only torch when PyPI's CUDA torchvision is installed.

timm imports torchvision at import time. On a CPU build of torch, the CUDA build of
torchvision cannot load its C++ extension, so its operators (``torchvision::nms`` ...) are
never registered, and torchvision's ``_meta_registrations`` module fails on import with
``RuntimeError: operator torchvision::nms does not exist``. Only ``nms`` and ``qnms`` are
registered unconditionally there (the others are guarded by ``_has_ops()``), so defining
those two schemas lets the pure-Python parts (transforms, which is what timm uses) import.
The operators stay without kernels: calling them raises torch's own "no kernel" error.

The step is guarded: where torchvision imports normally (a matching CPU build, or a CUDA
machine) it does nothing.
"""

from __future__ import annotations

import sys

import torch

_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
# Kept at module level: a torch.library.Library deregisters its definitions when collected.
_LIBRARY: torch.library.Library | None = None


def _purge_torchvision() -> None:
    for name in list(sys.modules):
        if name == "torchvision" or name.startswith("torchvision."):
            del sys.modules[name]


def ensure_timm_importable() -> bool:
    """Make ``import torchvision`` (and so ``import timm``) succeed.

    Returns
    -------
    bool
        True if the stand-in operator schemas had to be defined, False if torchvision
        imported on its own (or was already imported) and nothing was changed.
    """
    global _LIBRARY
    if _LIBRARY is not None:
        return True
    if "torchvision" in sys.modules and hasattr(sys.modules["torchvision"], "__version__"):
        return False
    try:
        import torchvision  # noqa: F401

        return False
    except RuntimeError as exc:
        if "torchvision::" not in str(exc):
            raise
    _purge_torchvision()
    lib = torch.library.Library("torchvision", "DEF")
    for schema in _SCHEMAS:
        name = schema.split("(", 1)[0]
        if not _op_exists(name):
            lib.define(schema)
    _LIBRARY = lib
    import torchvision  # noqa: F401,F811

    return True


def _op_exists(name: str) -> bool:
    try:
        torch._C._dispatch_find_schema_or_throw(f"torchvision::{name}", "")
        return True
    except RuntimeError:
        return False
