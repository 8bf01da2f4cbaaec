"""umae: train MAE / U-MAE and measure what they learn."""

from umae_eval.compat import ensure_timm_importable

__version__ = "0.1.0"

# Every entry point that reaches timm goes through this package first.
ensure_timm_importable()
