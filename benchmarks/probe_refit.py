"""The blocked linear probe's refit, variants side by side from one walk: passes and CPU seconds.

    python benchmarks/probe_refit.py --folder /tmp/f1281167             # default vs the plain DANE refit
    python benchmarks/probe_refit.py --folder F --variants 3:0.1,0:0,0:0.1 --json out.json

``--folder`` holds ``x_train.npy`` / ``y_train.npy`` / ``x_test.npy`` / ``y_test.npy`` (float16
features as ``benchmarks/probe_scale.py`` writes them; generated there with ``--rows`` train
rows when missing). One process runs the weight-decay walk of the blocked 'fast' probe once,
then every refit variant (``history:forcing`` of
:func:`umae_eval.probes.linear_refit.refit_corrected`) from the same start, and one N x 768 x
1000 float32 product (``probe_scale.linear_product_seconds``: the products only), all in the same
run; CPU seconds (``time.process_time``, one thread).
The first variant's refit is the one the probe returns.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--folder", type=Path, required=True)
    ap.add_argument("--rows", type=int, default=1281167, help="train rows to generate when --folder is empty")
    ap.add_argument("--queries", type=int, default=2000)
    ap.add_argument("--sep", type=float, default=0.065)
    ap.add_argument("--variants", default="3:0.1,0:0", help="history:forcing, comma-separated (first: the default)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)

    import probe_scale

    import umae_eval.probes.linear_blocked as lbk
    import umae_eval.probes.linear_refit as lr
    from umae_eval.probes import linear_probe

    if not (args.folder / "x_train.npy").exists():
        args.folder.mkdir(parents=True, exist_ok=True)
        probe_scale._write_features(args.folder, args.rows, args.queries, 768, 1000, 0, args.sep)
    xtr, ytr, xte, yte = probe_scale._load(args.folder)
    variants = [(int(v.split(":")[0]), float(v.split(":")[1])) for v in args.variants.split(",")]

    _, product = probe_scale.linear_product_seconds(xtr)  # the same baseline as probe_scale.py's
    print(f"product: {product:.1f} CPU s", flush=True)
    rows: list[dict[str, Any]] = []

    def refits(full, z_sub, y_sub, wd, pre, w0, b0, max_iter, tol, **_):  # type: ignore[no-untyped-def]
        first = None
        for history, forcing in variants:
            passes = [0]

            def counted(w_, b_):  # type: ignore[no-untyped-def]
                passes[0] += 1
                return full(w_, b_)

            c = time.process_time()
            r = lr.refit_corrected(counted, z_sub, y_sub, wd, pre, w0, b0, max_iter, tol, history=history,
                                   forcing=forcing)
            cpu = time.process_time() - c
            rows.append({"history": history, "forcing": forcing, "passes": passes[0], "refit_cpu_s": cpu,
                         "x_product": cpu / product, "loss": r.loss, "converged": r.converged, "steps": r.steps,
                         "inner_iterations": r.inner_iterations, "weight_decay": wd})
            print(json.dumps(rows[-1]), flush=True)
            first = first or r
        return first

    lbk.refit_corrected = refits
    c0 = time.process_time()
    res = linear_probe(xtr, ytr, xte, yte, path="blocked")
    out = {"n": int(xtr.shape[0]), "product_cpu_s": product, "total_cpu_s_all_variants": time.process_time() - c0,
           "accuracy_first_variant": res.accuracy, "seconds": res.extras["seconds"], "refits": rows,
           "command_line": " ".join(sys.argv)}
    print(json.dumps({k: v for k, v in out.items() if k != "refits"}), flush=True)
    if args.json:
        args.json.write_text(json.dumps(out, indent=1) + "\n")


if __name__ == "__main__":
    main()
