"""Display names from a checkpoint's own metadata: ``U-MAE λ=0.01 e200`` instead of ``last``.

umae's metadata says the method, lambda, uniformity form and completed epochs; an MAE / U-MAE
``main_pretrain.py`` file's ``args`` say lambda (U-MAE's ``lamb``) and the checkpoint its epoch.
Other layouts record none of these, and keep their file name.
"""

from __future__ import annotations

from typing import Any

from umae_eval.checkpoints.info import EncoderInfo


def _method(method: str, lam: float) -> str:
    base = {"mae": "MAE", "simmim": "SimMIM", "u-mae": "MAE", "u-simmim": "SimMIM"}.get(method.lower())
    if base is None:
        return method
    return f"U-{base}" if lam > 0 or method.lower().startswith("u-") else base


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def metadata_name(info: EncoderInfo) -> str | None:
    """A short name from what the file records, or None when it records too little.

    Examples: ``'U-MAE λ=0.01 e200'``, ``'MAE e800'``, ``'U-MAE λ=0.01 paper e100'`` (the form is
    named unless it is the default ``code``).
    """
    meta = info.metadata
    if info.layout == "umae":
        lam = _number(meta.get("lam")) or 0.0
        parts = [_method(str(meta.get("method", "mae")), lam)]
        if lam > 0:
            parts.append(f"λ={lam:g}")
            form = meta.get("unif_form")
            if isinstance(form, str) and form != "code":
                parts.append(form)
        epoch = _number(meta.get("epoch"))
        if epoch is not None:
            parts.append(f"e{int(epoch)}")
        return " ".join(parts)
    if info.layout in ("u-mae", "official-full", "official-encoder") and "saved_epoch" in meta:
        lam = _number(meta.get("lamb")) or 0.0
        parts = ["U-MAE" if info.layout == "u-mae" or lam > 0 else "MAE"]
        if lam > 0:
            parts.append(f"λ={lam:g}")
        parts.append(f"e{int(meta['saved_epoch']) + 1}")  # main_pretrain.py saves the 0-based epoch
        return " ".join(parts)
    return None
