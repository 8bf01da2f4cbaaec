"""The attentive (EP) probe: finds a planted token, matches a plain-torch re-implementation, is seeded."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from umae_eval.errors import UmaeError
from umae_eval.probes import linear_probe
from umae_eval.probes.attentive import attentive_probe, token_cache_bytes
from umae_eval.probes.linear import stratified_split

T, D, C = 8, 16, 4


def planted(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Tokens (n, T, D) float16: token 0 ([CLS]) and all but one patch token are noise.

    The class lives in one patch token at a random position per image: a shared "key"
    direction (so attention can find the token) plus a class mean.
    """
    rng = np.random.default_rng(seed)
    y = rng.integers(0, C, n)
    tok = rng.standard_normal((n, T, D)).astype(np.float32)
    means = 1.5 * np.random.default_rng(99).standard_normal((C, D))
    key = 3.0 * np.random.default_rng(98).standard_normal(D) / math.sqrt(D)
    pos = rng.integers(1, T, n)
    tok[np.arange(n), pos] = key + means[y] + 0.5 * rng.standard_normal((n, D))
    return tok.astype(np.float16), y


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    tok, y = planted(700)
    return tok[:500], y[:500], tok[500:], y[500:]


# ------------------------------------------------------------- independent re-implementation
class _EP(torch.nn.Module):
    """EP as its authors write it: project every token by W_v, then pool each query's channels."""

    def __init__(self, gen: torch.Generator, q: int, d: int, c: int) -> None:
        super().__init__()
        self.q = q
        self.queries = torch.nn.Parameter(0.02 * torch.randn(q, d, generator=gen))
        self.v = torch.nn.Linear(d, d, bias=False)
        self.bn = torch.nn.BatchNorm1d(d, affine=False, eps=1e-6)
        self.fc = torch.nn.Linear(d, c)
        with torch.no_grad():
            self.v.weight.copy_((2.0 * torch.rand(d, d, generator=gen) - 1.0) / math.sqrt(d))
            self.fc.weight.copy_(0.01 * torch.randn(c, d, generator=gen))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        attn = torch.softmax(self.queries @ x.transpose(1, 2) / math.sqrt(d), dim=-1)  # (B, Q, T)
        v = self.v(x).view(b, t, self.q, d // self.q).permute(0, 2, 1, 3)  # (B, Q, T, D/Q)
        pooled = (attn.unsqueeze(2) @ v).reshape(b, d)  # query i pools its own D/Q value channels
        return self.fc(self.bn(pooled))


def reference_probe(xtr: np.ndarray, ytr: np.ndarray, xte: np.ndarray, *, lr: float, wd: float, q: int,
                    epochs: int, warmup: int, batch: int, seed: int) -> np.ndarray:
    """The module docstring's recipe with torch.nn / torch.optim.AdamW; returns test predictions."""
    gen = torch.Generator().manual_seed(seed)
    model = _EP(gen, q, xtr.shape[2], C)
    opt = torch.optim.AdamW([{"params": [model.v.weight, model.fc.weight], "weight_decay": wd},
                             {"params": [model.queries, model.fc.bias], "weight_decay": 0.0}], lr=lr)
    x_all = torch.from_numpy(xtr.astype(np.float32))
    y_all = torch.from_numpy(ytr)
    n = len(ytr)
    steps = n // batch
    step = 0
    for _ in range(epochs):
        model.train()
        order = torch.randperm(n, generator=gen)
        for s in range(steps):
            e = step / steps
            scale = e / warmup if e < warmup else 0.5 * (1 + math.cos(math.pi * (e - warmup) / (epochs - warmup)))
            for group in opt.param_groups:
                group["lr"] = lr * scale
            idx = order[s * batch:(s + 1) * batch]
            loss = F.cross_entropy(model(x_all[idx]), y_all[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
    model.eval()
    with torch.no_grad():
        return model(torch.from_numpy(xte.astype(np.float32))).argmax(1).numpy()


# ------------------------------------------------------------------------------ tests
def test_attentive_probe_finds_the_planted_token_where_linear_on_cls_is_at_chance(data) -> None:
    xtr, ytr, xte, yte = data
    cls = linear_probe(xtr[:, 0].astype(np.float32), ytr, xte[:, 0].astype(np.float32), yte)
    res = attentive_probe(xtr, ytr, xte, yte, num_queries=4, epochs=15, warmup_epochs=2, batch_size=64)
    assert abs(cls.accuracy - 25.0) < 10.0  # four classes: chance
    assert res.accuracy > 90.0
    assert res.method == "attentive" and res.test_predictions["attentive_accuracy"].dtype == np.int64
    assert len(res.extras["val_curve"]) == 6 and res.settings["num_val"] == 50
    best = max(p["val_accuracy"] for p in res.extras["val_curve"])
    first_best = next(p for p in res.extras["val_curve"] if p["val_accuracy"] == best)
    assert (res.extras["chosen_learning_rate"], res.extras["chosen_weight_decay"]) == (
        first_best["learning_rate"], first_best["weight_decay"])
    assert res.settings["scored_head_trained_on"] == "all of train"


def test_attentive_probe_matches_a_plain_torch_reimplementation(data) -> None:
    xtr, ytr, xte, yte = data
    kw = dict(epochs=12, warmup_epochs=2, batch_size=64, seed=5)
    res = attentive_probe(xtr, ytr, xte, yte, num_queries=4, learning_rates=(3e-3,), weight_decays=(1e-2,),
                          val_fraction=0.0, **kw)
    ref = reference_probe(xtr, ytr, xte, lr=3e-3, wd=1e-2, q=4, epochs=12, warmup=2, batch=64, seed=5)
    ref_acc = 100.0 * np.mean(ref == yte)
    assert ref_acc > 60.0  # the comparison means something: both learn
    assert abs(res.accuracy - ref_acc) <= 1.0
    assert np.mean(res.test_predictions["attentive_accuracy"] == ref) >= 0.97


def test_each_grid_head_is_the_head_a_single_pair_run_trains(data) -> None:
    xtr, ytr, xte, yte = data
    kw = dict(num_queries=2, epochs=4, warmup_epochs=1, batch_size=64, seed=1)
    grid = attentive_probe(xtr, ytr, xte, yte, learning_rates=(1e-3, 1e-2), weight_decays=(1e-3,),
                           refit=False, **kw)
    lr = grid.extras["chosen_learning_rate"]
    assert grid.settings["scored_head_trained_on"] == "fit split (no refit)"
    fit, _ = stratified_split(ytr, 0.1, 1)
    single = attentive_probe(xtr[fit], ytr[fit], xte, yte, learning_rates=(lr,), weight_decays=(1e-3,),
                             val_fraction=0.0, **kw)
    np.testing.assert_allclose(grid.extras["loss_by_epoch"], single.extras["loss_by_epoch"], rtol=1e-4)
    assert np.mean(grid.test_predictions["attentive_accuracy"] == single.test_predictions["attentive_accuracy"]) > 0.99


def test_tokens_from_a_callable_equal_tokens_from_an_array(data) -> None:
    xtr, ytr, xte, yte = data
    calls: list[int] = []

    def train_tokens(idx: np.ndarray) -> np.ndarray:  # what a caller re-running its encoder passes
        calls.append(len(idx))
        return xtr[idx]

    kw = dict(num_queries=2, epochs=3, warmup_epochs=1, batch_size=100, learning_rates=(1e-2,),
              weight_decays=(1e-3,), val_fraction=0.0)
    a = attentive_probe(xtr, ytr, xte, yte, **kw)
    b = attentive_probe(train_tokens, ytr, torch.from_numpy(xte.astype(np.float32)), yte, **kw)
    assert a.accuracy == b.accuracy
    assert np.array_equal(a.test_predictions["attentive_accuracy"], b.test_predictions["attentive_accuracy"])
    assert calls[0] == 1 and calls[1:16] == [100] * 15  # one shape probe, then 3 epochs x 5 batches
    assert b.settings["token_source"].startswith("callable")


def test_attentive_probe_is_seeded(data) -> None:
    xtr, ytr, xte, yte = data
    kw = dict(num_queries=2, epochs=3, warmup_epochs=1, batch_size=64, learning_rates=(1e-2,),
              weight_decays=(1e-3,), val_fraction=0.0)
    a, b = attentive_probe(xtr, ytr, xte, yte, seed=3, **kw), attentive_probe(xtr, ytr, xte, yte, seed=3, **kw)
    c = attentive_probe(xtr, ytr, xte, yte, seed=4, **kw)
    assert a.extras["loss_by_epoch"] == b.extras["loss_by_epoch"]
    assert np.array_equal(a.test_predictions["attentive_accuracy"], b.test_predictions["attentive_accuracy"])
    assert a.extras["loss_by_epoch"] != c.extras["loss_by_epoch"]


def test_token_cache_bytes_is_n_t_d_times_the_item_size() -> None:
    assert token_cache_bytes(50_000, 65, 96) == 50_000 * 65 * 96 * 2
    assert token_cache_bytes(10, 4, 8, itemsize=4) == 1280


def test_bad_token_inputs_are_refused_with_one_line(data) -> None:
    xtr, ytr, xte, yte = data
    cases = [
        (dict(train_tokens=xtr[:, 0]), "train_tokens must be 3-D (N images, T tokens, D dims), got shape (500, 16)"),
        (dict(num_queries=5), "num_queries (5) must divide the token dimension 16 (EP gives each query D / Q channels); try 4"),
        (dict(test_tokens=xte[:, :, :8]), "train_tokens and test_tokens must have the same token dimension, got 16 and 8"),
        (dict(train_tokens=xtr[:400]), "train_tokens has 400 rows but its labels have 500 entries"),
        (dict(train_tokens=lambda idx: xtr[idx][:, :, :4]), "train_tokens(indices) returned shape (100, 8, 4) for 100 indices; expected (100, 8, 16)"),
        (dict(train_tokens=np.where(np.arange(500)[:, None, None] == 7, np.nan, xtr)), "train_tokens contains NaN or infinite values"),
        (dict(train_tokens=xtr.astype(np.int32)), "train_tokens must hold floating-point tokens (float16 or float32), got int32"),
        (dict(learning_rates=(1e-3, 1e-2), val_fraction=0.0), "val_fraction=0 leaves no validation split to choose among 2 (learning rate, weight decay) pairs; pass one of each or val_fraction > 0"),
        (dict(warmup_epochs=5, epochs=3), "warmup_epochs (5) must not exceed epochs (3)"),
    ]
    for change, message in cases:
        args = dict(train_tokens=xtr, test_tokens=xte, num_queries=4, epochs=1, warmup_epochs=0,
                    batch_size=100, learning_rates=(1e-2,), weight_decays=(1e-3,), val_fraction=0.0)
        if "train_tokens" in change and callable(change["train_tokens"]):
            change = {**change}
            first = change["train_tokens"]
            shape_ok = [True]

            def source(idx, first=first, shape_ok=shape_ok):  # right shape on the probe call only
                if shape_ok[0]:
                    shape_ok[0] = False
                    return xtr[idx]
                return first(idx)
            change["train_tokens"] = source
        args.update(change)
        tr, te = args.pop("train_tokens"), args.pop("test_tokens")
        with pytest.raises(UmaeError) as err:
            attentive_probe(tr, ytr, te, yte, **args)
        assert str(err.value).startswith(message), (str(err.value), message)
