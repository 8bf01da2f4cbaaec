"""The sweep's named random streams and batching: one integer seed gives independent streams
(``numpy.random.SeedSequence(seed, spawn_key=(stream, ...))``) for pair sampling, masks,
bootstrap, label error and graph, so each part of the sweep can be rerun alone with the same draws.
"""

from __future__ import annotations

import zlib

import numpy as np
import torch

# Named random streams (the first entry of a SeedSequence spawn key).
_PAIRS, _MASKS, _BOOT, _LABEL, _GRAPH = 1, 2, 3, 4, 5


def _seed_seq(seed: int, *key: int) -> np.random.SeedSequence:
    return np.random.SeedSequence(seed, spawn_key=tuple(key))


def _rng(seed: int, *key: int) -> np.random.Generator:
    return np.random.default_rng(_seed_seq(seed, *key))


def _torch_gen(seed: int, *key: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(_seed_seq(seed, *key).generate_state(1)[0]))


def _boot_seed(seed: int, name: str) -> int:
    """Bootstrap seed of one series, keyed by its name (not its position among the estimators)."""
    return int(_seed_seq(seed, _BOOT, zlib.crc32(name.encode())).generate_state(1)[0])


def _batches(n: int, size: int) -> list[slice]:
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]
