"""umae: train MAE / U-MAE and measure what they learn.

Modules that import timm call :func:`umae_eval.compat.ensure_timm_importable` first (it lets
timm import on CPU torch beside PyPI's CUDA torchvision). The package itself imports nothing
heavy, so ``umae --help`` stays fast.
"""

__version__ = "0.1.0"
