"""Where the 'fast' linear probe stops at 1000 classes, by gradient tolerance and path (one weight decay).

    python benchmarks/probe_tolerance.py /tmp/tolexp 131072 memory:1e-6,blocked:1e-6,memory:1e-4 out.json

Generates (once, into FOLDER) the harder set of ``benchmarks/probe_scale.py`` (``--sep 0.007``:
N x 768 float16, 1000 classes, 50,000 test rows, seed 0), then for each ``path:tol`` runs
``linear_probe(weight_decays=[1e-5], tol=tol, max_iter=400, refit_max_iter=400)`` from a zero
start and appends accuracy, CPU seconds and the refit's extras to OUT (JSON), saving the test
predictions beside the data. Measured 2026-12-07 at 131,072 rows (benchmarks/RESULTS.md): tol 1e-4
stops 23 points of accuracy from the optimum; at tol 1e-6 memory and blocked agree (58.284 vs
58.286 %). One thread.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import probe_scale as ps  # noqa: E402

from umae_eval.probes import linear_probe  # noqa: E402


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__)
        return 2
    torch.set_num_threads(1)
    folder, n, runs, out = Path(argv[0]), int(argv[1]), argv[2].split(","), Path(argv[3])
    folder.mkdir(parents=True, exist_ok=True)
    if not (folder / "x_train.npy").exists():
        ps._write_features(folder, n, 50000, 768, 1000, 0, 0.007)
    xtr, ytr = np.load(folder / "x_train.npy", mmap_mode="r"), np.load(folder / "y_train.npy")
    xte, yte = np.load(folder / "x_test.npy", mmap_mode="r"), np.load(folder / "y_test.npy")
    res = json.loads(out.read_text()) if out.exists() else []
    for run in runs:
        path, tol_text = run.split(":")
        tol = float(tol_text)
        c0 = time.process_time()
        r = linear_probe(xtr, ytr, xte, yte, path=path, weight_decays=[1e-5], tol=tol, max_iter=400,
                         refit_max_iter=400)
        extras = {k: v for k, v in r.extras.items() if k != "val_curve"}
        row = {"path": path, "tol": tol, "accuracy": r.accuracy, "cpu_s": time.process_time() - c0, "extras": extras}
        np.save(folder / f"pred_{path}_{tol:g}.npy", r.test_predictions["linear_accuracy"])
        res.append(row)
        out.write_text(json.dumps(res, indent=1, default=str))
        print(path, tol, r.accuracy, row["cpu_s"], extras.get("refit_iterations"), extras.get("refit_loss"),
              extras.get("refit_converged"), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
