"""U-MAE under DDP: 2 gloo ranks x batch B must give the gradients of 1 process x batch 2B.

The released U-MAE code's gather keeps only the local slice of the gradient (no sum over
ranks), which divides the effective lambda by the world size; the test runs that defective
gather too and checks it does NOT match, so the comparison can fail.
"""

from __future__ import annotations

import os
import socket
import time
import traceback
from datetime import timedelta
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from trainer.distributed import (
    DistInfo,
    all_reduce_mean,
    cleanup_distributed,
    gather_for,
    gather_with_grad,
    is_distributed,
    is_main_process,
    setup_distributed,
)
from trainer.losses import loss_terms
from trainer.model import build_model
from trainer.presets import get_preset
from umae_eval.errors import UmaeError

WORLD = 2
B_LOCAL = 3
LAM = 0.5  # large, so the uniformity gradient is a visible share of the total
CASES = (("code", "correct"), ("paper", "correct"), ("code", "defective"), ("paper", "defective"),
         ("released", "library"))


def _defective_gather(x: torch.Tensor) -> torch.Tensor:
    """The released code's gather: all_gather without grad, local slice re-inserted with grad."""
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x
    return torch.cat(parts, dim=0)


def _setup():
    torch.manual_seed(0)
    preset = get_preset("tiny-test", lam=LAM)
    model = build_model(preset)
    n = WORLD * B_LOCAL
    gen = torch.Generator().manual_seed(1)
    imgs = torch.randn(n, 3, preset.img_size, preset.img_size, generator=gen)
    noise = torch.rand(n, preset.num_patches, generator=gen)
    return preset, model.state_dict(), imgs, noise


def _grads(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: p.grad.detach().clone() for k, p in model.named_parameters() if p.grad is not None}


def _worker(rank: int, port: int, out_dir: str) -> None:
    try:
        torch.set_num_threads(1)
        info = None
        if torch.cuda.is_available():  # setup_distributed would pick NCCL: join a CPU group by hand
            dist.init_process_group(
                "gloo",
                init_method=f"tcp://127.0.0.1:{port}",
                rank=rank,
                world_size=WORLD,
                timeout=timedelta(seconds=60),
            )
        else:  # the torchrun path: env:// with RANK, WORLD_SIZE, LOCAL_RANK, MASTER_*
            os.environ.update(
                RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
            )
            info = setup_distributed(timeout_s=60)
        from torch.nn.parallel import DistributedDataParallel as DDP

        preset, state, imgs, noise = _setup()
        sl = slice(rank * B_LOCAL, (rank + 1) * B_LOCAL)
        results: dict = {}
        for form, which in CASES:
            model = build_model(preset)
            model.load_state_dict(state)
            ddp = DDP(model)
            gather = {"correct": gather_with_grad, "defective": _defective_gather,
                      "library": gather_for(form)}[which]
            terms = loss_terms(ddp, imgs[sl], preset.mask_ratio, LAM, form, gather=gather, noise=noise[sl])
            terms["loss"].backward()  # DDP all-reduces and averages the parameter gradients
            results[(form, which)] = {"grads": _grads(model), "loss_unif": terms["loss_unif"].detach()}
        # Uneven row counts: rank 0 has 3 rows, rank 1 has 2; L = sum_i w_i . out_i on every rank.
        x = torch.full((3 - rank, 2), float(rank), requires_grad=True)
        out = gather_with_grad(x)
        w = torch.arange(out.numel(), dtype=torch.float32).reshape(out.shape)
        (out * w).sum().backward()
        results["uneven"] = {"out": out.detach(), "grad": x.grad.detach(), "w": w}
        results["info"] = info
        results["mean"] = all_reduce_mean(torch.tensor([float(rank), 2.0 * rank]))
        results["is_main"] = is_main_process()
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
        cleanup_distributed()
        results["still_initialised"] = dist.is_initialized()
        torch.save(results, Path(out_dir) / f"rank{rank}.pt")
    except BaseException:
        (Path(out_dir) / f"rank{rank}.err").write_text(traceback.format_exc())
        raise


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory: pytest.TempPathFactory) -> list[dict]:
    out_dir = tmp_path_factory.mktemp("ddp")
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    ctx = mp.spawn(_worker, args=(_free_port(), str(out_dir)), nprocs=WORLD, join=False)
    deadline = time.monotonic() + 150
    try:
        while not ctx.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail("DDP workers did not finish within 150 s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
    errs = [e.read_text() for e in out_dir.glob("*.err")]
    assert not errs, "\n".join(errs)
    return [torch.load(out_dir / f"rank{r}.pt", weights_only=False) for r in range(WORLD)]


def _single_process(form: str, lam: float = LAM) -> dict:
    preset, state, imgs, noise = _setup()
    model = build_model(preset)
    model.load_state_dict(state)
    terms = loss_terms(model, imgs, preset.mask_ratio, lam, form, gather=None, noise=noise)
    terms["loss"].backward()
    return {"grads": _grads(model), "loss_unif": terms["loss_unif"].detach()}


def _max_rel_diff(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> float:
    assert a.keys() == b.keys()
    return max(float((a[k] - b[k]).abs().max() / (b[k].abs().max() + 1e-12)) for k in a)


@pytest.mark.parametrize("form", ["code", "paper"])
def test_two_ranks_match_one_process_with_double_batch(ddp_results: list[dict], form: str) -> None:
    ref = _single_process(form)
    for rank in range(WORLD):
        got = ddp_results[rank][(form, "correct")]
        # Every rank sees the global batch: the same uniformity value as one process with 2B.
        torch.testing.assert_close(got["loss_unif"], ref["loss_unif"], rtol=1e-5, atol=1e-7)
        assert got["grads"].keys() == ref["grads"].keys()
        for name, want in ref["grads"].items():
            # float32 sums in a different order: tolerance relative to the tensor's scale.
            scale = float(want.abs().max()) + 1e-12
            torch.testing.assert_close(got["grads"][name], want, rtol=1e-4, atol=1e-5 * scale, msg=name)


@pytest.mark.parametrize("form", ["code", "paper"])
def test_defective_gather_does_not_match(ddp_results: list[dict], form: str) -> None:
    ref = _single_process(form)
    good = _max_rel_diff(ddp_results[0][(form, "correct")]["grads"], ref["grads"])
    bad = _max_rel_diff(ddp_results[0][(form, "defective")]["grads"], ref["grads"])
    assert good < 1e-4
    assert bad > 1e-2, f"defective gather unexpectedly matched (max rel diff {bad:.2e})"
    # Same forward value: the defect is in the gradient only.
    torch.testing.assert_close(ddp_results[0][(form, "defective")]["loss_unif"], ref["loss_unif"])


def test_gather_uneven_rows_forward_and_backward(ddp_results: list[dict]) -> None:
    for rank in range(WORLD):
        r = ddp_results[rank]["uneven"]
        expected = torch.tensor([[0.0, 0.0]] * 3 + [[1.0, 1.0]] * 2)
        torch.testing.assert_close(r["out"], expected)
        start = 0 if rank == 0 else 3
        rows = 3 - rank
        # Both ranks compute the same L, so dL/dx_r = W * w[rows of r].
        torch.testing.assert_close(r["grad"], WORLD * r["w"][start : start + rows])


def test_gather_is_identity_without_process_group() -> None:
    assert not is_distributed()
    x = torch.randn(4, 3, requires_grad=True)
    assert gather_with_grad(x) is x


def test_process_group_helpers_on_each_rank(ddp_results: list[dict]) -> None:
    for rank in range(WORLD):
        r = ddp_results[rank]
        torch.testing.assert_close(r["mean"], torch.tensor([0.5, 1.0]))
        assert r["is_main"] == (rank == 0)
        assert r["still_initialised"] is False
        if r["info"] is not None:
            info = r["info"]
            assert (info.rank, info.world_size, info.local_rank, info.is_main) == (rank, WORLD, rank, rank == 0)
            assert info.device == torch.device("cpu")


def test_setup_distributed_single_process(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("RANK", "WORLD_SIZE", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)
    info = setup_distributed()
    assert isinstance(info, DistInfo)
    assert (info.rank, info.world_size, info.local_rank, info.is_main) == (0, 1, 0, True)
    assert not dist.is_initialized() and is_main_process()
    t = torch.tensor([1.0, 2.0])
    assert all_reduce_mean(t) is t
    cleanup_distributed()  # no-op without a group
    monkeypatch.setenv("WORLD_SIZE", "two")
    with pytest.raises(UmaeError, match="WORLD_SIZE"):
        setup_distributed()


def test_released_form_under_ddp_acts_as_lambda_over_world_size(ddp_results: list[dict]) -> None:
    """``--unif-form released`` on 2 ranks = the released term with lambda / 2 on one process."""
    from test_unif_released import released_reference

    preset, state, imgs, noise = _setup()
    model = build_model(preset)
    model.load_state_dict(state)
    total, unif = released_reference(model, imgs, preset.mask_ratio, LAM / WORLD, noise)
    total.backward()
    want = _grads(model)
    for rank in range(WORLD):
        got = ddp_results[rank][("released", "library")]
        torch.testing.assert_close(got["loss_unif"], unif.detach(), rtol=1e-5, atol=1e-7)
        for name, ref in want.items():
            scale = float(ref.abs().max()) + 1e-12
            torch.testing.assert_close(got["grads"][name], ref, rtol=1e-4, atol=1e-5 * scale, msg=name)
    # ... and not the full lambda: the comparison can fail.
    full = _single_process("released")
    assert _max_rel_diff(ddp_results[0][("released", "library")]["grads"], full["grads"]) > 1e-2
