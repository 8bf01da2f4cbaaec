"""to_model_input: layout, normalisation and resizing against independent re-computations."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from umae_eval.errors import UmaeError
from umae_eval.preprocess import NORMALISATIONS, to_model_input

IMAGENET = NORMALISATIONS["imagenet"]


def _images(b: int = 3, h: int = 32, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (b, h, w, 3), dtype=np.uint8)


def _numpy_normalise(x01: np.ndarray, mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(B, 3, H, W) floats in [0, 1] -> normalised, in float64."""
    return (x01 - np.array(mean)[None, :, None, None]) / np.array(std)[None, :, None, None]


def _pil_resize(images: np.ndarray, size: int) -> np.ndarray:
    """PIL's bicubic (antialiased) resize of each channel as 32-bit floats: (B, 3, size, size)."""
    out = np.empty((len(images), 3, size, size), np.float64)
    for b, img in enumerate(images):
        for c in range(3):
            chan = Image.fromarray(img[:, :, c].astype(np.float32) / 255.0, mode="F")
            out[b, c] = np.asarray(chan.resize((size, size), Image.Resampling.BICUBIC))
    return np.clip(out, 0.0, 1.0)


def test_normalisations_hold_the_documented_statistics() -> None:
    assert NORMALISATIONS["imagenet"] == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert NORMALISATIONS["cifar-recipe"] == ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))


@pytest.mark.parametrize("name", sorted(NORMALISATIONS))
def test_same_size_is_layout_change_and_normalisation_only(name: str) -> None:
    mean, std = NORMALISATIONS[name]
    x = _images()
    out = to_model_input(x, 32, mean, std)
    assert out.dtype == torch.float32 and out.shape == (3, 3, 32, 32) and out.is_contiguous()
    expected = _numpy_normalise(x.transpose(0, 3, 1, 2) / 255.0, mean, std)
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=1e-5)


def test_channel_order_is_kept() -> None:
    x = np.zeros((1, 4, 4, 3), np.uint8)
    x[..., 0] = 255  # pure red
    out = to_model_input(x, 4, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert out[0, 0].min().item() == 1.0 and out[0, 1:].abs().max().item() == 0.0


@pytest.mark.parametrize("size", [16, 48, 224])
def test_resize_matches_pil_bicubic(size: int) -> None:
    x = _images(b=2, h=37, w=29, seed=size)
    out = to_model_input(x, size, *IMAGENET)
    assert out.shape == (2, 3, size, size)
    expected = _numpy_normalise(_pil_resize(x, size), *IMAGENET)
    np.testing.assert_allclose(out.numpy(), expected, rtol=0, atol=2e-5)


def test_upsampling_stays_within_pixel_range() -> None:
    x = np.zeros((1, 8, 8, 3), np.uint8)
    x[:, :, ::2] = 255  # stripes make bicubic overshoot before the clamp
    out = to_model_input(x, 64, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0))
    assert out.min().item() >= 0.0 and out.max().item() <= 1.0
    assert out.max().item() == 1.0 and out.min().item() == 0.0


def test_tensor_input_matches_numpy_input() -> None:
    x = _images(h=20, w=20)
    a = to_model_input(x, 24, *IMAGENET)
    b = to_model_input(torch.from_numpy(x), 24, *IMAGENET)
    torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_read_only_and_strided_arrays_are_accepted_without_warnings() -> None:
    x = _images(b=6)
    view = x[::2]
    view.flags.writeable = False
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = to_model_input(view, 32, *IMAGENET)
    expected = _numpy_normalise(x[::2].transpose(0, 3, 1, 2) / 255.0, *IMAGENET)
    np.testing.assert_allclose(out.numpy(), expected, atol=1e-5)


def test_empty_batch_gives_empty_output() -> None:
    out = to_model_input(np.zeros((0, 32, 32, 3), np.uint8), 16, *IMAGENET)
    assert out.shape == (0, 3, 16, 16) and out.dtype == torch.float32


@pytest.mark.parametrize("device", ["cpu", torch.device("cpu"), "meta"])
def test_result_lives_on_the_requested_device(device: str | torch.device) -> None:
    out = to_model_input(_images(), 40, *IMAGENET, device=device)
    assert out.device == torch.device(device) and out.shape == (3, 3, 40, 40)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_cuda_matches_cpu() -> None:
    x = _images(h=37, w=29)
    cpu = to_model_input(x, 64, *IMAGENET)
    gpu = to_model_input(x, 64, *IMAGENET, device="cuda")
    assert gpu.device.type == "cuda"
    torch.testing.assert_close(gpu.cpu(), cpu, rtol=0, atol=1e-4)


@pytest.mark.parametrize(
    ("images", "size", "mean", "std", "message"),
    [
        (np.zeros((2, 8, 8, 3), np.float32), 8, (0, 0, 0), (1, 1, 1), r"uint8 of shape \(B, H, W, 3\).*float32"),
        (np.zeros((2, 3, 8, 8), np.uint8), 8, (0, 0, 0), (1, 1, 1), r"\(B, H, W, 3\).*\(2, 3, 8, 8\)"),
        (np.zeros((8, 8, 3), np.uint8), 8, (0, 0, 0), (1, 1, 1), r"\(B, H, W, 3\)"),
        (torch.zeros(2, 8, 8, 3), 8, (0, 0, 0), (1, 1, 1), r"uint8 .*torch.float32"),
        ([[1, 2, 3]], 8, (0, 0, 0), (1, 1, 1), "numpy array or a torch tensor, got list"),
        (np.zeros((2, 8, 8, 3), np.uint8), 0, (0, 0, 0), (1, 1, 1), "img_size must be a positive integer"),
        (np.zeros((2, 8, 8, 3), np.uint8), 8, (0.5, 0.5), (1, 1, 1), "mean must be 3 numbers.*got 2"),
        (np.zeros((2, 8, 8, 3), np.uint8), 8, (0, 0, 0), (1, 0, 1), "std must be positive"),
        (np.zeros((2, 8, 8, 3), np.uint8), 8, (0, 0, 0), "abc", "std must be 3 numbers"),
    ],
)
def test_bad_inputs_are_refused_with_a_clear_message(images: object, size: int, mean: object, std: object,
                                                     message: str) -> None:
    with pytest.raises(UmaeError, match=message):
        to_model_input(images, size, mean, std)  # type: ignore[arg-type]
