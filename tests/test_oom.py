"""Out of memory outside checkpoint loading: recognised, labelled with its stage, said in one line.

The command-layer cases (an injected out-of-memory error in each stage, through ``cli.main``) are
in the bad-input table of ``test_bad_inputs_more.py`` (group OOM); here: the recognition itself on
the real errors numpy and torch raise, the stage labels, the places that used to call an
out-of-memory error a damaged file, and one real MemoryError through the installed command.
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import ckpt_factory as CF
from test_bad_inputs import _tiny_npz
from umae_eval.errors import UmaeError
from umae_eval.oom import is_out_of_memory, memory_stage, out_of_memory_message, stage_of


def _raised(fn) -> BaseException:
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001 - the error itself is the subject
        return exc
    raise AssertionError("no error")


def test_real_numpy_and_torch_errors_are_recognised() -> None:
    numpy_oom = _raised(lambda: np.empty(1 << 62, dtype=np.uint8))
    torch_oom = _raised(lambda: torch.empty(1 << 62, dtype=torch.uint8))
    assert isinstance(numpy_oom, MemoryError) and is_out_of_memory(numpy_oom)
    assert type(torch_oom) is RuntimeError and is_out_of_memory(torch_oom)
    assert is_out_of_memory(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"))
    assert is_out_of_memory(RuntimeError("std::bad_alloc"))
    # Not out of memory: other runtime errors, and memory words in a non-runtime error
    assert not is_out_of_memory(RuntimeError("mat1 and mat2 shapes cannot be multiplied (2x3 and 4x5)"))
    assert not is_out_of_memory(ValueError("out of memory"))
    assert not is_out_of_memory(UmaeError("x"))


def test_innermost_stage_wins_and_other_errors_pass_untouched() -> None:
    with pytest.raises(MemoryError) as info:
        with memory_stage("probes"):
            with memory_stage("features"):
                raise MemoryError()
    assert stage_of(info.value) == "features"
    with pytest.raises(ValueError) as other:
        with memory_stage("features"):
            raise ValueError("x")
    assert stage_of(other.value) is None


def test_message_names_the_stage_and_the_option() -> None:
    exc = _raised(lambda: torch.empty(1 << 62, dtype=torch.uint8))
    setattr(exc, "umae_memory_stage", "features")
    line = out_of_memory_message(exc, "probe")
    assert line.startswith("umae probe: out of memory during feature extraction (DefaultCPUAllocator: "
                           "can't allocate memory: you tried to allocate 4611686018427387904 bytes")
    assert "lower --batch-size" in line and "[enforce fail" not in line and "\n" not in line
    cuda = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
    setattr(cuda, "umae_memory_stage", "training")
    assert out_of_memory_message(cuda, "train").startswith("umae train: GPU out of memory during a training step")
    assert "--micro-batch" in out_of_memory_message(cuda, "train")
    # an unlabelled error takes the command's general advice; an unknown command, a general line
    assert "--pairs" in out_of_memory_message(MemoryError(), "mask-ratio-sweep")
    assert out_of_memory_message(MemoryError(), None).endswith("free memory, or use a machine with more")


def test_a_cifar_pickle_out_of_memory_is_not_called_corrupt(monkeypatch: pytest.MonkeyPatch) -> None:
    """It used to say "corrupt or truncated CIFAR pickle; re-extract it"."""
    from umae_eval.data import cifar

    def load(self: object) -> object:
        np.empty(1 << 62, dtype=np.uint8)
        raise AssertionError("unreachable")

    monkeypatch.setattr(cifar._ArrayUnpickler, "load", load)
    with pytest.raises(MemoryError):
        cifar._unpickle(b"\x80\x04N.", "data_batch_1")


def test_a_training_checkpoint_out_of_memory_is_not_called_unreadable(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """An unreadable checkpoint makes --resume fall back to an older one; out of memory must not."""
    from trainer import checkpoint

    (tmp_path / "last.pth").write_bytes(b"x")

    def load(*args: object, **kwargs: object) -> object:
        torch.empty(1 << 62, dtype=torch.uint8)
        raise AssertionError("unreachable")

    monkeypatch.setattr(torch, "load", load)
    with pytest.raises(RuntimeError, match="can't allocate memory"):
        checkpoint.load_checkpoint(tmp_path / "last.pth")


@pytest.mark.slow
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS is Linux's")
def test_installed_command_out_of_memory_is_one_line_exit_2(tmp_path: Path) -> None:
    """A real MemoryError, not an injected one: the process may map 8 GiB, and --bootstrap 2e9 asks
    numpy for a 14.9 GiB array of resamples in the summary. Was: "internal error", exit 1."""
    CF.make_umae(tmp_path / "tiny.pth", seed=1)
    _tiny_npz(tmp_path / "tiny.npz")
    limit = 8 << 30

    def cap() -> None:
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1]), "OMP_NUM_THREADS": "1"}
    done = subprocess.run(["umae", "probe", "tiny.pth", "--data", "tiny.npz", "--methods", "mean", "--device", "cpu",
                           "--bootstrap", "2000000000", "--out", "out"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=600, preexec_fn=cap)
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert done.returncode == 2, done.stderr
    assert lines[-1].startswith("error: umae probe: out of memory during the summary's bootstrap intervals "
                                "(Unable to allocate 14.9 GiB"), done.stderr
    assert "fewer --bootstrap resamples" in lines[-1]
    assert "Traceback" not in done.stderr and "internal error" not in done.stderr
    assert not (tmp_path / "out").exists() and not any(p.name.startswith(".out") for p in tmp_path.iterdir())
