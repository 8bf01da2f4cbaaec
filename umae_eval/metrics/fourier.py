"""Fourier analysis of patch tokens (Park & Kim, "How Do Vision Transformers Work?", ICLR 2022;
Park et al., "What Do Self-Supervised ViTs Learn?", ICLR 2023): how much of a block's token map
varies at high spatial frequency.

For the patch tokens of one block, shaped ``(B, h, w, D)`` (the token grid; [CLS] and other
prefix tokens dropped), following the authors' ``fourier_analysis`` (xxxnell/how-do-vits-work)::

    F_bc      = FFT2 over (h, w) of channel c of image b
    A(u, v)   = mean over b, c of log(|F_bc(u, v)| + 1e-6)
    profile_j = A(k_j) - A(0, 0)        along the diagonal k_j = (j, j), j = 0 .. h/2

so ``profile_0 = 0`` (the DC term) and the last point is the highest frequency (pi in both
directions, for an even grid). ``high_frequency`` = that last point: the relative log-amplitude
of the highest frequency against the DC term, the number plotted against depth (larger = more
high-frequency content; ViTs low, convolutions high in the papers). The authors' code reads the
half-diagonal of the shifted spectrum, whose last point is ``(h/2 - 1)`` for even ``h`` (one step
short of pi); here the profile includes the Nyquist point ``h/2``, where a checkerboard lives.
Rectangular grids sample the diagonal of normalised frequency: ``k_j = (round(j h / 2m),
round(j w / 2m))``, ``m = min(h, w) // 2``.

``energy_share_high`` = sum |F|^2 at the highest frequency / sum |F|^2 over all frequencies
(summed over images and channels): 0 for a constant map, 1 for a checkerboard.

Example
-------
>>> import numpy as np
>>> board = np.indices((4, 4)).sum(axis=0) % 2 * 2.0 - 1.0        # (4, 4) checkerboard
>>> fourier_profile(np.tile(board[None, :, :, None], (2, 1, 1, 3))).energy_share_high
1.0
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from umae_eval.errors import UmaeError

__all__ = ["AMPLITUDE_FLOOR", "FourierProfile", "combine_profiles", "fourier_profile", "high_frequency_by_block"]

#: Added to |F| before the log (the authors' value).
AMPLITUDE_FLOOR = 1e-6
#: Images per FFT chunk: chunk x D x h x w complex64 values at a time.
_CHUNK = 32


@dataclass(frozen=True)
class FourierProfile:
    """The diagonal log-amplitude profile of one block's token maps."""

    frequencies: np.ndarray  # (K,) fraction of pi along the diagonal, 0 (DC) .. 1 (Nyquist)
    relative_log_amplitude: np.ndarray  # (K,) A(k_j) - A(0, 0)
    high_frequency: float  # the last point of the profile
    per_image_high: np.ndarray = field(repr=False)  # (B,) each image's own high_frequency
    energy_share_high: float = 0.0
    grid: tuple[int, int] = (0, 0)
    n_images: int = 0
    energy_high: float = 0.0  # sum |F|^2 at the highest frequency (for combining batches)
    energy_total: float = 0.0  # sum |F|^2 over all frequencies

    def to_dict(self) -> dict[str, Any]:
        return {"high_frequency_log_amplitude": self.high_frequency, "energy_share_high": self.energy_share_high,
                "frequencies_over_pi": self.frequencies.tolist(),
                "relative_log_amplitude": self.relative_log_amplitude.tolist(), "grid": list(self.grid),
                "n_images": self.n_images, "settings": {"amplitude_floor": AMPLITUDE_FLOOR,
                                                        "profile": "diagonal, DC to Nyquist inclusive"}}


def _as_grid(tokens: object, grid: tuple[int, int] | None, prefix_tokens: int) -> torch.Tensor:
    """(B, h, w, D) float32 tensor from (B, h, w, D) or (B, N, D) tokens."""
    if isinstance(tokens, np.ndarray):
        t = torch.from_numpy(np.ascontiguousarray(tokens))
    elif isinstance(tokens, torch.Tensor):
        t = tokens.detach().cpu()
    else:
        raise UmaeError(f"tokens must be a numpy array or torch tensor, got {type(tokens).__name__}")
    if t.ndim == 3:
        b, n, d = t.shape
        t = t[:, prefix_tokens:]
        n -= prefix_tokens
        if grid is None:
            side = math.isqrt(max(n, 0))
            if side * side != n:
                raise UmaeError(f"{n} patch tokens do not make a square grid; pass grid=(h, w) "
                                f"(or prefix_tokens for [CLS]/register tokens)")
            grid = (side, side)
        if grid[0] * grid[1] != n:
            raise UmaeError(f"grid {grid} holds {grid[0] * grid[1]} tokens but there are {n}")
        t = t.reshape(b, grid[0], grid[1], d)
    elif t.ndim != 4:
        raise UmaeError(f"tokens must be (B, N, D) or (B, h, w, D), got shape {tuple(t.shape)}")
    if t.shape[0] < 1 or t.shape[1] < 2 or t.shape[2] < 2:
        raise UmaeError(f"need at least one image and a 2 x 2 token grid, got shape {tuple(t.shape)}")
    t = t.float()
    if not torch.isfinite(t).all():
        raise UmaeError("tokens contain NaN or infinite values")
    return t


def _diagonal(h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    m = min(h, w) // 2
    j = np.arange(m + 1)
    return j / m, np.rint(j * h / (2 * m)).astype(int) % h, np.rint(j * w / (2 * m)).astype(int) % w


def fourier_profile(tokens: object, *, grid: tuple[int, int] | None = None, prefix_tokens: int = 0) -> FourierProfile:
    """The relative log-amplitude profile of a block's patch tokens (see the module docstring).

    Parameters
    ----------
    tokens : (B, N, D) or (B, h, w, D) array or tensor
        Patch tokens of one block for B images; ``(B, N, D)`` is reshaped row-major to the grid.
    grid : (h, w), optional
        The token grid of ``(B, N, D)`` input (default: square).
    prefix_tokens : int
        Leading tokens to drop from ``(B, N, D)`` input (1 for [CLS]).
    """
    t = _as_grid(tokens, grid, prefix_tokens)
    b, h, w, _ = t.shape
    freqs, ku, kv = _diagonal(h, w)
    log_sum = torch.zeros(h, w, dtype=torch.float64)
    per_image = np.empty(b)
    energy = torch.zeros(h, w, dtype=torch.float64)
    for s in range(0, b, _CHUNK):
        f = torch.fft.fft2(t[s:s + _CHUNK].permute(0, 3, 1, 2))  # (b', D, h, w)
        amp = f.abs()
        logamp = torch.log(amp + AMPLITUDE_FLOOR).double()
        img = logamp.mean(dim=1)  # (b', h, w): mean over channels
        log_sum += img.sum(dim=0)
        per_image[s:s + _CHUNK] = (img[:, ku[-1], kv[-1]] - img[:, 0, 0]).numpy()
        energy += amp.double().pow(2).sum(dim=(0, 1))
    a = (log_sum / b).numpy()
    prof = a[ku, kv] - a[0, 0]
    total = float(energy.sum())
    share = float(energy[ku[-1], kv[-1]]) / total if total > 0 else 0.0
    return FourierProfile(frequencies=freqs, relative_log_amplitude=prof, high_frequency=float(prof[-1]),
                          per_image_high=per_image, energy_share_high=share, grid=(h, w), n_images=b,
                          energy_high=float(energy[ku[-1], kv[-1]]), energy_total=total)


def combine_profiles(parts: Sequence[FourierProfile]) -> FourierProfile:
    """The profile of all images of ``parts`` (batches of one block's tokens), exactly.

    The profile is a mean over images of per-image log-amplitude differences, so batches combine
    by their image counts; the energy share by summing energies.
    """
    if not parts:
        raise UmaeError("combine_profiles needs at least one profile")
    if len({p.grid for p in parts}) != 1:
        raise UmaeError(f"profiles of different token grids cannot be combined: {sorted({p.grid for p in parts})}")
    n = sum(p.n_images for p in parts)
    prof = sum(p.relative_log_amplitude * p.n_images for p in parts) / n
    e_high, e_total = sum(p.energy_high for p in parts), sum(p.energy_total for p in parts)
    return FourierProfile(frequencies=parts[0].frequencies, relative_log_amplitude=prof,
                          high_frequency=float(prof[-1]),
                          per_image_high=np.concatenate([p.per_image_high for p in parts]),
                          energy_share_high=e_high / e_total if e_total > 0 else 0.0, grid=parts[0].grid,
                          n_images=n, energy_high=e_high, energy_total=e_total)


def high_frequency_by_block(blocks: Sequence[object], *, grid: tuple[int, int] | None = None,
                            prefix_tokens: int = 0) -> np.ndarray:
    """``high_frequency`` of each block's tokens, in order: (L,) — the curve against depth."""
    return np.array([fourier_profile(b, grid=grid, prefix_tokens=prefix_tokens).high_frequency for b in blocks])
