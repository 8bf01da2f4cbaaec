"""Speed and accuracy of umae's probes against the usual baselines, on the same features.

    python benchmarks/probe_speed.py                      # 50k x 768 synthetic set, writes the JSON (--md PATH: the markdown section too)
    python benchmarks/probe_speed.py --quick              # < 1 minute smoke run (small set)
    python benchmarks/probe_speed.py --features feats.npz # real features: x_train, y_train, x_test, y_test
    python benchmarks/probe_speed.py --checkpoint runs/x/last.pth --data ../shared/data/cifar10-jpeg.tar.gz

Compared, with the same thread count on both sides (``--threads``, default 1):

- linear probe, the whole 'fast' protocol (standardise, weight-decay grid on a stratified
  validation split, refit on train): umae's torch L-BFGS against scikit-learn's
  ``LogisticRegression(lbfgs)`` running the same split, grid, objective and warm start;
- one logistic-regression fit at a fixed weight decay from zero (no grid): the solver alone;
- kNN (k = 10, 20, 200, T = 0.07): faiss ``IndexFlatIP`` against a plain torch matmul + topk;
- the mean classifier (for scale), and with ``--mae`` the MAE linear-probe recipe.

The synthetic set is a 10-class Gaussian mixture in 768 dimensions whose covariance
eigenvalues fall as 1/k (rotated by a random orthogonal matrix, plus an offset), so accuracies
are meaningful and the features are correlated like an encoder's. Timings on a shared machine
are noisy: the script records the load average before and after and reports ratios.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any


def _parse(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--features", type=Path, help="NPZ with x_train, y_train, x_test, y_test (else synthetic)")
    p.add_argument("--checkpoint", type=Path,
                   help="real features: encode --data with this checkpoint through umae's cached extractor")
    p.add_argument("--data", default="../shared/data/cifar10-jpeg.tar.gz",
                   help="dataset spec for --checkpoint (default: the real CIFAR-10 beside the checkout)")
    p.add_argument("--quick", action="store_true", help="small synthetic set, runs in < 1 minute")
    p.add_argument("--threads", type=int, default=1,
                   help="threads for torch, BLAS, faiss and sklearn (default 1: on a shared, loaded "
                        "2-core machine 2 OpenMP threads stall on barriers, torch by up to 20x)")
    p.add_argument("--n-train", type=int, default=None, help="synthetic train size (default 50000; quick 6000)")
    p.add_argument("--dim", type=int, default=None, help="synthetic dimension (default 768; quick 256)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--mae", action="store_true", help="also time the MAE linear-probe recipe (90 epochs)")
    p.add_argument("--json", type=Path, default=None,
                   help="write results here (default benchmarks/probe_speed.json; none with --quick)")
    p.add_argument("--md", type=Path, default=None,
                   help="also write the markdown section here, to fold into benchmarks/RESULTS.md (default: none)")
    return p.parse_args(argv)


ARGS = _parse(sys.argv[1:] if __name__ == "__main__" else [])
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "NUMBA_NUM_THREADS"):
    os.environ[_var] = str(ARGS.threads)

import numpy as np  # noqa: E402
import torch  # noqa: E402
from threadpoolctl import threadpool_limits  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from umae_eval.compat import ensure_timm_importable  # noqa: E402

ensure_timm_importable()  # before timm (the MAE probe recipe uses its LARS)
from umae_eval.probes import knn_probe, linear_probe, mean_classifier  # noqa: E402
from umae_eval.probes.knn import knn_search  # noqa: E402
from umae_eval.provenance import atomic_write_json, atomic_write_text, now_iso, versions  # noqa: E402


def synthetic_features(n_train: int, n_test: int, dim: int, num_classes: int = 10, seed: int = 0,
                       separation: float = 0.1) -> dict[str, np.ndarray]:
    """Class-structured Gaussian mixture with a 1/k covariance spectrum (float32 features)."""
    rng = np.random.default_rng(seed)
    scale = np.arange(1, dim + 1, dtype=np.float64) ** -0.5
    basis, _ = np.linalg.qr(rng.standard_normal((dim, dim)))
    means = rng.standard_normal((num_classes, dim)) * separation

    def draw(n: int) -> tuple[np.ndarray, np.ndarray]:
        y = rng.integers(0, num_classes, n)
        z = (rng.standard_normal((n, dim)) + means[y]) * scale
        return (z @ basis.T + 0.3).astype(np.float32), y.astype(np.int64)

    xtr, ytr = draw(n_train)
    xte, yte = draw(n_test)
    return {"x_train": xtr, "y_train": ytr, "x_test": xte, "y_test": yte}


def load_features(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        missing = {"x_train", "y_train", "x_test", "y_test"} - set(f.files)
        if missing:
            raise SystemExit(f"{path}: missing arrays {sorted(missing)} (need x_train, y_train, x_test, y_test)")
        return {k: f[k] for k in ("x_train", "y_train", "x_test", "y_test")}


def encoder_features(checkpoint: Path, data_spec: str) -> tuple[dict[str, np.ndarray], str]:
    """[CLS] features of both splits of ``data_spec`` from ``checkpoint`` (cached on disk by umae)."""
    from umae_eval.checkpoints import load_encoder
    from umae_eval.data import load_dataset
    from umae_eval.features import cached_features

    ds = load_dataset(data_spec)
    enc = load_encoder(checkpoint)
    data = {"x_train": cached_features(enc, ds.x_train, images_key=f"{ds.fingerprint}-train"),
            "y_train": ds.y_train,
            "x_test": cached_features(enc, ds.x_test, images_key=f"{ds.fingerprint}-test"),
            "y_test": ds.y_test}
    return data, f"{data_spec} encoded by {checkpoint.name} ({enc.info.summary()}), [CLS] features"


def timed(fn: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def single_fit(data: dict[str, np.ndarray], wd: float, backend: str) -> dict[str, Any]:
    """One fit at a fixed weight decay from zero, no grid (the solver alone)."""
    res, sec = timed(lambda: linear_probe(data["x_train"], data["y_train"], data["x_test"], data["y_test"],
                                          backend=backend, weight_decays=(wd,), val_fraction=0.0))
    return {"seconds": sec, "accuracy": res.accuracy, "iterations": res.extras["refit_iterations"],
            "train_accuracy": res.extras["train_accuracy"], "seconds_breakdown": res.extras["seconds"]}


def run(args: argparse.Namespace) -> dict[str, Any]:
    torch.set_num_threads(args.threads)
    try:
        import faiss

        faiss.omp_set_num_threads(args.threads)
    except ImportError:
        pass
    if args.checkpoint is not None:
        data, source = encoder_features(args.checkpoint, args.data)
    elif args.features is not None:
        data = load_features(args.features)
        source = str(args.features)
    else:
        n = args.n_train or (6000 if args.quick else 50000)
        d = args.dim or (256 if args.quick else 768)
        data = synthetic_features(n, n // 5, d, seed=args.seed)
        source = f"synthetic: 10-class Gaussian mixture, 1/k spectrum, n_train={n}, n_test={n // 5}, dim={d}"
    xtr, ytr, xte, yte = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
    load_before = os.getloadavg()
    out: dict[str, Any] = {"created": now_iso(), "source": source, "threads": args.threads,
                           "shape": {"train": list(xtr.shape), "test": list(xte.shape)},
                           "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                       "load_average_before": load_before},
                           "versions": versions()}
    with threadpool_limits(limits=args.threads):
        # warm-up: imports (scikit-learn alone takes seconds) and first-call costs stay out of the timings
        tiny = synthetic_features(200, 50, 8, seed=1)
        for backend in ("torch", "sklearn"):
            linear_probe(tiny["x_train"], tiny["y_train"], tiny["x_test"], tiny["y_test"], backend=backend)
        for backend in ("faiss", "torch"):
            knn_probe(tiny["x_train"], tiny["y_train"], tiny["x_test"], tiny["y_test"], backend=backend)
        # linear probe, whole protocol
        lin = {}
        for backend in ("torch", "sklearn"):
            res, sec = timed(lambda b=backend: linear_probe(xtr, ytr, xte, yte, backend=b, seed=args.seed))
            lin[backend] = {"seconds": sec, "accuracy": res.accuracy,
                            "chosen_weight_decay": res.extras["chosen_weight_decay"],
                            "iterations": sum(p["iterations"] for p in res.extras["val_curve"])
                            + res.extras["refit_iterations"],
                            "val_curve": [{k: p[k] for k in ("weight_decay", "val_accuracy", "iterations")}
                                          for p in res.extras["val_curve"]],
                            "seconds_breakdown": res.extras["seconds"], "settings": res.to_dict()["settings"]}
        out["linear_protocol"] = lin
        wd = lin["torch"]["chosen_weight_decay"]
        out["linear_single_fit"] = {"weight_decay": wd,
                                    **{b: single_fit(data, wd, b) for b in ("torch", "sklearn")}}
        # kNN
        knn = {}
        for backend in ("faiss", "torch"):
            res, sec = timed(lambda b=backend: knn_probe(xtr, ytr, xte, yte, ks=(10, 20, 200), backend=b))
            knn[backend] = {"seconds": sec, "accuracy_k20": res.accuracy,
                            "accuracy_by_k": {str(k): v for k, v in res.extras["accuracy_by_k"].items()}}
        rows = slice(0, min(2000, xte.shape[0]))
        _, i_f = knn_search(xtr, xte[rows], 200, backend="faiss")
        _, i_t = knn_search(xtr, xte[rows], 200, backend="torch")
        knn["same_neighbours_first_2000_queries"] = float((i_f == i_t).float().mean())
        knn["same_accuracies"] = knn["faiss"]["accuracy_by_k"] == knn["torch"]["accuracy_by_k"]
        out["knn"] = knn
        res, sec = timed(lambda: mean_classifier(xtr, ytr, xte, yte))
        out["mean_classifier"] = {"seconds": sec, "accuracy": res.accuracy}
        if args.mae:
            res, sec = timed(lambda: linear_probe(xtr, ytr, xte, yte, protocol="mae", seed=args.seed))
            out["linear_mae_recipe"] = {"seconds": sec, "accuracy": res.accuracy, "settings": res.to_dict()["settings"]}
    out["machine"]["load_average_after"] = os.getloadavg()
    lp = out["linear_protocol"]
    out["summary"] = {
        "linear_protocol_speedup": lp["sklearn"]["seconds"] / lp["torch"]["seconds"],
        "linear_protocol_accuracy_gap": lp["torch"]["accuracy"] - lp["sklearn"]["accuracy"],
        "linear_single_fit_speedup": out["linear_single_fit"]["sklearn"]["seconds"]
        / out["linear_single_fit"]["torch"]["seconds"],
        "knn_faiss_speedup_over_torch": knn["torch"]["seconds"] / knn["faiss"]["seconds"],
    }
    s = out["summary"]
    s["goal_met"] = bool(s["linear_protocol_speedup"] >= 10 and abs(s["linear_protocol_accuracy_gap"]) <= 0.5)
    return out


def table(out: dict[str, Any]) -> str:
    lp, sf, knn = out["linear_protocol"], out["linear_single_fit"], out["knn"]
    t, k = out["threads"], knn
    lines = [
        f"| task | umae | baseline | time umae / baseline (s) | speed-up | accuracy umae / baseline (%) |",
        "|---|---|---|---|---|---|",
        f"| linear probe, whole protocol (grid of {len(lp['torch']['val_curve'])} + refit) | torch L-BFGS, "
        f"preconditioned ({lp['torch']['iterations']} it.) | sklearn LogisticRegression lbfgs ({lp['sklearn']['iterations']} it.) "
        f"| {lp['torch']['seconds']:.1f} / {lp['sklearn']['seconds']:.1f} | {out['summary']['linear_protocol_speedup']:.1f}x "
        f"| {lp['torch']['accuracy']:.2f} / {lp['sklearn']['accuracy']:.2f} |",
        f"| linear probe, one fit at wd={sf['weight_decay']:g} | torch L-BFGS ({sf['torch']['iterations']} it.) "
        f"| sklearn lbfgs ({sf['sklearn']['iterations']} it.) | {sf['torch']['seconds']:.1f} / {sf['sklearn']['seconds']:.1f} "
        f"| {out['summary']['linear_single_fit_speedup']:.1f}x | {sf['torch']['accuracy']:.2f} / {sf['sklearn']['accuracy']:.2f} |",
        f"| kNN, k = 10/20/200, T = 0.07 | faiss IndexFlatIP | torch matmul + topk "
        f"| {k['faiss']['seconds']:.2f} / {k['torch']['seconds']:.2f} | {out['summary']['knn_faiss_speedup_over_torch']:.1f}x "
        f"| {k['faiss']['accuracy_k20']:.2f} / {k['torch']['accuracy_k20']:.2f} (k=20) |",
        f"| mean classifier (cosine) | torch | - | {out['mean_classifier']['seconds']:.2f} | - "
        f"| {out['mean_classifier']['accuracy']:.2f} |",
    ]
    if "linear_mae_recipe" in out:
        m = out["linear_mae_recipe"]
        lines.append(f"| linear probe, MAE recipe (BN + LARS, 90 ep., batch {m['settings']['batch_size']}) | torch | - "
                     f"| {m['seconds']:.1f} | - | {m['accuracy']:.2f} |")
    lines.append("")
    lines.append(f"Threads: {t} on every side (torch, BLAS via threadpoolctl, faiss). "
                 f"Load average before/after: {out['machine']['load_average_before'][0]:.1f} / "
                 f"{out['machine']['load_average_after'][0]:.1f} on {out['machine']['cpus']} CPUs. "
                 f"kNN: same neighbours for {100 * k['same_neighbours_first_2000_queries']:.2f}% of "
                 f"(query, rank) pairs, identical accuracies: {k['same_accuracies']}.")
    return "\n".join(lines)


def markdown(out: dict[str, Any], command: str) -> str:
    s = out["summary"]
    goal = ("met" if s["goal_met"] else "NOT met") + (
        f": {s['linear_protocol_speedup']:.1f}x at {s['linear_protocol_accuracy_gap']:+.2f} points")
    lp, sf = out["linear_protocol"], out["linear_single_fit"]
    note = (
        "Where the time goes: on a CPU one loss-and-gradient evaluation costs about the same on both "
        "sides (two skinny float32 matmuls over the train features; scikit-learn keeps float32 input in "
        "float32; measured 108 vs 115 ms at 45k x 768 on one thread), so the speed-up follows the ratio "
        f"of iterations ({lp['sklearn']['iterations']} vs {lp['torch']['iterations']} over the grid and "
        "the refit), less umae's one-off set-up and about one extra evaluation per fit. "
        "umae solves the same strictly convex objective (same optimum: the accuracies agree) by L-BFGS "
        "in a basis preconditioned by the feature covariance, which removes most of the "
        "ill-conditioning of correlated features, and warm-starts along the grid (so does the "
        "scikit-learn baseline here). "
        + ("" if s["goal_met"] else "Reaching 10x here would need a further cut in iterations, which this "
           "solver does not deliver on these features. ")
        + "The one-fit row includes the one-off "
        f"standardisation and preconditioner set-up ({sf['torch']['seconds_breakdown']['preprocess']:.1f} s "
        "here), which the grid amortises. "
        "A GPU (`device='cuda'`) runs each full-batch iteration in milliseconds; that was not "
        "measured (no GPU in this session). The more ill-conditioned the features (collapsed MAE "
        "features more than a 1/k synthetic spectrum), the more the preconditioning saves. "
        "Threads: 1 per side because on this "
        "shared, overloaded 2-core machine two OpenMP threads stall on barriers (torch ops up to "
        "20x slower), which would measure the machine's load, not the solvers."
    )
    return "\n".join([
        "## Probes: linear probe and kNN (benchmarks/probe_speed.py)",
        "",
        f"Features: {out['source']} (train {out['shape']['train']}, test {out['shape']['test']}).",
        f"Measured {out['created']} on a shared {out['machine']['cpus']}-CPU machine; ratios, not absolute times, are the result.",
        "",
        table(out),
        "",
        f"Goal (linear probe >= 10x scikit-learn at equal accuracy, +-0.5 pt): **{goal}**.",
        "",
        note,
        "",
        "Command:",
        "",
        f"    {command}",
        "",
    ])


def main(argv: list[str] | None = None) -> int:
    args = ARGS if argv is None else _parse(argv)
    out = run(args)
    print(table(out))
    json_path = args.json or (None if args.quick else Path(__file__).with_name("probe_speed.json"))
    md_path = args.md
    command = "python benchmarks/probe_speed.py " + " ".join(sys.argv[1:] if argv is None else argv)
    out["command"] = command.strip()
    if json_path:
        atomic_write_json(json_path, out)
        print(f"wrote {json_path}")
    if md_path:
        atomic_write_text(md_path, markdown(out, command.strip()))
        print(f"wrote {md_path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
