"""Which options `--features` refuses: those that only mean something with a checkpoint or images.

Features read from files are one fixed read-out of images umae never sees, so an option that
reads blocks, pools tokens, normalises or decodes images, masks views or loads checkpoints has
nothing to act on; it is refused with one line (exit 2) rather than silently ignored. Options
are compared with their defaults, so only those the user set are refused.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from umae_eval.errors import UmaeError

#: option name -> (flag, default, what it acts on). Its default is what the commands declare.
CHECKPOINT_ONLY: dict[str, tuple[str, Any, str]] = {
    "layers": ("--layers", "last", "reads blocks of an encoder"),
    "pool": ("--pool", "cls", "pools an encoder's tokens"),
    "final_norm": ("--final-norm", "on", "applies an encoder's final norm"),
    "random_init": ("--random-init", False, "adds an untrained encoder of a checkpoint's architecture"),
    "trust_pickle": ("--trust-pickle", False, "unpickles checkpoints"),
    "num_heads": ("--num-heads", None, "sets how a checkpoint is loaded"),
    "norm": ("--norm", None, "normalises images for an encoder"),
    "data_mode": ("--data-mode", "auto", "decides how images are decoded"),
    "workers": ("--workers", None, "decodes images"),
    "skip_bad_images": ("--skip-bad-images", False, "skips undecodable images"),
    "feature_dtype": ("--feature-dtype", "float32", "stores an encoder's features; your file's dtype is used"),
    "mask_ratio": ("--mask-ratio", 0.75, "masks images for the masked views, which need an encoder"),
    "max_views": ("--max-views", 2000, "sizes the masked views, which need an encoder"),
    "batch_size": ("--batch-size", 256, "sets images per forward pass of an encoder"),
}


def check_feature_options(features: Sequence[Path] | None, ckpts: Sequence[Path] | None, data: str | None,
                          given: Mapping[str, Any], methods: str | None = None) -> bool:
    """True when the command analyses ``--features``; refuses every option that cannot apply.

    Without ``--features`` it checks that checkpoints and ``--data`` were given (the two are
    optional in the signature only so that ``--features`` can stand in for them).
    """
    if not features:
        if not ckpts:
            raise UmaeError("no checkpoint given; pass CKPT file(s) and --data, e.g. umae probe mae.pth "
                            "--data demo, or features saved from your own pipeline with --features PATH")
        if data is None:
            raise UmaeError("--data is required with checkpoints, e.g. --data demo; or give --features PATH "
                            "instead of checkpoints")
        return False
    if ckpts:
        raise UmaeError(f"checkpoints ({ckpts[0]}) and --features were both given; analyse either checkpoints "
                        "with --data or features from files with --features, not both")
    if data is not None:
        raise UmaeError(f"--data {data} with --features: the labels come from the features file; drop --data")
    for name, value in given.items():
        flag, default, what = CHECKPOINT_ONLY[name]
        if value != default:
            shown = "" if isinstance(value, bool) else f" {value}"
            raise UmaeError(f"{flag}{shown} {what}; features read with --features have none: drop {flag}")
    if methods is not None and "attentive" in [m.strip().lower() for m in methods.split(",")]:
        raise UmaeError("--methods attentive trains on an encoder's patch tokens; features read with --features "
                        "are pooled: drop attentive from --methods")
    return True
