"""What the summary's rank intervals cost, and how that grows with N test images and D dimensions.

For each (N, D) it times one bootstrap resample of effective rank + RankMe two ways, side by side
in one process on the same features and the same resample indices:

- **baseline** (the simplest honest way): copy the resampled rows ``X[idx]`` and call
  :func:`umae_eval.metrics.spectrum.effective_rank` and :func:`~umae_eval.metrics.spectrum.rankme`
  on the copy (two decompositions of an N x D matrix, centred and raw);
- **weighted Gram** (:func:`umae_eval.metrics.rank_bootstrap.bootstrap_ranks`): only the drawn
  rows, weighted by their counts, in 8,192-row chunks.

It checks that both give the same numbers (max relative difference), and reports seconds per
resample, the ratio, and the resample count :func:`rank_resample_count` picks (so the seconds one
checkpoint's intervals take). Quote the ratio, not the seconds, on shared machines.

Usage::

    python benchmarks/rank_intervals.py                               # N 1k-20k, D 96-384
    python benchmarks/rank_intervals.py --sizes 1000,5000 --dims 96 --repeats 3
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]


def _time(fn: Any, repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def measure(n: int, d: int, repeats: int, seed: int = 0) -> dict[str, Any]:
    """Seconds per resample, baseline vs weighted Gram, on (n, d) features with a decaying spectrum."""
    from umae_eval.metrics.rank_bootstrap import bootstrap_ranks, rank_resample_count, resample_indices
    from umae_eval.metrics.spectrum import effective_rank, rankme

    rng = np.random.default_rng(seed)
    x = (rng.normal(size=(n, d)) * np.geomspace(1.0, 0.01, d) + 0.5).astype(np.float32)
    idx = resample_indices(n, 1, seed)[0]

    def baseline() -> np.ndarray:
        xb = x[idx]
        return np.array([effective_rank(xb), rankme(xb)])

    def gram() -> np.ndarray:
        return bootstrap_ranks(x, n_boot=1, seed=seed)[0]

    a, b = baseline(), gram()
    t_base, t_gram = _time(baseline, repeats), _time(gram, repeats)
    reps = rank_resample_count(n, d, 2000)
    return {"n": n, "d": d, "baseline_s": t_base, "gram_s": t_gram, "speedup": t_base / t_gram,
            "max_rel_diff": float(np.max(np.abs(a - b) / np.abs(a))), "resamples": reps,
            "intervals_s_per_checkpoint": reps * t_gram}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", default="1000,5000,10000,20000")
    ap.add_argument("--dims", default="96,192,384")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="BLAS threads (set before numpy loads)")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "rank_intervals.json"))
    args = ap.parse_args()
    rows = [measure(n, d, args.repeats) for n in map(int, args.sizes.split(","))
            for d in map(int, args.dims.split(","))]
    head = f"{'N':>7} {'D':>5} {'baseline s':>11} {'gram s':>9} {'speedup':>8} {'max rel diff':>13} " \
           f"{'resamples':>10} {'s/checkpoint':>13}"
    print(head)
    for r in rows:
        print(f"{r['n']:>7} {r['d']:>5} {r['baseline_s']:>11.4f} {r['gram_s']:>9.4f} {r['speedup']:>7.2f}x "
              f"{r['max_rel_diff']:>13.1e} {r['resamples']:>10} {r['intervals_s_per_checkpoint']:>13.1f}")
    out = {"benchmark": "rank_intervals", "rows": rows, "threads": args.threads, "repeats": args.repeats,
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count(), "numpy": np.__version__},
           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    import sys

    threads = next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--threads=")), None)
    if threads is None and "--threads" in sys.argv:
        threads = sys.argv[sys.argv.index("--threads") + 1]
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, threads or "1")
    main()
