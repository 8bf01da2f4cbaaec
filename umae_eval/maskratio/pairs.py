"""Class-balanced samples of image pairs (intra-class, inter-class) and of single images."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from umae_eval.errors import UmaeError

__all__ = ["PairSample", "check_pairs", "sample_pairs", "sample_balanced"]


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


def _distinct(draw: Callable[[int], tuple[np.ndarray, np.ndarray]], m: int, cap: int, size_b: int,
              symmetric: bool, rng: np.random.Generator,
              enumerate_all: Callable[[], tuple[np.ndarray, np.ndarray]]) -> tuple[np.ndarray, np.ndarray]:
    """``m`` distinct pairs (unordered if ``symmetric``) out of ``cap``: drawn, repeats redrawn.

    Far below ``cap`` repeats are rare, so the draws equal plain sampling with replacement
    unless a pair repeats; from half of ``cap`` on, ``m`` of all pairs are chosen without
    replacement instead (rejection would then take long).
    """
    if 2 * m > cap:
        a_all, b_all = enumerate_all()
        pick = rng.choice(cap, size=m, replace=False)
        return a_all[pick], b_all[pick]
    a, b = draw(m)
    while True:
        lo, hi = (np.minimum(a, b), np.maximum(a, b)) if symmetric else (a, b)
        _, first = np.unique(lo * size_b + hi, return_index=True)
        dup = np.setdiff1d(np.arange(m), first)
        if dup.size == 0:
            return a, b
        a[dup], b[dup] = draw(dup.size)


def _too_many(n_pairs: int, kind: str, caps: dict[str, int], what: str, whats: str) -> UmaeError:
    worst = min(caps, key=lambda k: caps[k])
    return UmaeError(
        f"--pairs {n_pairs}: only {caps[worst]} distinct {kind}-class pairs exist for {what} {worst}, and "
        f"the pairs are spread evenly over {len(caps)} {whats}; use --pairs {len(caps) * caps[worst]} "
        "or fewer (a repeated pair would count one distance twice)")


def _capacities(members: dict[int, np.ndarray], n_pairs: int, kind: str) -> tuple[list[int], dict[str, int]]:
    """Usable classes and the number of distinct pairs per class (intra) or class pair (inter)."""
    if kind == "intra":
        usable = [c for c, m in members.items() if len(m) >= 2]
        if not usable:
            raise UmaeError("no class has two images: cannot draw intra-class pairs")
        caps = {str(c): len(members[c]) * (len(members[c]) - 1) // 2 for c in usable}
        if n_pairs > len(usable) * min(caps.values()):
            raise _too_many(n_pairs, kind, caps, "class", "classes")
        return usable, caps
    groups = list(combinations(sorted(members), 2))
    caps = {f"{c1}-{c2}": len(members[c1]) * len(members[c2]) for c1, c2 in groups}
    if n_pairs > len(groups) * min(caps.values()):
        raise _too_many(n_pairs, kind, caps, "class pair", "class pairs")
    return sorted(members), caps


def check_pairs(labels: np.ndarray, n_pairs: int) -> None:
    """Refuse (UmaeError) a ``--pairs`` that :func:`sample_pairs` could not draw without repeats."""
    labels = np.asarray(labels)
    members = {int(c): np.flatnonzero(labels == c) for c in np.unique(labels)}
    if len(members) < 2:
        raise UmaeError(f"the mask-ratio sweep needs at least 2 classes, the data has {len(members)}")
    if n_pairs < 1:
        raise UmaeError(f"--pairs must be >= 1, got {n_pairs}")
    for kind in ("intra", "inter"):
        _capacities(members, n_pairs, kind)


def sample_pairs(labels: np.ndarray, n_pairs: int, kind: str, rng: np.random.Generator) -> PairSample:
    """Draw ``n_pairs`` class-balanced pairs of distinct images, no pair drawn twice.

    ``intra``: the pairs are spread evenly over the classes (the remainder to random classes);
    within class ``c`` both images are uniform over the class, distinct. ``inter``: spread evenly
    over the unordered class pairs ``{c1, c2}``, one uniform image from each. A pair already
    drawn is drawn again, so each distance counts once. The pair order is shuffled, so any
    prefix is itself a fair sub-sample.

    Parameters
    ----------
    labels : ndarray, int, shape (N,)
    n_pairs : int
    kind : {'intra', 'inter'}
    rng : numpy Generator

    Raises
    ------
    UmaeError
        Fewer than two classes, no class with two images for intra pairs, or more pairs than
        a class (intra) or class pair (inter) holds distinct ones at an even spread.
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
        usable, caps = _capacities(members, n_pairs, kind)
        for c, m in zip(usable, _balanced_split(n_pairs, len(usable), rng)):
            pool = members[c]
            n = len(pool)

            def draw(k: int, n: int = n) -> tuple[np.ndarray, np.ndarray]:
                i = rng.integers(0, n, size=k)
                j = rng.integers(0, n - 1, size=k)
                return i, j + (j >= i)  # j distinct from i, uniform over the rest

            i, j = _distinct(draw, int(m), caps[str(c)], n, True, rng,
                             lambda n=n: np.triu_indices(n, 1))
            a_list.append(pool[i])
            b_list.append(pool[j])
            counts[str(c)] = int(m)
    elif kind == "inter":
        groups = list(combinations([int(c) for c in classes], 2))
        _, caps = _capacities(members, n_pairs, kind)
        for (c1, c2), m in zip(groups, _balanced_split(n_pairs, len(groups), rng)):
            n1, n2 = len(members[c1]), len(members[c2])

            def draw(k: int, n1: int = n1, n2: int = n2) -> tuple[np.ndarray, np.ndarray]:
                return rng.integers(0, n1, size=k), rng.integers(0, n2, size=k)

            i, j = _distinct(draw, int(m), n1 * n2, n2, False, rng,
                             lambda n1=n1, n2=n2: np.divmod(np.arange(n1 * n2), n2))
            a_list.append(members[c1][i])
            b_list.append(members[c2][j])
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
