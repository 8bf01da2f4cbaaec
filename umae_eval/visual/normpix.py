"""Was a checkpoint trained on per-patch normalised pixels (``norm_pix_loss``), and how to show it.

With ``norm_pix_loss`` MAE's target for each patch is the patch minus its own mean, divided by
``sqrt(var + 1e-6)`` (He et al. 2022, ``models_mae.forward_loss``), so the decoder predicts
patches without their brightness and contrast: shown as pixels they look grey. Putting the
statistics back needs a mean and variance per masked patch, which the model never saw.

Detection rule (first that applies, recorded as ``source``):

1. ``stated``: the file says so (umae metadata, ``args.norm_pix_loss`` of an MAE / U-MAE
   training file, a Hugging Face ``config.json``, an mmpretrain or solo-learn config).
2. ``file name``: the official releases: ``*visualize*`` files are pixel-target,
   ``*_full*`` files are norm-pix (PROTOCOLS.md section 4).
3. ``outputs``: the decoder's predictions on the masked patches of the images shown are
   compared with both possible targets: R^2 = 1 - MSE(pred, t) / Var(t) for the pixel target
   and for the per-patch normalised one. The target the predictions explain better, by at least
   0.1, and with R^2 > 0, is the one it was trained on; otherwise ``undetermined`` (an untrained
   decoder explains neither), shown as pixels.

Display modes for a norm-pix checkpoint (``mode``):

- ``raw``: the prediction as if it were pixels (what a naive script shows);
- ``visible``: each masked patch gets the mean and variance of the ``k`` nearest visible patches
  (grid distance; k = 4): no information from the hidden patches;
- ``true``: each masked patch gets its own true mean and variance: this LEAKS the target into
  the picture (pengzhiliang/MAE-pytorch issue 40); only on request, and labelled so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from umae_eval.errors import UmaeError

MODES = ("visible", "raw", "true")
MODE_LABELS = {
    "pixels": "pixel target: predictions shown as they are",
    "visible": "norm-pix target, un-normalised with the nearest visible patches' statistics (no leak)",
    "raw": "norm-pix target shown raw (per-patch normalised values as pixels)",
    "true": "norm-pix target, un-normalised with the masked patches' TRUE statistics: LEAKS THE TARGET",
}
#: MAE's variance floor in the per-patch normalisation.
EPS = 1e-6
#: Output-based rule: the better target must explain this much more variance (R^2 units).
R2_MARGIN = 0.1
#: Visible neighbours whose statistics a masked patch borrows in mode 'visible'.
K_NEAREST = 4


@dataclass
class NormPixVerdict:
    """Whether the checkpoint predicts per-patch normalised pixels, and how that was decided.

    ``norm_pix`` is True / False, or None when undetermined (then shown as pixels);
    ``source`` is 'stated', 'file name', 'outputs' or 'undetermined'; ``r2_pixel`` and
    ``r2_normalised`` are the output check's numbers when it ran.
    """

    norm_pix: bool | None
    source: str
    detail: str
    r2_pixel: float | None = None
    r2_normalised: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {"norm_pix": self.norm_pix, "source": self.source, "detail": self.detail,
                "r2_pixel": self.r2_pixel, "r2_normalised": self.r2_normalised}


def normalise_patches(target: Tensor) -> Tensor:
    """MAE's norm-pix target: each patch (last axis) minus its mean over ``sqrt(var + 1e-6)``.

    ``target`` (..., p*p*3) -> same shape. The variance is the unbiased one, as
    ``Tensor.var`` in ``models_mae.forward_loss``.
    """
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True)
    return (target - mean) / (var + EPS) ** 0.5


def stated_norm_pix(decoder_hints: dict[str, Any], path: str | Path) -> NormPixVerdict | None:
    """Steps 1 and 2 of the rule: the file's own statement, else its official name; None if neither."""
    if isinstance(decoder_hints.get("norm_pix_loss"), bool):
        value = decoder_hints["norm_pix_loss"]
        return NormPixVerdict(value, "stated", f"the file states norm_pix_loss={value}")
    name = Path(path).name.lower()
    if "visualize" in name:
        return NormPixVerdict(False, "file name", f"'{Path(path).name}': official *visualize* files are pixel-target")
    if "_full" in name:
        return NormPixVerdict(True, "file name", f"'{Path(path).name}': official *_full* files are norm-pix")
    return None


def _r2(pred: Tensor, target: Tensor) -> float:
    var = float(target.var())
    return 1.0 - float(((pred - target) ** 2).mean()) / var if var > 0 else float("nan")


def norm_pix_from_outputs(pred: Tensor, target: Tensor, mask: Tensor) -> NormPixVerdict:
    """Step 3: which target the masked-patch predictions explain.

    Parameters
    ----------
    pred : Tensor, shape (B, L, p*p*3)
        Decoder output.
    target : Tensor, shape (B, L, p*p*3)
        ``patchify`` of the normalised input images (the pixel target).
    mask : Tensor, shape (B, L)
        1 on masked patches (only those are compared, as in the loss).
    """
    sel = mask.bool()
    if not sel.any():
        raise UmaeError("norm-pix detection needs masked patches; use a mask ratio above 0")
    p, t = pred[sel].float(), target[sel].float()
    r2_pix, r2_norm = _r2(p, t), _r2(p, normalise_patches(t))
    detail = f"R^2 of the predictions: {r2_pix:.3f} against pixels, {r2_norm:.3f} against per-patch normalised pixels"
    if math.isfinite(r2_norm) and r2_norm > 0 and r2_norm >= r2_pix + R2_MARGIN:
        return NormPixVerdict(True, "outputs", detail, r2_pix, r2_norm)
    if math.isfinite(r2_pix) and r2_pix > 0 and r2_pix >= r2_norm + R2_MARGIN:
        return NormPixVerdict(False, "outputs", detail, r2_pix, r2_norm)
    return NormPixVerdict(None, "undetermined", detail + "; neither fits: shown as pixels", r2_pix, r2_norm)


def _grid_positions(num_patches: int) -> Tensor:
    side = math.isqrt(num_patches)
    rows, cols = torch.meshgrid(torch.arange(side), torch.arange(side), indexing="ij")
    return torch.stack([rows.reshape(-1), cols.reshape(-1)], dim=1).float()


def visible_statistics(target: Tensor, mask: Tensor, k: int = K_NEAREST) -> tuple[Tensor, Tensor]:
    """Per-patch mean and variance borrowed from the ``k`` nearest visible patches.

    Visible patches keep their own statistics (the model saw them); a masked patch gets the
    average mean and variance of the ``k`` visible patches nearest on the grid (ties: lower
    index first). Nothing from a masked patch enters.

    Returns
    -------
    mean, var : Tensor, shape (B, L, 1)
    """
    mean = target.mean(dim=-1, keepdim=True)
    var = target.var(dim=-1, keepdim=True)
    pos = _grid_positions(target.shape[1])
    dist = torch.cdist(pos, pos)  # (L, L)
    out_mean, out_var = mean.clone(), var.clone()
    for b in range(target.shape[0]):
        visible = (mask[b] == 0).nonzero().squeeze(1)
        hidden = (mask[b] != 0).nonzero().squeeze(1)
        if len(hidden) == 0:
            continue
        kk = min(k, len(visible))
        # stable order: distance, then index (argsort is stable on the sorted index order)
        d = dist[hidden][:, visible]
        near = visible[torch.argsort(d, dim=1, stable=True)[:, :kk]]  # (hidden, kk)
        out_mean[b, hidden] = mean[b, near].mean(dim=1)
        out_var[b, hidden] = var[b, near].mean(dim=1)
    return out_mean, out_var


def to_pixel_space(pred: Tensor, target: Tensor, mask: Tensor, norm_pix: bool, mode: str) -> Tensor:
    """Predictions (B, L, p*p*3) -> patches in the normalised-input space of the images.

    Pixel-target checkpoints: unchanged. Norm-pix: per ``mode`` (module docstring).
    """
    if not norm_pix:
        return pred
    if mode == "raw":
        return pred
    if mode == "visible":
        mean, var = visible_statistics(target, mask)
    elif mode == "true":
        mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
    else:
        raise UmaeError(f"--unnormalise {mode!r}: choose from {', '.join(MODES)}")
    return pred * (var + EPS) ** 0.5 + mean
