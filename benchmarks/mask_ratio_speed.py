"""Speed of the pixel-space mask-ratio sweep: vectorised torch vs a plain per-pair numpy loop.

The claim (README, mask-ratio sweep): 2000 intra + 2000 inter pairs x 20 mask ratios x K = 8 views on
real CIFAR-10, every pixel estimator, in well under 60 s on 2 CPU cores. The vectorised path is
``umae_eval.maskratio.sweep.pixel_distance_curves`` (batches of pairs x ratios x masks). The
baseline loops over pairs, ratios and draws in numpy with the *same* masks, on a subset of pairs;
its time is extrapolated linearly to the full pair count (said so in the table), and its values
are compared with the vectorised ones on that subset.

Usage::

    python benchmarks/mask_ratio_speed.py --data ../shared/data/cifar10-jpeg.tar.gz
    python benchmarks/mask_ratio_speed.py --data demo --pairs 200 --baseline-pairs 10   # quick
"""

from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from umae_eval.data import load_dataset
from umae_eval.features import resolve_device
from umae_eval.maskratio.estimators import PIXEL_ESTIMATORS
from umae_eval.maskratio.masks import noise_ranks, num_visible, parse_ratios, patchify
from umae_eval.maskratio.pairs import sample_pairs
from umae_eval.maskratio.sweep import _MASKS, _PAIRS, _rng, _torch_gen, pixel_distance_curves
from umae_eval.provenance import atomic_write_json, versions


def numpy_loop(xa: np.ndarray, xb: np.ndarray, rank_a: np.ndarray, rank_b: np.ndarray,
               ratios: list[float], patch_size: int, names: list[str]) -> dict[str, np.ndarray]:
    """The plain reference: for each pair, ratio and draw, build the visible patch sets and
    compute every estimator directly (numpy, float64). Returns ``{name: (R, P)}``."""
    pa, pb = patchify(xa, patch_size).double().numpy(), patchify(xb, patch_size).double().numpy()
    n_pairs, views, num_patches = rank_a.shape
    out = {n: np.empty((len(ratios), n_pairs)) for n in names}
    for p in range(n_pairs):
        a, b = pa[p], pb[p]
        for r, rho in enumerate(ratios):
            n = num_visible(num_patches, rho)
            per: dict[str, list[float]] = {k: [] for k in names}
            for k in range(views):
                va = np.flatnonzero(rank_a[p, k] < n)
                vb = np.flatnonzero(rank_b[p, k] < n)
                if "all-pairs" in names:
                    diff = a[va][:, None, :] - b[vb][None, :, :]
                    per["all-pairs"].append(float(np.sqrt((diff ** 2).sum(-1)).mean()))
                aligned = float(np.linalg.norm(a[va] - b[va], axis=1).mean())
                for key in ("aligned", "closest-view"):
                    if key in names:
                        per[key].append(aligned)
                if "masked-image" in names:
                    ma = np.zeros_like(a)
                    mb = np.zeros_like(b)
                    ma[va], mb[vb] = a[va], b[vb]
                    per["masked-image"].append(float(np.linalg.norm(ma - mb)))
                if "shared-masked-image" in names:
                    per["shared-masked-image"].append(float(np.linalg.norm(a[va] - b[va])))
            for key in names:
                out[key][r, p] = min(per[key]) if key == "closest-view" else float(np.mean(per[key]))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="../shared/data/cifar10-jpeg.tar.gz")
    ap.add_argument("--pairs", type=int, default=2000, help="intra pairs, and as many inter pairs")
    ap.add_argument("--ratios", default="0:0.95:0.05")
    ap.add_argument("--views", type=int, default=8)
    ap.add_argument("--patch-size", type=int, default=4)
    ap.add_argument("--baseline-pairs", type=int, default=40, help="pairs the numpy loop runs on")
    ap.add_argument("--batch-size", type=int, default=250)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=Path("reports/mask-ratio-sweep-cifar10/speed.json"))
    args = ap.parse_args()

    ratios = parse_ratios(args.ratios)
    names = list(PIXEL_ESTIMATORS)
    dev = resolve_device(args.device)
    ds = load_dataset(args.data)
    rng = _rng(args.seed, _PAIRS)
    samples = [sample_pairs(ds.y_test, args.pairs, kind, rng) for kind in ("intra", "inter")]

    t0 = time.perf_counter()
    fast = [pixel_distance_curves(ds.x_test[s.a], ds.x_test[s.b], ratios, patch_size=args.patch_size,
                                  views=args.views, estimators=names, seed=args.seed, stream=i,
                                  batch_size=args.batch_size, device=dev)
            for i, s in enumerate(samples)]
    if dev.type == "cuda":
        torch.cuda.synchronize()
    fast_s = time.perf_counter() - t0
    total_pairs = sum(len(s) for s in samples)

    # Baseline on the first pairs of the intra sample, with the same masks as the fast path.
    s = samples[0]
    m = min(args.baseline_pairs, len(s))
    num_patches = (ds.x_test.shape[1] // args.patch_size) * (ds.x_test.shape[2] // args.patch_size)
    gen = _torch_gen(args.seed, _MASKS, 0)
    rank_a = noise_ranks(torch.rand((len(s), args.views, num_patches), generator=gen)).numpy()
    rank_b = noise_ranks(torch.rand((len(s), args.views, num_patches), generator=gen)).numpy()
    t0 = time.perf_counter()
    slow = numpy_loop(ds.x_test[s.a[:m]], ds.x_test[s.b[:m]], rank_a[:m], rank_b[:m], ratios,
                      args.patch_size, names)
    loop_s = time.perf_counter() - t0
    loop_full_s = loop_s * total_pairs / m
    max_rel = max(float(np.max(np.abs(fast[0][n][:, :m] - slow[n]) / np.abs(slow[n]))) for n in names)

    work = f"{total_pairs} pairs x {len(ratios)} ratios x K={args.views}, {len(names)} estimators"
    rows = [
        ("vectorised torch", f"{fast_s:.2f}", "measured", f"{total_pairs * len(ratios) * args.views / fast_s:,.0f}"),
        ("numpy loop", f"{loop_full_s:.1f}", f"extrapolated from {m} pairs ({loop_s:.2f} s)",
         f"{m * len(ratios) * args.views / loop_s:,.0f}"),
    ]
    print(f"\nmask-ratio sweep, pixel space: {work} (device {dev}, torch threads {torch.get_num_threads()})")
    print(f"{'path':<18} {'seconds':>9}  {'how':<36} {'views/s':>12}")
    for r in rows:
        print(f"{r[0]:<18} {r[1]:>9}  {r[2]:<36} {r[3]:>12}")
    print(f"speed-up {loop_full_s / fast_s:.0f}x; max relative difference on the subset {max_rel:.1e}")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"load average {load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} on {os.cpu_count()} CPUs")

    record: dict[str, Any] = {
        "benchmark": "mask_ratio_speed", "data": ds.source, "data_fingerprint": ds.fingerprint,
        "pairs_total": total_pairs, "ratios": ratios, "views": args.views, "patch_size": args.patch_size,
        "estimators": names, "device": str(dev), "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(), "load_average": list(load), "machine": platform.processor() or platform.machine(),
        "vectorised_s": fast_s, "numpy_loop_subset_pairs": m, "numpy_loop_subset_s": loop_s,
        "numpy_loop_extrapolated_s": loop_full_s, "speedup": loop_full_s / fast_s,
        "max_relative_difference": max_rel, "goal_s": 60.0, "meets_goal": fast_s < 60.0,
        "versions": versions(),
    }
    if args.json:
        atomic_write_json(args.json, record)
        print(f"json: {args.json}")


if __name__ == "__main__":
    main()
