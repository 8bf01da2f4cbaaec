"""Linear probe and kNN at ImageNet-1k scale: today's in-memory path against the blocked one.

    python benchmarks/probe_scale.py --sizes 131072                 # the 128k row (both paths)
    nice python benchmarks/probe_scale.py --sizes 1281167           # ImageNet-1k's train size
    python benchmarks/probe_scale.py --quick                        # < 2 minutes smoke run

Per train size N: generated features N x 768 and a test set of ``--queries`` rows (1000
classes, planted class structure, see :func:`_write_features`), written in blocks as float16
``.npy`` files to a temporary folder under ``--tmp`` and memory-mapped; deleted afterwards.
Each measurement runs in its own subprocess (seconds, and peak RSS from
``resource.getrusage(RUSAGE_SELF).ru_maxrss``, which counts the memory-mapped pages read):

- ``product (linear)``: one N x 768 x 1000 float32 product, ``x @ W`` over float32 row
  blocks (only the products timed; the float16 -> float32 conversion is not);
- ``linear memory`` / ``linear blocked``: ``linear_probe`` ('fast' protocol, default grid
  1e-1 .. 1e-6, val_fraction 0.1, the default tol: 1e-6 at 1000 classes) with
  ``path='memory'`` (today's) and ``'blocked'``;
- ``product (kNN)``: the M x 768 x N float32 product of the queries with all train rows
  (in the same query chunks x train blocks as the blocked search, products only);
- ``kNN memory`` / ``kNN blocked``: ``knn_probe`` (k = 20, T = 0.07; memory = backend 'auto',
  faiss here) and the blocked torch search; the neighbour lists are compared exactly.

Today's path runs only where it fits ``--baseline-max-rows`` (default 131,072: at 512k its
estimated memory is 11 GB for the linear probe, beyond what this shared machine can give).
Seconds are CPU seconds of the measuring process (``time.process_time``, one thread), which
the load of a shared machine moves far less than wall time (also recorded); read the ratios to
the product measured in the same run. Writes JSON (``--json``) after every measurement, so a cut run keeps its rows.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sizes", default="131072,524288,1281167", help="train sizes, comma-separated")
    p.add_argument("--dim", type=int, default=768)
    p.add_argument("--classes", type=int, default=1000)
    p.add_argument("--queries", type=int, default=50000, help="test rows (kNN queries and linear test set)")
    p.add_argument("--baseline-max-rows", type=int, default=131072,
                   help="run today's in-memory path only up to this train size")
    p.add_argument("--probes", default="linear,knn", help="which probes, in this order (linear, knn)")
    p.add_argument("--tmp", default=tempfile.gettempdir(), help="where the generated features go (deleted after)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--sep", type=float, default=0.065,
                   help="class-mean scale of the generated set; 0.065 (default): linear at the 100%% ceiling from "
                        "128k rows, kNN@20 near 12%%; 0.007: a harder set, linear off the ceiling (LDA 89.9%% at 128k)")
    p.add_argument("--quick", action="store_true", help="tiny sizes (smoke run)")
    p.add_argument("--json", type=Path, default=None, help="default benchmarks/probe_scale.json (none with --quick)")
    p.add_argument("--md", type=Path, default=None, help="also write the markdown table here")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    p.add_argument("--dir", type=Path, default=None, help=argparse.SUPPRESS)
    return p.parse_args(argv)


# --------------------------------------------------------------------------- generation
def _write_features(folder: Path, n: int, m: int, d: int, c: int, seed: int, sep: float = 0.065,
                    block: int = 65536) -> dict[str, Any]:
    """Train (n, d) and test (m, d) float16 .npy files with planted class structure.

    ``x = mu_y + F^T h + s * e``: class means ``mu_c ~ N(0, sep^2 I)`` (default sep 0.065), a shared
    64-factor term ``h ~ N(0, I_64)`` through a fixed ``F`` (64 x d, entries N(0, 0.02^2))
    that correlates the dimensions, and noise ``e ~ N(0, I)`` scaled per dimension by
    ``s_j = (1 + j / 16)^{-1}`` (an encoder-like falling spectrum). Labels uniform. The
    default ``sep`` 0.065 keeps kNN off 0 and 100% (kNN@20 5-16%, mean classifier 92-99% for
    sep 0.06-0.07 at 64k rows), but the linear probe reaches 100% from 128k rows, where any
    two solvers agree; ``sep`` 0.007 moves it off the ceiling (whitened nearest class mean,
    i.e. LDA with the pooled covariance, on 128k rows and 10k test rows: 89.9% at 0.007, 97.6%
    at 0.008, 71.0% at 0.006, 100% at 0.01).
    """
    import numpy as np

    rng = np.random.default_rng(seed)
    means = rng.standard_normal((c, d)).astype(np.float32) * sep
    factors = rng.standard_normal((64, d)).astype(np.float32) * 0.02
    scale = ((1.0 + np.arange(d) / 16.0) ** -1.0).astype(np.float32)
    for name, rows in (("train", n), ("test", m)):
        y = rng.integers(0, c, rows).astype(np.int64)
        np.save(folder / f"y_{name}.npy", y)
        x = np.lib.format.open_memmap(folder / f"x_{name}.npy", mode="w+", dtype=np.float16, shape=(rows, d))
        for s in range(0, rows, block):
            e = min(rows, s + block)
            blk = rng.standard_normal((e - s, d), dtype=np.float32) * scale
            blk += rng.standard_normal((e - s, 64), dtype=np.float32) @ factors
            blk += means[y[s:e]]
            x[s:e] = blk.astype(np.float16)
        x.flush()
        del x
    return {"generator": f"x = mu_y + F^T h + s * e (class means N(0, {sep}^2 I), 64 shared factors N(0, 0.02^2), "
                         "noise scale (1 + j/16)^-1 per dimension j), stored float16",
            "sep": sep, "seed": seed}


# ------------------------------------------------------------------------------ workers
def _load(folder: Path) -> tuple[Any, Any, Any, Any]:
    import numpy as np

    return (np.load(folder / "x_train.npy", mmap_mode="r"), np.load(folder / "y_train.npy"),
            np.load(folder / "x_test.npy", mmap_mode="r"), np.load(folder / "y_test.npy"))


def linear_product_seconds(xtr: Any, classes: int = 1000) -> tuple[float, float]:
    """(wall, CPU) seconds of one ``N x D x classes`` float32 product over the blocks of ``xtr``:
    the products only, not the float16 -> float32 conversion of the blocks."""
    import torch

    from umae_eval.probes.blocks import DEFAULT_BLOCK_ROWS, iter_blocks

    torch.manual_seed(0)
    w = torch.randn(xtr.shape[1], classes)
    spent = cpu_spent = 0.0
    for _, blk in iter_blocks(xtr, DEFAULT_BLOCK_ROWS, torch.device("cpu")):
        t1, c1 = time.perf_counter(), time.process_time()
        blk @ w
        spent += time.perf_counter() - t1
        cpu_spent += time.process_time() - c1
    return spent, cpu_spent


def _worker(kind: str, folder: Path) -> dict[str, Any]:
    """One measurement in this (fresh) process; returns seconds, peak RSS and the numbers."""
    import numpy as np
    import torch

    from umae_eval.probes import knn_probe, linear_probe
    from umae_eval.probes.blocks import DEFAULT_BLOCK_ROWS, iter_blocks
    from umae_eval.probes.knn_blocked import _CHUNK_ELEMENTS, normalize_rows

    torch.manual_seed(0)
    xtr, ytr, xte, yte = _load(folder)
    cpu = torch.device("cpu")
    out: dict[str, Any] = {}
    t0, c0 = time.perf_counter(), time.process_time()
    if kind == "product_linear":
        spent, cpu_spent = linear_product_seconds(xtr)
        out.update(wall_seconds=spent, seconds=cpu_spent)
    elif kind == "product_knn":
        q = torch.cat([normalize_rows(b) for _, b in iter_blocks(xte, DEFAULT_BLOCK_ROWS, cpu)])
        spent = cpu_spent = 0.0
        for _, blk in iter_blocks(xtr, DEFAULT_BLOCK_ROWS, cpu):
            chunk = max(1, _CHUNK_ELEMENTS // blk.shape[0])
            for q0 in range(0, q.shape[0], chunk):
                t1, c1 = time.perf_counter(), time.process_time()
                q[q0:q0 + chunk] @ blk.T
                spent += time.perf_counter() - t1
                cpu_spent += time.process_time() - c1
        out.update(wall_seconds=spent, seconds=cpu_spent)
    elif kind.startswith("linear_"):
        r = linear_probe(xtr, ytr, xte, yte, path=kind.split("_")[1])
        out.update(wall_seconds=time.perf_counter() - t0, seconds=time.process_time() - c0, accuracy=r.accuracy,
                   settings=r.settings, extras=r.extras)
        np.save(folder / f"pred_{kind}.npy", r.test_predictions["linear_accuracy"])
    elif kind.startswith("knn_"):
        path, backend = {"knn_memory": ("memory", "auto"), "knn_blocked": ("blocked", "torch"),
                         "knn_memorytorch": ("memory", "torch")}[kind]
        r = knn_probe(xtr, ytr, xte, yte, ks=(20,), path=path, backend=backend, return_neighbours=True)
        out.update(wall_seconds=time.perf_counter() - t0, seconds=time.process_time() - c0, accuracy=r.accuracy,
                   settings=r.settings)
        np.save(folder / f"nbr_{kind}.npy", r.extras.pop("neighbours"))
    else:
        raise SystemExit(f"unknown worker {kind!r}")
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def _measure(kind: str, folder: Path, threads: int) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--worker", kind, "--dir", str(folder),
                           "--threads", str(threads)], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"error": proc.stderr.strip().splitlines()[-1:] or [f"exit {proc.returncode}"],
                "wall_seconds": time.perf_counter() - t0}
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------- report
def _gb(b: float | None) -> str:
    return "-" if b is None else f"{b / 1e9:.2f}"


def _table(rows: list[dict[str, Any]]) -> str:
    head = ("| train rows | probe | path | CPU s | x product | wall s | peak RSS (GB) | accuracy (%) | notes |\n"
            "|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in rows:
        lines.append(f"| {r['n']:,} | {r['probe']} | {r['path']} | {r.get('seconds', float('nan')):.1f} | "
                     f"{r.get('x_product', float('nan')):.2f} | {r.get('wall_seconds', float('nan')):.0f} | "
                     f"{_gb(r.get('peak_rss_bytes'))} | "
                     f"{r['accuracy']:.2f} | {r.get('notes', '')} |" if "accuracy" in r else
                     f"| {r['n']:,} | {r['probe']} | {r['path']} | {r.get('seconds', float('nan')):.1f} | 1 | "
                     f"{r.get('wall_seconds', float('nan')):.0f} | {_gb(r.get('peak_rss_bytes'))} | - | {r.get('notes', '')} |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    args = _parse(argv)
    if args.worker:
        import torch

        torch.set_num_threads(args.threads)
        print(json.dumps(_worker(args.worker, args.dir), default=float))
        return 0
    import numpy as np

    sys.path.insert(0, str(ROOT))
    from umae_eval.provenance import atomic_write_json, atomic_write_text, now_iso, versions

    sizes = [int(s) for s in args.sizes.split(",")]
    if args.quick:
        sizes, args.queries, args.classes, args.baseline_max_rows = [4000], 1000, 50, 4000
    json_path = args.json or (None if args.quick else ROOT / "benchmarks" / "probe_scale.json")
    record: dict[str, Any] = {"created": now_iso(), "versions": versions(), "threads": args.threads,
                              "dim": args.dim, "classes": args.classes, "queries": args.queries,
                              "cpus": os.cpu_count(), "rows": []}
    rows: list[dict[str, Any]] = record["rows"]
    probes = tuple(p.strip() for p in args.probes.split(","))
    if not set(probes) <= {"linear", "knn"}:
        raise SystemExit(f"--probes: choose from linear, knn, got {args.probes!r}")
    for n in sizes:
        folder = Path(tempfile.mkdtemp(prefix="probe_scale_", dir=args.tmp))
        try:
            t0 = time.perf_counter()
            record["data"] = _write_features(folder, n, args.queries, args.dim, args.classes, args.seed, args.sep)
            print(f"[{n:,}] generated in {time.perf_counter() - t0:.0f} s ({folder})", flush=True)
            for probe in probes:
                load = os.getloadavg()
                prod = _measure(f"product_{probe}", folder, args.threads)
                rows.append({"n": n, "probe": probe, "path": "product", "load_average": load, **prod})
                paths = (("memory", "blocked") if n <= args.baseline_max_rows else ("blocked",)) + (
                    ("memorytorch",) if probe == "knn" and n <= args.baseline_max_rows else ())
                for path in paths:
                    load = os.getloadavg()
                    res = _measure(f"{probe}_{path}", folder, args.threads)
                    row = {"n": n, "probe": probe, "path": path, "load_average": load, **res}
                    if "seconds" in res and "seconds" in prod:
                        row["x_product"] = res["seconds"] / prod["seconds"]
                    rows.append(row)
                    print(_table([r for r in rows if "error" not in r][-1:]), flush=True)
                if len(paths) >= 2:
                    mem, blk = rows[-len(paths)], rows[-len(paths) + 1]
                    if probe == "knn":
                        b = np.load(folder / "nbr_knn_blocked.npy")
                        notes = []
                        for other in ("memory", "memorytorch"):
                            a = np.load(folder / f"nbr_knn_{other}.npy")
                            blk[f"queries_with_other_neighbours_than_{other}"] = int((a != b).any(axis=1).sum())
                            notes.append(f"{blk[f'queries_with_other_neighbours_than_{other}']} of {len(a)} queries' "
                                         f"20 neighbours differ from {'faiss' if other == 'memory' else 'in-memory torch'}")
                        blk["notes"] = "; ".join(notes)
                    elif "accuracy" in mem and "accuracy" in blk:
                        a = np.load(folder / "pred_linear_memory.npy")
                        b = np.load(folder / "pred_linear_blocked.npy")
                        blk["test_predictions_differing"] = int((a != b).sum())
                        blk["accuracy_minus_memory"] = blk["accuracy"] - mem["accuracy"]
                        blk["notes"] = (f"{blk['accuracy_minus_memory']:+.2f} pt vs memory; wd "
                                        f"{blk['extras']['chosen_weight_decay']:g} vs {mem['extras']['chosen_weight_decay']:g}")
                if json_path:
                    atomic_write_json(json_path, record)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    for r in rows:
        if r["probe"] == "linear" and r["path"] == "blocked" and "extras" in r and "notes" not in r:
            r["notes"] = f"wd {r['extras']['chosen_weight_decay']:g}, {r['extras']['refit_passes']} refit passes"
    table = _table([r for r in rows if "error" not in r])
    print(table)
    for r in rows:
        if "error" in r:
            print(f"[{r['n']:,}] {r['probe']} {r['path']} failed: {r['error']}")
    if json_path:
        atomic_write_json(json_path, record)
    if args.md:
        atomic_write_text(args.md, table + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
