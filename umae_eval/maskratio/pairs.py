"""Class-balanced samples of image pairs (intra-class, inter-class) and of single images."""

from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from umae_eval.errors import UmaeError

__all__ = ["PairSample", "sample_pairs", "sample_balanced"]


@dataclass
class PairSample:
    """Index pairs into one split.

    Attributes
    ----------
    a, b : ndarray, int64, shape (P,)
        Image indices; ``labels[a] == labels[b]`` for intra pairs, ``!=`` for inter pairs, and
        ``a != b`` always.
    kind : str
        ``'intra'`` or ``'inter'``.
    counts : dict[str, int]
        Pairs per class (intra, key = class index) or per class pair (inter, key ``"i-j"``).
    """

    a: np.ndarray
    b: np.ndarray
    kind: str
    counts: dict[str, int]

    def __len__(self) -> int:
        return len(self.a)


def _balanced_split(total: int, groups: int, rng: np.random.Generator) -> np.ndarray:
    """``total`` items over ``groups``: ``total // groups`` each, the remainder to random groups."""
    out = np.full(groups, total // groups, dtype=np.int64)
    out[rng.choice(groups, size=total % groups, replace=False)] += 1
    return out


def sample_pairs(labels: np.ndarray, n_pairs: int, kind: str, rng: np.random.Generator) -> PairSample:
    """Draw ``n_pairs`` class-balanced pairs of distinct images, with replacement across pairs.

    ``intra``: the pairs are spread evenly over the classes (the remainder to random classes);
    within class ``c`` both images are uniform over the class, distinct. ``inter``: spread evenly
    over the unordered class pairs ``{c1, c2}``, one uniform image from each. The pair order is
    shuffled, so any prefix is itself a fair sub-sample.

    Parameters
    ----------
    labels : ndarray, int, shape (N,)
    n_pairs : int
    kind : {'intra', 'inter'}
    rng : numpy Generator

    Raises
    ------
    UmaeError
        Fewer than two classes, or no class with two images for intra pairs.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    members = {int(c): np.flatnonzero(labels == c) for c in classes}
    if len(classes) < 2:
        raise UmaeError(f"the mask-ratio sweep needs at least 2 classes, the data has {len(classes)}")
    if n_pairs < 1:
        raise UmaeError(f"--pairs must be >= 1, got {n_pairs}")
    a_list: list[np.ndarray] = []
    b_list: list[np.ndarray] = []
    counts: dict[str, int] = {}
    if kind == "intra":
        usable = [int(c) for c in classes if len(members[int(c)]) >= 2]
        if not usable:
            raise UmaeError("no class has two images: cannot draw intra-class pairs")
        for c, m in zip(usable, _balanced_split(n_pairs, len(usable), rng)):
            pool = members[c]
            i = rng.integers(0, len(pool), size=m)
            j = rng.integers(0, len(pool) - 1, size=m)
            j = j + (j >= i)  # distinct from i, uniform over the rest
            a_list.append(pool[i])
            b_list.append(pool[j])
            counts[str(c)] = int(m)
    elif kind == "inter":
        groups = list(combinations([int(c) for c in classes], 2))
        for (c1, c2), m in zip(groups, _balanced_split(n_pairs, len(groups), rng)):
            a_list.append(members[c1][rng.integers(0, len(members[c1]), size=m)])
            b_list.append(members[c2][rng.integers(0, len(members[c2]), size=m)])
            counts[f"{c1}-{c2}"] = int(m)
    else:
        raise ValueError(f"kind must be 'intra' or 'inter', got {kind!r}")
    a, b = np.concatenate(a_list), np.concatenate(b_list)
    order = rng.permutation(len(a))
    return PairSample(a=a[order].astype(np.int64), b=b[order].astype(np.int64), kind=kind, counts=counts)


def sample_balanced(labels: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Up to ``n`` distinct images, spread evenly over the classes (fewer if a class runs out).

    Returns
    -------
    ndarray, int64, shape (<= n,)
        Sorted by class then random order within class.
    """
    labels = np.asarray(labels)
    classes = np.unique(labels)
    picked = []
    for c, m in zip(classes, _balanced_split(n, len(classes), rng)):
        pool = np.flatnonzero(labels == c)
        picked.append(rng.choice(pool, size=min(int(m), len(pool)), replace=False))
    return np.concatenate(picked).astype(np.int64)
