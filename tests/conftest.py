"""Shared test setup: one torch thread (the machines have 2 shared cores), a private cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")
os.environ.setdefault("NUMBA_NUM_THREADS", "1")

import torch  # noqa: E402

torch.set_num_threads(1)

#: The real CIFAR-10 tarball beside the checkout (absent on a user's clone).
SHARED_CIFAR = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "cifar10-jpeg.tar.gz"


@pytest.fixture(autouse=True)
def _private_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test session gets its own decode/feature cache, never the user's ~/.cache/umae."""
    root = tmp_path_factory.getbasetemp() / "umae-cache"
    monkeypatch.setenv("UMAE_CACHE_DIR", str(root))


@pytest.fixture
def shared_cifar() -> Path:
    """Path to the real CIFAR-10 tarball, or skip with the reason."""
    if not SHARED_CIFAR.exists():
        pytest.skip(f"real CIFAR-10 not found at {SHARED_CIFAR} (only present beside the dev checkout)")
    return SHARED_CIFAR
