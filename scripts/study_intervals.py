"""95% intervals for the CIFAR-10 study: per-encoder accuracies and paired U-MAE - MAE differences.

Re-derives, independently of `umae compare`'s probe code, the test predictions of three probes
on the same frozen [CLS] features (umae's feature cache, so the features are the ones compare
used): the cosine mean classifier, weighted kNN (k = 20, T = 0.07, cosine) written here in
numpy/torch, and a scikit-learn multinomial logistic regression on standardised features
(C = 1 / (lambda n) with the weight decay compare chose). Then

- each accuracy with a 95% percentile-bootstrap interval over the 10,000 test images,
- each paired difference (U-MAE minus MAE, MAE minus random init) with a 95% paired bootstrap
  interval (the same resampled test images for both encoders),

and writes them to `<out>/intervals.json` and `<out>/intervals.csv`.

    python scripts/study_intervals.py --data ../shared/data/cifar10-jpeg.tar.gz \\
        --mae runs/cifar10-study/mae/last.pth --umae runs/cifar10-study/umae/last.pth \\
        --compare reports/cifar10-mae-vs-umae-cpu/compare --out reports/cifar10-mae-vs-umae-cpu
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch


def features(path: str | None, data: object, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    from umae_eval.checkpoints import load_encoder, random_init_encoder
    from umae_eval.features import cached_features

    if path is None:
        from umae_eval.checkpoints import load_encoder as _l

        arch = _l(ARGS.mae).info.arch
        enc = random_init_encoder(arch, seed=seed, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5))
    else:
        enc = load_encoder(path)
    out = []
    for split, x in (("train", data.x_train), ("test", data.x_test)):  # type: ignore[attr-defined]
        out.append(np.asarray(cached_features(enc, x, images_key=f"{data.fingerprint}-{split}-all",  # type: ignore[attr-defined]
                                              pool="cls", device="cpu", batch_size=256), np.float32))
    return out[0], out[1]


def mean_correct(ftr: np.ndarray, ytr: np.ndarray, fte: np.ndarray, yte: np.ndarray) -> np.ndarray:
    z = ftr / np.linalg.norm(ftr, axis=1, keepdims=True)
    means = np.stack([z[ytr == c].mean(0) for c in range(int(ytr.max()) + 1)])
    means /= np.linalg.norm(means, axis=1, keepdims=True)
    q = fte / np.linalg.norm(fte, axis=1, keepdims=True)
    return (q @ means.T).argmax(1) == yte


def knn_correct(ftr: np.ndarray, ytr: np.ndarray, fte: np.ndarray, yte: np.ndarray, k: int = 20,
                t: float = 0.07) -> np.ndarray:
    a = torch.nn.functional.normalize(torch.from_numpy(ftr).double(), dim=1)
    b = torch.nn.functional.normalize(torch.from_numpy(fte).double(), dim=1)
    c = int(ytr.max()) + 1
    pred = []
    for i in range(0, len(b), 1000):
        sims, idx = (b[i:i + 1000] @ a.T).topk(k, dim=1)
        votes = torch.zeros(len(idx), c, dtype=torch.float64)
        votes.scatter_add_(1, torch.from_numpy(ytr)[idx], (sims / t).exp())
        pred.append(votes.argmax(1).numpy())
    return np.concatenate(pred) == yte


def linear_correct(ftr: np.ndarray, ytr: np.ndarray, fte: np.ndarray, yte: np.ndarray, wd: float) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression

    mu, sd = ftr.mean(0), ftr.std(0) + 1e-8
    clf = LogisticRegression(C=1.0 / (wd * len(ytr)), max_iter=2000, tol=1e-4)
    clf.fit((ftr - mu) / sd, ytr)
    return clf.predict((fte - mu) / sd) == yte


def boot(correct: dict[str, np.ndarray], n_boot: int = 2000, seed: int = 0) -> np.ndarray:
    """(n_boot, n_encoders) accuracies in % on the same resampled test images."""
    rng = np.random.default_rng(seed)
    n = len(next(iter(correct.values())))
    stack = np.stack(list(correct.values()), 1).astype(np.float64)
    out = np.empty((n_boot, stack.shape[1]))
    for b in range(n_boot):
        out[b] = stack[rng.integers(0, n, n)].mean(0) * 100
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", required=True)
    ap.add_argument("--mae", required=True)
    ap.add_argument("--umae", required=True)
    ap.add_argument("--compare", required=True, help="the compare output folder (for the chosen weight decays)")
    ap.add_argument("--out", required=True)
    ap.add_argument("--n-boot", type=int, default=2000)
    global ARGS
    ARGS = ap.parse_args()
    from umae_eval.data import load_dataset

    data = load_dataset(ARGS.data)
    cmp = json.loads((Path(ARGS.compare) / "results.json").read_text())["results"]["checkpoints"]
    names = {"MAE": ARGS.mae, "U-MAE": ARGS.umae, "random init": None}
    ytr, yte = data.y_train, data.y_test
    correct: dict[str, dict[str, np.ndarray]] = {"linear": {}, "knn@20": {}, "mean": {}}
    for name, path in names.items():
        ftr, fte = features(path, data)
        lin = next(p for p in cmp[name]["probes"] if p["method"] == "linear")
        wd = float(lin["extras"]["chosen_weight_decay"])
        correct["mean"][name] = mean_correct(ftr, ytr, fte, yte)
        correct["knn@20"][name] = knn_correct(ftr, ytr, fte, yte)
        correct["linear"][name] = linear_correct(ftr, ytr, fte, yte, wd)
        print(name, {m: round(float(c[name].mean() * 100), 2) for m, c in correct.items()}, flush=True)
    rows = []
    result: dict[str, object] = {"n_test": int(len(yte)), "n_boot": ARGS.n_boot, "interval": "95% percentile bootstrap",
                                 "probes": {"linear": "sklearn LogisticRegression on standardised features, "
                                            "C = 1/(lambda n), lambda = compare's chosen weight decay",
                                            "knn@20": "cosine, k=20, T=0.07, exp(s/T) votes",
                                            "mean": "cosine mean classifier"}, "metrics": {}}
    for metric, by_name in correct.items():
        b = boot(by_name, ARGS.n_boot)
        keys = list(by_name)
        entry: dict[str, object] = {}
        for j, name in enumerate(keys):
            lo, hi = np.percentile(b[:, j], [2.5, 97.5])
            acc = float(by_name[name].mean() * 100)
            entry[name] = {"accuracy": acc, "ci95": [float(lo), float(hi)]}
            rows.append({"metric": metric, "what": name, "value": acc, "ci_low": lo, "ci_high": hi})
        for a, c in (("U-MAE", "MAE"), ("MAE", "random init"), ("U-MAE", "random init")):
            d = b[:, keys.index(a)] - b[:, keys.index(c)]
            lo, hi = np.percentile(d, [2.5, 97.5])
            diff = float((by_name[a].mean() - by_name[c].mean()) * 100)
            entry[f"{a} - {c}"] = {"difference": diff, "ci95": [float(lo), float(hi)],
                                   "excludes_zero": bool(lo > 0 or hi < 0)}
            rows.append({"metric": metric, "what": f"{a} - {c}", "value": diff, "ci_low": lo, "ci_high": hi})
        result["metrics"][metric] = entry  # type: ignore[index]
    out = Path(ARGS.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "intervals.json").write_text(json.dumps(result, indent=2) + "\n")
    import pandas as pd

    pd.DataFrame(rows).to_csv(out / "intervals.csv", index=False, float_format="%.3f")
    print(pd.DataFrame(rows).to_string(index=False, float_format=lambda v: f"{v:.2f}"))


ARGS: argparse.Namespace


if __name__ == "__main__":
    main()
