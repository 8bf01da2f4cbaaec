"""What each representation metric costs: seconds and peak memory on N x D features (default
10,000 x 768, generated), each beside the simplest honest way to compute the same number.

Memory: each measure runs once in a fresh child process (so that one metric's memory does not
hide another's), which generates the inputs with a fixed seed and records its wall time and the
growth of the process's peak resident memory (``ru_maxrss``) over what the inputs already took.
Time ratios: each metric and its baseline run alternately in one more child process (the same
load on a shared machine), best of ``--repeats`` each. Metrics and their baselines:

- ``spectrum_scalars`` (participation ratio, stable rank, collapse std, RankMe x 2) vs
  ``svd_baseline``: two full ``numpy.linalg.svd`` calls (centred, raw) and the formulas;
- ``scalars_resample`` (one bootstrap resample through the weighted Gram) vs
  ``resample_copy_baseline``: copy the drawn rows and call ``spectrum_scalars``;
- ``neural_collapse`` (NC1 through the C x D mean matrix; 10 classes) vs ``nc1_pinv_baseline``:
  explicit D x D covariances and ``numpy.linalg.pinv``;
- ``cka_linear``; ``cka_unbiased`` (feature space) vs ``hsic_kernel_baseline`` (Song et al. on
  N x N kernels) on the first ``--kernel-rows`` rows, and the feature route on those same rows
  (``cka_unbiased_small``) for the ratio;
- ``minibatch_cka`` (1,024-row batches); ``cka_matrix_4x4`` (4 blocks against 4);
  ``cka_matrix_4x4_interval`` (the same with per-cell intervals: minibatches of N/20 rows, 1,000
  resamples of them, as the report draws it);
- ``mutual_knn`` (k = 10, 1,024-row chunks, float32 torch ``topk``) vs ``knn_full_baseline``
  (the whole N x N float32 similarity matrix, numpy argsort);
- ``lidar`` (N / 10 images x 10 views of D) and ``lidar_resample`` (one resample);
- ``fourier`` (``--images`` x 14 x 14 tokens of D).

The last two columns are the baseline's time and peak memory over the metric's ("3.0x" = the
baseline takes three times as long). Quote ratios, not seconds: the machines are shared. Usage::

    python benchmarks/metrics_cost.py                      # 10,000 x 768
    python benchmarks/metrics_cost.py --quick --out /tmp/m.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parents[1]

#: (name, baseline it is compared with or None), in the order of the table.
MEASURES: list[tuple[str, str | None]] = [
    ("spectrum_scalars", None), ("svd_baseline", "spectrum_scalars"),
    ("scalars_resample", None), ("resample_copy_baseline", "scalars_resample"),
    ("neural_collapse", None), ("nc1_pinv_baseline", "neural_collapse"),
    ("cka_linear", None), ("cka_unbiased", None),
    ("cka_unbiased_small", None), ("hsic_kernel_baseline", "cka_unbiased_small"),
    ("minibatch_cka", None), ("cka_matrix_4x4", None), ("cka_matrix_4x4_interval", None),
    ("mutual_knn", None), ("knn_full_baseline", "mutual_knn"),
    ("lidar", None), ("lidar_resample", None), ("fourier", None),
]


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KB on Linux


def _job(name: str, n: int, d: int, kernel_rows: int, images: int) -> Callable[[], Any]:
    """Inputs generated now; the returned callable computes the metric (what is timed)."""
    import numpy as np

    from umae_eval.metrics import cka, fourier, lidar, neural_collapse, scalars, suite
    from umae_eval.metrics.rank_bootstrap import resample_indices

    rng = np.random.default_rng(0)
    spec = np.geomspace(1.0, 0.01, d)
    x = (rng.standard_normal((n, d)) * spec + 0.3).astype(np.float32)
    if name == "spectrum_scalars":
        return lambda: scalars.spectrum_scalars(x)
    if name == "svd_baseline":
        def svd() -> tuple[float, float]:
            x64 = x.astype(np.float64)
            s_c = np.linalg.svd(x64 - x64.mean(axis=0), compute_uv=False)
            s_r = np.linalg.svd(x64, compute_uv=False)
            return float(np.sum(s_c**2) ** 2 / np.sum(s_c**4)), float(np.sum(s_r**2) / s_r[0] ** 2)
        return svd
    if name == "scalars_resample":
        return lambda: suite.resampled_scalars(x, n_boot=1, seed=0)
    if name == "resample_copy_baseline":
        idx = resample_indices(n, 1, 0)[0]
        return lambda: scalars.spectrum_scalars(x[idx])
    y = np.arange(n) % 10
    if name == "neural_collapse":
        return lambda: neural_collapse.neural_collapse(x, y)
    if name == "nc1_pinv_baseline":
        def pinv() -> float:
            x64 = x.astype(np.float64)
            mus = np.stack([x64[y == c].mean(axis=0) for c in range(10)])
            h0 = x64 - mus[y]
            sw = h0.T @ h0 / n
            cm = mus - x64.mean(axis=0)
            sb = cm.T @ cm / 10
            return float(np.trace(sw @ np.linalg.pinv(sb, hermitian=True)) / 10)
        return pinv
    other = (np.tanh(x @ rng.standard_normal((d, d)).astype(np.float32) / np.sqrt(d))
             + 0.1 * rng.standard_normal((n, d)).astype(np.float32))
    if name == "cka_linear":
        return lambda: cka.linear_cka(x, other)
    if name == "cka_unbiased":
        return lambda: cka.cka_unbiased(x, other)
    small_x, small_y = x[:kernel_rows].astype(np.float64), other[:kernel_rows].astype(np.float64)
    if name == "cka_unbiased_small":
        return lambda: cka.cka_unbiased(small_x, small_y)
    if name == "hsic_kernel_baseline":
        def kernel() -> float:
            def hsic(a: np.ndarray, b: np.ndarray) -> float:
                m = len(a)
                k, l = a @ a.T, b @ b.T
                np.fill_diagonal(k, 0.0)
                np.fill_diagonal(l, 0.0)
                kl1 = k @ l.sum(axis=1)
                return (float(np.sum(k * l)) + k.sum() * l.sum() / ((m - 1) * (m - 2))
                        - 2.0 / (m - 2) * float(kl1.sum())) / (m * (m - 3))
            return hsic(small_x, small_y) / np.sqrt(hsic(small_x, small_x) * hsic(small_y, small_y))
        return kernel
    if name == "minibatch_cka":
        return lambda: cka.minibatch_cka(x, other, batch_size=1024)
    if name == "cka_matrix_4x4":
        blocks = [x, other, x * spec[::-1].astype(np.float32), other + x]
        return lambda: cka.cka_matrix(blocks, blocks[::-1], batch_size=1024)
    if name == "cka_matrix_4x4_interval":
        from umae_eval.metrics.cka_bootstrap import cka_matrix_interval

        blocks = [x, other, x * spec[::-1].astype(np.float32), other + x]
        return lambda: cka_matrix_interval(blocks, blocks[::-1], n_boot=1000, seed=0)
    if name == "mutual_knn":
        return lambda: cka.mutual_knn(x, other, k=10)
    if name == "knn_full_baseline":
        def full() -> float:
            def sets(z: np.ndarray) -> np.ndarray:
                zn = z / np.linalg.norm(z, axis=1, keepdims=True)
                s = zn @ zn.T
                np.fill_diagonal(s, -np.inf)
                return np.argsort(-s, axis=1)[:, :10]
            a, b = sets(x), sets(other)
            return float(np.mean([len(set(p) & set(q)) / 10 for p, q in zip(a, b)]))
        return full
    views = x.reshape(n // 10, 10, d)
    if name == "lidar":
        return lambda: lidar.lidar(views)
    if name == "lidar_resample":
        idx = resample_indices(n // 10, 1, 0)
        return lambda: lidar.lidar_resampled(views, idx)
    if name == "fourier":
        tokens = rng.standard_normal((images, 1 + 196, d)).astype(np.float32)
        return lambda: fourier.fourier_profile(tokens, prefix_tokens=1)
    raise SystemExit(f"unknown measure {name}")


def child_pair(metric: str, baseline: str, n: int, d: int, kernel_rows: int, images: int,
               repeats: int) -> dict[str, Any]:
    """Time a metric and its baseline alternately in one process (same load): best of ``repeats`` each."""
    jobs = {metric: _job(metric, n, d, kernel_rows, images), baseline: _job(baseline, n, d, kernel_rows, images)}
    best = {metric: float("inf"), baseline: float("inf")}
    for _ in range(repeats):
        for name, job in jobs.items():
            t0 = time.perf_counter()
            job()
            best[name] = min(best[name], time.perf_counter() - t0)
    return {"metric": metric, "baseline": baseline, "metric_s": best[metric], "baseline_s": best[baseline],
            "repeats": repeats}


def child(name: str, n: int, d: int, kernel_rows: int, images: int, repeats: int) -> dict[str, Any]:
    """Run one measure in this process and return its record."""
    job = _job(name, n, d, kernel_rows, images)
    before = _maxrss_mb()
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        job()
        best = min(best, time.perf_counter() - t0)
    return {"measure": name, "seconds": best, "peak_extra_mb": max(0.0, _maxrss_mb() - before),
            "inputs_mb": before}


def _run_child(args: argparse.Namespace, flag: str, value: str) -> dict[str, Any]:
    cmd = [sys.executable, __file__, flag, value, "--n", str(args.n), "--d", str(args.d),
           "--kernel-rows", str(args.kernel_rows), "--images", str(args.images), "--repeats", str(args.repeats)]
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if proc.returncode != 0:
        raise SystemExit(f"{value} failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=10000)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--kernel-rows", type=int, default=3000, help="rows of the N x N kernel baseline")
    ap.add_argument("--images", type=int, default=256, help="images of the Fourier token grids")
    ap.add_argument("--repeats", type=int, default=3, help="alternating runs of each metric/baseline pair")
    ap.add_argument("--quick", action="store_true", help="1,000 x 32 in one process, for tests")
    ap.add_argument("--in-process", action="store_true",
                    help="measure everything in this process (faster; peak memory then only counts growth)")
    ap.add_argument("--only", default="", help="comma-separated measures (default: all)")
    ap.add_argument("--child", default="", help=argparse.SUPPRESS)
    ap.add_argument("--child-pair", default="", help=argparse.SUPPRESS)
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "metrics_cost.json"))
    args = ap.parse_args()
    if args.quick:
        args.n, args.d, args.kernel_rows, args.images, args.repeats = 1000, 32, 500, 16, 1
        args.in_process = True
    if args.child:
        print(json.dumps(child(args.child, args.n, args.d, args.kernel_rows, args.images, 1)))
        return
    if args.child_pair:
        metric, baseline = args.child_pair.split(",")
        print(json.dumps(child_pair(metric, baseline, args.n, args.d, args.kernel_rows, args.images, args.repeats)))
        return
    wanted = [m for m in args.only.split(",") if m]
    rows: list[dict[str, Any]] = []
    for name, base in MEASURES:
        if wanted and name not in wanted:
            continue
        if args.in_process:
            rec = child(name, args.n, args.d, args.kernel_rows, args.images, 1)
        else:
            rec = _run_child(args, "--child", name)
        rec["baseline_of"] = base
        if base is not None and (not wanted or base in wanted):
            pair = (child_pair(base, name, args.n, args.d, args.kernel_rows, args.images, args.repeats)
                    if args.in_process else _run_child(args, "--child-pair", f"{base},{name}"))
            rec["interleaved"] = pair
        rows.append(rec)
    by = {r["measure"]: r for r in rows}
    print(f"{'measure':<24} {'seconds':>9} {'peak extra MB':>14} {'baseline of':>22} {'time / its':>11} "
          f"{'memory / its':>13}")
    for r in rows:
        base = r["baseline_of"]
        line = f"{r['measure']:<24} {r['seconds']:>9.3f} {r['peak_extra_mb']:>14.1f}"
        if base and base in by:
            t = r["interleaved"]["baseline_s"] / r["interleaved"]["metric_s"]
            mem = r["peak_extra_mb"] / max(by[base]["peak_extra_mb"], 0.1)
            r["time_ratio_to_metric"], r["memory_ratio_to_metric"] = t, mem
            line += f" {base:>22} {t:>10.2f}x {mem:>12.1f}x"
        print(line)
    out = {"benchmark": "metrics_cost", "n": args.n, "d": args.d, "kernel_rows": args.kernel_rows,
           "fourier_images": args.images, "lidar_views": [args.n // 10, 10], "repeats": args.repeats,
           "threads": os.environ.get("OMP_NUM_THREADS"), "isolation": "in-process" if args.in_process else
           "one child process per measure", "rows": rows,
           "machine": {"platform": platform.platform(), "cpus": os.cpu_count()},
           "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    Path(args.out).write_text(json.dumps(out, indent=1) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ.setdefault(var, "1")
    main()
