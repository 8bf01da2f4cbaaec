"""`umae finetune` under DDP (2 gloo processes, as torchrun sets them up) equals one process with
the doubled batch: same images per step (the per-item transforms depend on the image, not the
rank), the per-rank mean losses averaged by DDP give the whole batch's gradient."""

from __future__ import annotations

import os
import socket
import time
import traceback
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from trainer.finetune import FinetuneConfig, finetune_run

from ckpt_factory import make_official_encoder
from toy_images import toy_npz

WORLD = 2
# mixup and drop path draw per rank, so they are off; RandAugment, RandomErasing, RRC stay on.
_KW = dict(preset="cpu-demo", epochs=2, batch_size=16, workers=0, seed=1, eval_every=0,
           overrides={"mixup": 0.0, "cutmix": 0.0, "drop_path": 0.0})


def _worker(rank: int, port: int, enc: str, data: str, out: str) -> None:
    try:
        torch.set_num_threads(1)
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(WORLD),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        finetune_run(FinetuneConfig(checkpoint=enc, data=data, out=out, device="cpu", **_KW))  # type: ignore[arg-type]
    except BaseException:
        (Path(out).parent / f"rank{rank}.err").write_text(traceback.format_exc())
        raise


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.slow
def test_two_gloo_processes_equal_one_with_the_doubled_batch(tmp_path: Path) -> None:
    if torch.cuda.is_available():
        pytest.skip("setup_distributed picks NCCL where CUDA exists; this test checks the CPU (gloo) path")
    enc, data = tmp_path / "enc.pth", toy_npz(tmp_path / "toy.npz", seed=0)
    make_official_encoder(enc, embed_dim=64, num_heads=1, depth=3, patch_size=8)
    single = finetune_run(FinetuneConfig(checkpoint=str(enc), data=str(data), out=tmp_path / "one", device="cpu",
                                         **_KW))  # type: ignore[arg-type]
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    ctx = mp.spawn(_worker, args=(_free_port(), str(enc), str(data), str(tmp_path / "two")), nprocs=WORLD,
                   join=False)
    deadline = time.monotonic() + 300
    try:
        while not ctx.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail("DDP workers did not finish within 300 s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
    errs = [e.read_text() for e in tmp_path.glob("rank*.err")]
    assert not errs, "\n".join(errs)
    a = torch.load(single.checkpoint, weights_only=True)
    b = torch.load(tmp_path / "two" / "last.pth", weights_only=True)
    assert a["step"] == b["step"] == 8
    for k in a["model"]:
        torch.testing.assert_close(b["model"][k], a["model"][k], rtol=1e-4, atol=1e-5, msg=k)
    moved = max(float((a["model"][k] - torch.load(enc, weights_only=True)["model"][k]).abs().max())
                for k in ("blocks.0.attn.qkv.weight", "patch_embed.proj.weight"))
    assert moved > 1e-4  # the weights did train, so equality is not trivial
