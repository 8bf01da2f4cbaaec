"""Fourier profile of token grids: constant maps, checkerboards and numpy's FFT written out."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from umae_eval.errors import UmaeError
from umae_eval.metrics.fourier import AMPLITUDE_FLOOR, combine_profiles, fourier_profile, high_frequency_by_block


def _checkerboard(h: int, w: int) -> np.ndarray:
    return (np.indices((h, w)).sum(axis=0) % 2) * 2.0 - 1.0


def test_constant_grid_has_no_high_frequency_amplitude() -> None:
    tokens = np.tile(np.arange(1.0, 6.0)[None, None, None, :], (3, 8, 8, 1))  # each channel constant
    p = fourier_profile(tokens)
    assert p.energy_share_high == 0.0
    # |F| at Nyquist is 0, so its log is the floor; the DC term is 64 * value
    dc = np.mean(np.log(64 * np.arange(1.0, 6.0) + AMPLITUDE_FLOOR))
    assert p.high_frequency == pytest.approx(np.log(AMPLITUDE_FLOOR) - dc, abs=1e-5)
    assert np.allclose(p.relative_log_amplitude[1:], p.high_frequency, atol=1e-5)  # nothing above DC


def test_checkerboard_has_it_all() -> None:
    board = _checkerboard(8, 8)
    scales = np.array([1.0, 2.0, 0.5])
    tokens = torch.from_numpy(board[None, :, :, None] * scales[None, None, None, :]).repeat(4, 1, 1, 1)
    p = fourier_profile(tokens)
    assert p.energy_share_high == pytest.approx(1.0)
    assert p.frequencies[-1] == 1.0 and len(p.frequencies) == 5  # DC .. pi in 4 steps on an 8 x 8 grid
    # zero-mean board: DC at the floor; Nyquist amplitude 64 * scale
    expect = np.mean(np.log(64 * scales + AMPLITUDE_FLOOR)) - np.log(AMPLITUDE_FLOOR)
    assert p.high_frequency == pytest.approx(expect, rel=1e-5)
    assert np.allclose(p.per_image_high, expect, rtol=1e-5)


def test_against_numpy_fft_and_token_layout() -> None:
    rng = np.random.default_rng(0)
    grid = rng.normal(size=(5, 6, 6, 7)) + np.linspace(0, 3, 6)[None, :, None, None]
    f = np.fft.fft2(grid.transpose(0, 3, 1, 2))
    a = np.log(np.abs(f) + AMPLITUDE_FLOOR).mean(axis=(0, 1))
    expect = np.array([a[j, j] - a[0, 0] for j in range(4)])
    # (B, 1 + N, D) with a [CLS] token in front, row-major patches
    seq = np.concatenate([rng.normal(size=(5, 1, 7)), grid.reshape(5, 36, 7)], axis=1)
    p = fourier_profile(seq.astype(np.float32), prefix_tokens=1)
    assert np.allclose(p.relative_log_amplitude, expect, atol=1e-4)
    assert p.high_frequency == pytest.approx(np.mean(p.per_image_high), abs=1e-6)
    by_block = high_frequency_by_block([grid, grid * 2.0 + 1.0])
    assert by_block.shape == (2,) and by_block[0] == pytest.approx(p.high_frequency, abs=1e-4)


def test_batches_combine_exactly() -> None:
    rng = np.random.default_rng(1)
    tokens = rng.normal(size=(9, 4, 4, 6)) + _checkerboard(4, 4)[None, :, :, None] * rng.uniform(0, 2, size=(9, 1, 1, 1))
    whole = fourier_profile(tokens)
    parts = combine_profiles([fourier_profile(tokens[:2]), fourier_profile(tokens[2:7]), fourier_profile(tokens[7:])])
    assert np.allclose(parts.relative_log_amplitude, whole.relative_log_amplitude, atol=1e-9)
    assert parts.energy_share_high == pytest.approx(whole.energy_share_high, rel=1e-9)
    assert np.allclose(parts.per_image_high, whole.per_image_high) and parts.n_images == 9
    with pytest.raises(UmaeError, match="different token grids"):
        combine_profiles([whole, fourier_profile(np.ones((1, 2, 2, 3)))])


def test_bad_inputs() -> None:
    with pytest.raises(UmaeError, match="10 patch tokens do not make a square grid; pass grid"):
        fourier_profile(np.ones((2, 10, 3)))
    with pytest.raises(UmaeError, match=r"grid \(2, 4\) holds 8 tokens but there are 10"):
        fourier_profile(np.ones((2, 10, 3)), grid=(2, 4))
    with pytest.raises(UmaeError, match="tokens must be"):
        fourier_profile(np.ones((2, 3)))
    assert fourier_profile(np.ones((2, 10, 3)), grid=(2, 5)).grid == (2, 5)
