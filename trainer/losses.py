"""Losses of MAE / SimMIM and the uniformity term of U-MAE ("How Mask Matters", Eq. 10-11).

``L = L_recon + lambda * L_unif``. The reconstruction term is the masked-patch error of the
model (MSE for MAE, L1 for SimMIM); the uniformity term acts on the encoder's [CLS] feature of
the same masked view the decoder reconstructs from, over the global batch.
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from umae_eval.errors import UmaeError

UnifForm = Literal["code", "paper", "released"]

#: How the three forms differ, in one sentence each (``--help``, README, results.json).
UNIF_FORM_DESCRIPTIONS = {
    "code": "the released code's formula done right: the encoder's [CLS] after its final "
            "LayerNorm, L2-normalised, mean of the squared cosine similarities over the global "
            "batch (diagonal included); under DDP the gradient is gathered correctly, so lambda "
            "means the same on any number of GPUs",
    "paper": "Eq. 11 literally: raw [CLS] features, mean of the squared dot products over "
             "off-diagonal pairs; 10^3-10^4 x larger than 'code' on real features, so lambda "
             "0.01 does not carry over",
    "released": "bit-equal to the released U-MAE code: like 'code' but on norm(latent)[:, 0], "
                "the final LayerNorm applied a second time, and under DDP the gradient of the "
                "gathered features keeps only this rank's share, so the effective lambda is "
                "lambda / world size",
}


def reconstruction_loss(
    pred: Tensor,
    target_patches: Tensor,
    mask: Tensor,
    norm_pix: bool,
    kind: Literal["mse", "l1"] = "mse",
) -> Tensor:
    """Masked-patch reconstruction error (official MAE ``forward_loss``; SimMIM with ``'l1'``).

    With ``e_bl = mean_k err(pred[b,l,k] - t[b,l,k])`` (``err`` = square or absolute value)::

        loss = sum_{b,l} mask[b,l] * e_bl / sum_{b,l} mask[b,l]

    and, with ``norm_pix``, ``t[b,l] = (x[b,l] - mean_k x[b,l,k]) / sqrt(var_k x[b,l,k] + 1e-6)``
    (``var`` unbiased, as ``torch.var``'s default, as the official code does).

    Parameters
    ----------
    pred : Tensor, shape (B, L, P)
        Predicted patches.
    target_patches : Tensor, shape (B, L, P)
        ``patchify(imgs, p)``.
    mask : Tensor, shape (B, L)
        1 on removed patches (the only ones counted), 0 on visible ones.
    norm_pix : bool
        Normalise each target patch by its own mean and variance.
    kind : {'mse', 'l1'}
        Squared error (MAE) or absolute error (SimMIM). For equal-sized patches the L1 form
        equals SimMIM's mean absolute error over masked pixels.

    Returns
    -------
    Tensor, shape ()
        Computed in float32 (NaN-free when nothing is masked: then 0).
    """
    if pred.shape != target_patches.shape or pred.ndim != 3:
        raise UmaeError(f"pred {tuple(pred.shape)} and target {tuple(target_patches.shape)} must both be (B, L, P)")
    if mask.shape != pred.shape[:2]:
        raise UmaeError(f"mask {tuple(mask.shape)} must be (B, L) = {tuple(pred.shape[:2])}")
    target = target_patches.float()
    if norm_pix:
        mean = target.mean(dim=-1, keepdim=True)
        var = target.var(dim=-1, keepdim=True)
        target = (target - mean) / (var + 1.0e-6) ** 0.5
    diff = pred.float() - target
    if kind == "mse":
        per_patch = (diff**2).mean(dim=-1)
    elif kind == "l1":
        per_patch = diff.abs().mean(dim=-1)
    else:
        raise UmaeError(f"reconstruction loss kind must be 'mse' or 'l1', got {kind!r}")
    m = mask.float()
    return (per_patch * m).sum() / m.sum().clamp_min(1.0)


def uniformity_loss(features: Tensor, form: UnifForm) -> Tensor:
    """The uniformity term of U-MAE, in the released code's form or the paper's Eq. 11.

    ``'code'`` and ``'released'`` (the released code's formula; Table 1): ``z_i = f_i / ||f_i||``,
    ``S = Z Z^T`` over all N rows including the diagonal, ``loss = mean_{i,j} S_ij^2``
    (the diagonal adds a constant 1/N with no gradient). The two differ in the features they
    are given (see :func:`loss_terms`), not in this formula.

    ``'paper'`` (Eq. 11 literally): unnormalised features, off-diagonal pairs only,
    ``loss = 1/(N(N-1)) * sum_{i != j} (f_i^T f_j)^2``.

    Parameters
    ----------
    features : Tensor, shape (N, D)
        Encoder [CLS] features of the (global) batch.
    form : {'code', 'paper'}

    Returns
    -------
    Tensor, shape ()

    Examples
    --------
    >>> uniformity_loss(torch.eye(4), "code")  # orthonormal rows: only the diagonal counts
    tensor(0.2500)
    """
    if features.ndim != 2:
        raise UmaeError(f"uniformity features must be (N, D), got shape {tuple(features.shape)}")
    n = features.shape[0]
    if form in ("code", "released"):
        z = F.normalize(features, dim=1)
        sim = z @ z.t()
        return (sim**2).mean()
    if form == "paper":
        if n < 2:
            raise UmaeError("the 'paper' uniformity form needs at least 2 features (pairs i != j)")
        sim = features @ features.t()
        off = ~torch.eye(n, dtype=torch.bool, device=features.device)
        return (sim[off] ** 2).sum() / (n * (n - 1))
    raise UmaeError(f"unif_form must be 'code', 'paper' or 'released', got {form!r}")


def effective_lambda(lam: float, form: str, world_size: int) -> float:
    """The weight the uniformity gradient really has: ``lam / world_size`` for ``'released'``.

    The released code's gather hands each rank only the gradient of its own loss copy, and DDP
    then averages over ranks, so its lambda acts divided by the number of processes; the other
    forms gather correctly. To match the authors' run of lambda 0.01 on 8 GPUs with ``'code'``,
    use ``lam = 0.01 / 8 = 0.00125``.
    """
    return lam / world_size if form == "released" else lam


def paper_over_code(model: nn.Module, imgs: Tensor, mask_ratio: float, seed: int = 0) -> float:
    """How much larger the 'paper' term is than the 'code' term on one masked batch.

    The [CLS] features of ``imgs`` under masking noise drawn from a private generator seeded
    with ``seed`` (the global RNG, and so the run's trajectory, is untouched), without gradients.

    Parameters
    ----------
    model : nn.Module
        MaskedAutoencoderViT / SimMIMViT (or a wrapper with ``.module``).
    imgs : Tensor, shape (B, 3, H, W), B >= 2
    mask_ratio : float

    Returns
    -------
    float
        ``uniformity_loss(f, 'paper') / uniformity_loss(f, 'code')``.
    """
    inner = getattr(model, "module", model)
    gen = torch.Generator(device=imgs.device).manual_seed(seed)
    noise = torch.rand(imgs.shape[0], inner.num_patches, generator=gen, device=imgs.device)
    with torch.no_grad():
        feats = inner(imgs, mask_ratio, noise).cls.float()
    return float(uniformity_loss(feats, "paper") / uniformity_loss(feats, "code"))


def paper_form_warning(ratio: float, lam: float) -> str:
    """One line for ``--unif-form paper``: the measured ratio and the lambda it corresponds to."""
    return (f"--unif-form paper: on the first batch its term is {ratio:.3g} x the 'code' form's, so "
            f"--lam {lam:g} weighs like {lam * ratio:.3g} would in 'code' form (the paper's 0.01 is a "
            f"'code'-form weight; --lam {0.01 / ratio:.2g} would match it)")


def loss_terms(
    model: nn.Module,
    imgs: Tensor,
    mask_ratio: float,
    lam: float,
    unif_form: UnifForm,
    gather: Callable[[Tensor], Tensor] | None = None,
    noise: Tensor | None = None,
) -> dict[str, Tensor]:
    """One forward pass and the U-MAE objective ``loss = loss_recon + lam * loss_unif``.

    The model (possibly wrapped in DistributedDataParallel, which is called as is) must
    return :class:`trainer.model.MAEOutput` and carry ``patch_size``, ``norm_pix_loss`` and
    ``loss_kind`` (``'mse'`` for MAE, ``'l1'`` for SimMIM); the same call therefore covers
    MAE, U-MAE, SimMIM and U-SimMIM. The uniformity features are ``out.cls``, the [CLS] of
    the same masked view the decoder uses (not detached), passed through ``gather``
    (e.g. :func:`trainer.distributed.gather_with_grad`) to span the global batch. For
    ``'released'`` they are ``inner.norm(out.cls)``: the released code takes
    ``self.norm(latent)[:, 0]`` of a ``latent`` that already passed the final norm (pair it with
    :func:`trainer.distributed.gather_released` under DDP to keep its gradient scaling too).

    Parameters
    ----------
    model : nn.Module
        MaskedAutoencoderViT / SimMIMViT, or a DDP wrapper of one.
    imgs : Tensor, shape (B, 3, H, W)
        Normalised images (also the reconstruction target).
    mask_ratio : float
        rho in [0, 1).
    lam : float
        Uniformity weight lambda; when 0 the uniformity term is not computed.
    unif_form : {'code', 'paper', 'released'}
        See :func:`uniformity_loss` and :data:`UNIF_FORM_DESCRIPTIONS`.
    gather : callable, optional
        Maps local features (B, D) to global ones (W*B, D); identity when None.
    noise : Tensor, shape (B, L), optional
        Fixed masking noise (tests, reproducibility).

    Returns
    -------
    dict
        ``'loss'`` (differentiable), ``'loss_recon'``, ``'loss_unif'`` (a 0 tensor when
        ``lam == 0``), all 0-d float32 tensors; the last two are still attached to the graph.
    """
    inner = getattr(model, "module", model)
    out = model(imgs, mask_ratio, noise)
    target = inner.target_patches(imgs)
    recon = reconstruction_loss(out.pred, target, out.mask, inner.norm_pix_loss, inner.loss_kind)
    if lam > 0:
        feats = inner.norm(out.cls) if unif_form == "released" else out.cls
        feats = feats.float()
        if gather is not None:
            feats = gather(feats)
        unif = uniformity_loss(feats, unif_form)
        loss = recon + lam * unif
    else:
        if lam < 0:
            raise UmaeError(f"lam must be >= 0, got {lam}")
        unif = torch.zeros((), device=recon.device, dtype=recon.dtype)
        loss = recon
    return {"loss": loss, "loss_recon": recon, "loss_unif": unif}
