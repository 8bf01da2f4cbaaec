"""More bad inputs (issue 23): values read from files and options that used to reach int(),
float() or torch unchecked, and sizes that used to be allocated before they were checked.

Same contract as ``test_bad_inputs.py``: exit code 2, the error as one line on stderr (the last
one; a checkpoint's one-line summary may come before it) naming the file or option, no
"internal error", no traceback, and nothing left behind in the working folder.
"""

from __future__ import annotations

import io
import json
import os
import struct
import tarfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import ckpt_factory as CF
from test_bad_inputs import _snapshot, _tiny_npz
from umae_eval.cli import main


@dataclass(frozen=True)
class Case:
    """One bad input. ``argv`` may use {ckpt}, {npz}, {tmp}; ``setup(tmp)`` prepares files."""

    id: str
    argv: tuple[str, ...]
    needle: str
    setup: Callable[[Path], None] | None = None
    env: tuple[tuple[str, str], ...] = ()
    #: (module, attribute, value) set for the case: bounds made small so that a test need not
    #: write a gigabyte to show that the bound holds
    patches: tuple[tuple[str, str, object], ...] = ()
    #: a training run that failed after it started keeps its run folder (config.json, no
    #: checkpoint), which the line must name with how to resume; the folder is checked, then removed
    keeps_run: str | None = None


@pytest.fixture(scope="module")
def assets(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("assets")
    ckpt = root / "tiny.pth"
    CF.make_umae(ckpt, seed=1)
    npz = root / "tiny.npz"
    _tiny_npz(npz)
    return {"ckpt": ckpt, "npz": npz}


PROBE = ("probe", "{ckpt}", "--methods", "mean", "--device", "cpu")
TRAIN = ("train", "--data", "demo", "--preset", "tiny-test", "--device", "cpu", "--out", "{tmp}/r")

# ------------------------------------------------------------------ seeds and the environment

SEEDS = [
    Case("probe-seed-negative", (*PROBE, "--data", "{npz}", "--seed", "-1"), "--seed"),
    Case("probe-seed-2-64", (*PROBE, "--data", "{npz}", "--seed", str(2**64)), "--seed"),
    Case("train-seed-negative", (*TRAIN, "--seed", "-5"), "--seed"),
    Case("train-seed-2-70", (*TRAIN, "--seed", str(2**70)), "--seed"),
    Case("sweep-seed-negative", ("mask-ratio-sweep", "--data", "{npz}", "--seed", "-1"), "--seed"),
    Case("collapse-seed-2-33", ("collapse-report", "{ckpt}", "--data", "{npz}", "--seed", str(2**33)), "--seed"),
    Case("compare-seed-negative", ("compare", "{ckpt}", "--data", "{npz}", "--seed", "-2"), "--seed"),
]


def _image_folder(work: Path, name: str = "folder", *, class_dir: bytes = b"cat", file_name: bytes = b"0.png",
                  first: bytes | None = None) -> None:
    """train/ and test/ with classes ``class_dir`` and 'dog', three 32 px PNGs each; byte names
    so that non-UTF-8 names can be made; ``first`` replaces the bytes of the first train image."""
    rng = np.random.default_rng(0)
    for split in (b"train", b"test"):
        for cls in (class_dir, b"dog"):
            d = os.path.join(os.fsencode(work), name.encode(), split, cls)
            os.makedirs(d)
            for i in range(3):
                fname = file_name if i == 0 else b"%d.png" % i
                path = os.path.join(d, fname)
                if first is not None and split == b"train" and cls == class_dir and i == 0:
                    with open(path, "wb") as fh:
                        fh.write(first)
                    continue
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
                with open(path, "wb") as fh:
                    fh.write(buf.getvalue())


def _bomb_png() -> bytes:
    """A valid 32 px PNG whose header claims 20000 x 20000 pixels (PIL's bomb limit is 179 M)."""
    buf = io.BytesIO()
    Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(buf, "PNG")
    b = bytearray(buf.getvalue())
    b[16:24] = struct.pack(">II", 20000, 20000)  # IHDR width, height
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])) & 0xFFFFFFFF)
    return bytes(b)


def _wds(work: Path, labels: list[bytes], classes: bytes | None = None, key: bytes = b"s") -> None:
    rng = np.random.default_rng(0)
    (work / "wds").mkdir()
    for split, labs in (("train", labels), ("test", [b"0", b"1"])):
        with tarfile.open(work / "wds" / f"{split}-000000.tar", "w") as tf:
            for i, lab in enumerate(labs):
                buf = io.BytesIO()
                Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
                for ext, data in (("png", buf.getvalue()), ("cls", lab)):
                    info = tarfile.TarInfo(os.fsdecode(key + b"%d." % i) + ext)
                    info.size = len(data)
                    tf.addfile(info, io.BytesIO(data))
    if classes is not None:
        (work / "wds" / "classes.txt").write_bytes(classes)


WDS = "{tmp}/wds/train-{{000000..000000}}.tar"

DATA = [
    Case("folder-class-not-utf8", (*PROBE, "--data", "{tmp}/folder"), "cat\\xff",
         setup=lambda w: _image_folder(w, class_dir=b"cat\xff")),
    Case("folder-file-not-utf8", (*PROBE, "--data", "{tmp}/folder"), "\\xfe0.png",
         setup=lambda w: _image_folder(w, file_name=b"\xfe0.png")),
    Case("folder-bomb-first-image", (*PROBE, "--data", "{tmp}/folder"), "train/cat/0.png",
         setup=lambda w: _image_folder(w, first=_bomb_png())),
    Case("folder-bomb-first-image-lazy", (*PROBE, "--data", "{tmp}/folder", "--data-mode", "lazy"),
         "train/cat/0.png", setup=lambda w: _image_folder(w, first=_bomb_png())),
    Case("wds-label-huge", (*PROBE, "--data", WDS), "999999999999",
         setup=lambda w: _wds(w, [b"999999999999", b"0"])),
    Case("wds-label-beyond-classes", (*PROBE, "--data", WDS), "classes.txt",
         setup=lambda w: _wds(w, [b"5", b"0"], classes=b"a\nb\n")),
    Case("wds-classes-not-utf8", (*PROBE, "--data", WDS), "classes.txt",
         setup=lambda w: _wds(w, [b"1", b"0"], classes=b"caf\xe9\nb\n")),
    Case("wds-key-not-utf8", (*PROBE, "--data", WDS), "\\xff",
         setup=lambda w: _wds(w, [b"1", b"0"], key=b"s\xff")),
    Case("memory-limit-nan", (*PROBE, "--data", "{tmp}/folder"), "UMAE_MEMORY_LIMIT_GB",
         setup=_image_folder, env=(("UMAE_MEMORY_LIMIT_GB", "nan"),)),
    Case("memory-limit-negative", (*PROBE, "--data", "{tmp}/folder"), "UMAE_MEMORY_LIMIT_GB",
         setup=_image_folder, env=(("UMAE_MEMORY_LIMIT_GB", "-1"),)),
    Case("memory-limit-text", (*PROBE, "--data", "{tmp}/folder"), "UMAE_MEMORY_LIMIT_GB",
         setup=_image_folder, env=(("UMAE_MEMORY_LIMIT_GB", "lots"),)),
]


# ------------------------------------------------------------ Hugging Face config.json fields

def _hf_folder(**config_changes: object) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        pytest.importorskip("transformers")
        from hf_factory import hf_pretraining

        hf_pretraining(seed=0).save_pretrained(work / "hf")
        config = json.loads((work / "hf" / "config.json").read_text())
        config.update(config_changes)
        (work / "hf" / "config.json").write_text(json.dumps(config))
    return setup


HF = [
    Case(f"hf-config-{name}", (*PROBE[:1], "{tmp}/hf", *PROBE[2:], "--data", "{npz}"), field,
         setup=_hf_folder(**{field: value}))
    for name, field, value in [
        ("heads-text", "num_attention_heads", "twelve"),
        ("heads-zero", "num_attention_heads", 0),
        ("heads-float", "num_attention_heads", 2.5),
        ("heads-true", "num_attention_heads", True),
        ("hidden-text", "hidden_size", "64"),
        ("hidden-zero", "hidden_size", 0),
        ("eps-text", "layer_norm_eps", "tiny"),
        ("eps-zero", "layer_norm_eps", 0),
        ("eps-list", "layer_norm_eps", [1e-12]),
        ("qkv-bias-text", "qkv_bias", "false"),
        ("decoder-heads-text", "decoder_num_attention_heads", "two"),
        ("decoder-heads-zero", "decoder_num_attention_heads", 0),
        ("norm-pix-loss-text", "norm_pix_loss", "no"),
    ]
]
def _hf_shard_index(shard: str) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        _hf_folder()(work)
        (work / "outside.safetensors").write_bytes((work / "hf" / "model.safetensors").read_bytes())
        (work / "hf" / "model.safetensors").unlink()
        target = shard.format(tmp=work)
        (work / "hf" / "model.safetensors.index.json").write_text(json.dumps(
            {"metadata": {}, "weight_map": {"vit.embeddings.cls_token": target}}))
    return setup


for _name, _shard in [("absolute", "{tmp}/outside.safetensors"), ("dotdot", "../outside.safetensors")]:
    HF.append(Case(f"hf-shard-index-{_name}-path", (*PROBE[:1], "{tmp}/hf", *PROBE[2:], "--data", "{npz}"),
                   "is not a file name inside", setup=_hf_shard_index(_shard)))

HF.append(Case("convert-hf-config-heads-zero", ("convert", "{tmp}/hf", "{tmp}/out.pth", "--to", "official"),
               "num_attention_heads", setup=_hf_folder(num_attention_heads=0)))

# ------------------------------------------------ sizes checked before anything is allocated

def _fifo(work: Path) -> None:
    os.mkfifo(work / "fifo")


def _targz_with_member(size: int) -> Callable[[Path], None]:
    """An ImageFolder .tar.gz whose first train image member is ``size`` zero bytes (it compresses
    about 1000:1)."""
    def setup(work: Path) -> None:
        rng = np.random.default_rng(0)
        with tarfile.open(work / "data.tar.gz", "w:gz") as tf:
            for split in ("train", "test"):
                for cls in ("a", "b"):
                    for i in range(2):
                        if split == "train" and cls == "a" and i == 0:
                            data = bytes(size)
                        else:
                            buf = io.BytesIO()
                            Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(buf, "PNG")
                            data = buf.getvalue()
                        info = tarfile.TarInfo(f"{split}/{cls}/{i}.png")
                        info.size = len(data)
                        tf.addfile(info, io.BytesIO(data))
    return setup


SIZES = [
    Case("set-embed-dim-65536", (*TRAIN, "--set", "embed_dim=65536"), "embed_dim 65536"),
    Case("set-depth-huge", (*TRAIN, "--set", "depth=1000000"), "depth 1000000"),
    Case("set-decoder-embed-dim-huge", (*TRAIN, "--set", "decoder_embed_dim=131072"), "decoder_embed_dim 131072"),
    Case("set-mlp-ratio-huge", (*TRAIN, "--set", "mlp_ratio=1e7"), "mlp_ratio"),
    Case("train-mask-ratio-0", (*TRAIN, "--mask-ratio", "0"), "mask_ratio 0"),
    Case("set-mask-ratio-0", (*TRAIN, "--set", "mask_ratio=0"), "mask_ratio 0"),
    Case("probe-data-dev-zero", (*PROBE, "--data", "/dev/zero"), "/dev/zero: not a regular file"),
    Case("train-data-dev-zero", ("train", "--data", "/dev/zero", "--preset", "tiny-test", "--device", "cpu",
                                 "--out", "{tmp}/r"), "/dev/zero: not a regular file"),
    Case("sweep-data-dev-zero", ("mask-ratio-sweep", "--data", "/dev/zero"), "/dev/zero: not a regular file"),
    Case("probe-data-fifo", (*PROBE, "--data", "{tmp}/fifo"), "fifo: not a regular file", setup=_fifo),
    Case("targz-member-over-bound-memory", (*PROBE, "--data", "{tmp}/data.tar.gz", "--data-mode", "memory"),
         "train/a/0.png is 2,097,152 bytes", setup=_targz_with_member(2 << 20),
         patches=(("umae_eval.data.folder", "MAX_MEMBER_BYTES", 1 << 20),)),
    Case("targz-bomb-lazy", (*PROBE, "--data", "{tmp}/data.tar.gz", "--data-mode", "lazy"),
         "decompression bomb", setup=_targz_with_member(8 << 20),
         patches=(("umae_eval.data.tarindex", "MIN_DECOMPRESSED_ALLOWANCE", 1 << 20),)),
    Case("targz-member-over-bound-lazy", (*PROBE, "--data", "{tmp}/data.tar.gz", "--data-mode", "lazy"),
         "train/a/0.png is 2,097,152 bytes", setup=_targz_with_member(2 << 20),
         patches=(("umae_eval.data.tarindex", "MAX_MEMBER_BYTES", 1 << 20),)),
]

# -------------------------------------- merging into an existing --out: checked before any move

def _out_with(kind: str, name: str) -> Callable[[Path], None]:
    def setup(work: Path) -> None:
        (work / "out").mkdir()
        (work / "out" / "notes.txt").write_text("the user's own file\n")
        if kind == "folder":
            (work / "out" / name).mkdir()
            (work / "out" / name / "keep.txt").write_text("x")
        elif kind == "symlink":
            (work / "elsewhere").mkdir()
            (work / "out" / name).symlink_to(work / "elsewhere")
        else:
            (work / "out" / name).write_text("a file where a folder goes")
    return setup


def _solo_learn_without_args(work: Path) -> None:
    import torch
    from thirdparty_models import TimmNamedViT

    vit = TimmNamedViT(dim=192, heads=12, seed=6)  # solo-learn's vit_tiny: 12 heads, not D/64 = 3
    torch.save({"epoch": 9, "state_dict": {f"backbone.{k}": v for k, v in vit.state_dict().items()}},
               work / "mae-ep=9.ckpt")


def _torch_load_out_of_memory(*args: object, **kwargs: object) -> object:
    raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: "
                       "you tried to allocate 54760833024 bytes")


MERGE = [
    Case("sweep-pairs-1", ("mask-ratio-sweep", "--data", "{npz}", "--pairs", "1"), "--pairs"),
    Case("probe-checkpoint-out-of-memory", (*PROBE, "--data", "{npz}"), "not enough memory to load it",
         patches=(("torch", "load", _torch_load_out_of_memory),)),
    Case("probe-solo-learn-without-args-json", (*PROBE[:1], "{tmp}/mae-ep=9.ckpt", *PROBE[2:], "--data", "{npz}"),
         "pass --num-heads N", setup=_solo_learn_without_args),
    Case("demo-embed-bogus", ("demo", "--embed", "bogus", "--out", "{tmp}/d"), "--embed"),
    Case("convert-hf-decoder-heads-not-dividing", ("convert", "{ckpt}", "{tmp}/hfout", "--to", "hf",
                                                   "--decoder-num-heads", "7"), "--decoder-num-heads 7"),
    Case("probe-out-report-html-is-folder", (*PROBE, "--data", "{npz}", "--out", "{tmp}/out"),
         "out/report.html is a folder", setup=_out_with("folder", "report.html")),
    Case("probe-out-figures-is-symlink", (*PROBE, "--data", "{npz}", "--out", "{tmp}/out"),
         "out/figures is a symlink", setup=_out_with("symlink", "figures")),
    Case("probe-out-figures-is-file", (*PROBE, "--data", "{npz}", "--out", "{tmp}/out"),
         "out/figures is a file", setup=_out_with("file", "figures")),
    Case("compare-out-results-json-is-folder",
         ("compare", "{ckpt}", "{ckpt}", "--data", "{npz}", "--methods", "mean", "--device", "cpu", "--out", "{tmp}/out"),
         "out/results.json is a folder", setup=_out_with("folder", "results.json")),
]

# ------------------------------------ out of memory after loading: one line naming what to lower

def _numpy_oom(*args: object, **kwargs: object) -> object:
    np.empty(1 << 62, dtype=np.uint8)  # numpy's own MemoryError (4 EiB: refused on any machine)
    raise AssertionError("unreachable")


def _torch_oom(*args: object, **kwargs: object) -> object:
    import torch

    torch.empty(1 << 62, dtype=torch.uint8)  # torch's CPU allocator's own RuntimeError
    raise AssertionError("unreachable")


def _cuda_oom(*args: object, **kwargs: object) -> object:
    import torch

    raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB. GPU 0 has a total "
                                 "capacity of 79.11 GiB of which 3.12 GiB is free.")


COLLAPSE = ("collapse-report", "{ckpt}", "--device", "cpu", "--data", "{npz}")
OOM = [
    Case("probe-features-out-of-memory", (*PROBE, "--data", "{npz}"),
         "out of memory during feature extraction (DefaultCPUAllocator: can't allocate memory",
         patches=(("umae_eval.pipeline.sources", "compute_features", _torch_oom),)),
    Case("probe-features-cuda-out-of-memory", (*PROBE, "--data", "{npz}"), "lower --batch-size",
         patches=(("umae_eval.pipeline.sources", "compute_features", _cuda_oom),)),
    Case("probe-knn-out-of-memory", (*PROBE, "--data", "{npz}"),
         "during the probes (linear, kNN, mean classifier) (Unable to allocate 4.00 EiB",
         patches=(("umae_eval.pipeline.run", "run_probes", _numpy_oom),)),
    Case("probe-layers-out-of-memory", (*PROBE, "--data", "{npz}", "--layers", "0,1"), "fewer blocks with --layers",
         patches=(("umae_eval.pipeline.run", "sweep_blocks", _numpy_oom),)),
    Case("probe-data-out-of-memory", (*PROBE, "--data", "{npz}"), "--data-mode lazy",
         patches=(("umae_eval.data.choose", "open_dataset", _numpy_oom),)),
    Case("collapse-tsne-out-of-memory", (*COLLAPSE, "--embed", "tsne"), "t-SNE map",
         patches=(("umae_eval.pipeline.run", "feature_maps", _numpy_oom),)),
    Case("collapse-masked-views-out-of-memory", (*COLLAPSE, "--embed", "none"), "--max-views N",
         patches=(("umae_eval.pipeline.run", "masked_view_geometry", _torch_oom),)),
    Case("collapse-spectrum-out-of-memory", (*COLLAPSE, "--embed", "none"), "singular spectrum",
         patches=(("umae_eval.pipeline.run", "spectrum_stats", _numpy_oom),)),
    Case("sweep-out-of-memory", ("mask-ratio-sweep", "--data", "{npz}", "--pairs", "4"), "--pairs",
         patches=(("umae_eval.maskratio.sweep", "run_sweep", _numpy_oom),)),
    Case("train-step-out-of-memory", (*TRAIN, "--epochs", "1", "--max-train-images", "32"), "--micro-batch",
         patches=(("trainer.loop", "accumulate_gradients", _cuda_oom),), keeps_run="r"),
    Case("train-eval-out-of-memory", (*TRAIN, "--epochs", "1", "--max-train-images", "32"), "--eval-images",
         patches=(("trainer.online_eval.OnlineEvaluator", "evaluate", _numpy_oom),), keeps_run="r"),
    Case("reconstruct-out-of-memory", ("reconstruct", "{ckpt}", "--data", "{npz}", "--decoder-num-heads", "2", "--out", "{tmp}/rec"),
         "--stat-images", patches=(("umae_eval.visual.run", "visualise", _torch_oom),)),
]

def _overflowing_checkpoint(work: Path) -> None:
    """Finite weights (the load-time check passes) whose activations overflow float32 to inf/NaN."""
    import torch

    CF.make_umae(work / "huge.pth", seed=1)
    ckpt = torch.load(work / "huge.pth", weights_only=True)
    ckpt["model"]["patch_embed.proj.weight"] *= 1e37
    torch.save(ckpt, work / "huge.pth")


WEAK = [Case("probe-features-overflow-names-the-checkpoint", ("probe", "{tmp}/huge.pth", *PROBE[2:], "--data", "{npz}"),
                "huge.pth: its features of the train images hold NaN or infinity", setup=_overflowing_checkpoint)]

CASES = SEEDS + DATA + HF + SIZES + MERGE + OOM + WEAK


@pytest.mark.parametrize("case", [pytest.param(c, id=c.id) for c in CASES])
def test_bad_value_ends_in_one_line_and_exit_2(
    case: Case, assets: dict[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    work = tmp_path / "work"
    work.mkdir()
    monkeypatch.chdir(work)
    for key, value in case.env:
        monkeypatch.setenv(key, value)
    for module, attr, value in case.patches:
        monkeypatch.setattr(module + "." + attr, value)
    if case.setup is not None:
        case.setup(work)
    before = _snapshot(work)
    argv = [a.format(ckpt=assets["ckpt"], npz=assets["npz"], tmp=work) for a in case.argv]
    code = main(argv)
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert code == 2, err
    assert "internal error" not in err and "Traceback" not in err, err
    assert [line for line in lines if line.startswith("error:")] == lines[-1:], err
    assert case.needle in lines[-1], err
    if case.keeps_run is not None:
        import shutil

        run = work / case.keeps_run
        assert sorted(p.name for p in run.iterdir()) == ["config.json"], "a run folder with more than its config"
        assert f"{run} can be removed, or resumed from the start with --resume auto" in lines[-1], err
        shutil.rmtree(run)
    assert _snapshot(work) == before, "files left behind"
    assert ".partial-" not in err, err  # the hidden stage is never shown
    from umae_eval.cache import cache_root

    tars = cache_root() / "tars"
    assert not tars.is_dir() or [p.name for p in tars.iterdir() if p.name.startswith(".")] == [], \
        "a half-decompressed archive left in the cache"


def test_memory_limit_inf_means_no_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """'inf' used to reach int(inf) (OverflowError, exit 1); it now means: never go lazy."""
    import sys

    from umae_eval.data.choose import memory_limit

    monkeypatch.setenv("UMAE_MEMORY_LIMIT_GB", "inf")
    assert memory_limit() == sys.maxsize
    monkeypatch.setenv("UMAE_MEMORY_LIMIT_GB", "0.5")
    assert memory_limit() == 1 << 29


def test_case_count() -> None:
    """The issue's "Done when": the bad-input suite holds >= 100 cases in all."""
    import test_bad_inputs

    assert len({c.id for c in CASES}) == len(CASES)
    assert len(CASES) + len(test_bad_inputs.CASES) >= 100


def test_a_second_train_on_a_locked_run_folder_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Two ``umae train --resume auto`` on one run folder used to both append epochs to
    metrics.jsonl. The folder is flock'ed by the run; a second one (here: this test holding the
    lock, as another process would) is refused in one line and writes nothing."""
    import fcntl

    run = tmp_path / "run"
    run.mkdir()
    fd = os.open(run, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code = main(["train", "--data", "demo", "--preset", "tiny-test", "--device", "cpu", "--epochs", "1",
                     "--max-train-images", "64", "--eval-every", "0", "--out", str(run), "--resume", "auto"])
        err = capsys.readouterr().err
        assert code == 2, err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and "another umae process is training in this run folder" in lines[0], err
        assert list(run.iterdir()) == []
    finally:
        os.close(fd)
    # once the other process is gone, the same command runs, and leaves no lock behind
    assert main(["train", "--data", "demo", "--preset", "tiny-test", "--device", "cpu", "--epochs", "1",
                 "--max-train-images", "64", "--eval-images", "32", "--knn-train-images", "64", "--eval-every", "0",
                 "--out", str(run), "--resume", "auto"]) == 0
    fd = os.open(run, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free again
    finally:
        os.close(fd)


def test_a_new_run_takes_the_lock_before_config_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A fresh run into a folder another run has just made (and locked) stops before writing."""
    import fcntl

    run = tmp_path / "run"
    run.mkdir()
    fd = os.open(run, os.O_RDONLY | os.O_DIRECTORY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        code = main(["train", "--data", "demo", "--preset", "tiny-test", "--device", "cpu", "--epochs", "1",
                     "--max-train-images", "64", "--out", str(run)])
    finally:
        os.close(fd)
    err = capsys.readouterr().err
    assert code == 2 and "another umae process" in err, err
    assert list(run.iterdir()) == []


@pytest.mark.parametrize("mode", ["memory", "lazy"])
def test_feature_cache_fallback_is_printed_and_recorded(mode: str, assets: dict[str, Path], tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 23 (weak): the fallback warning of an unwritable feature cache was built and dropped
    on the lazy path, and in results.json on both."""
    (tmp_path / "afile").write_text("a file where the cache folder would go")
    _image_folder(tmp_path)
    monkeypatch.setenv("UMAE_CACHE_DIR", str(tmp_path / "afile" / "cache"))
    out = tmp_path / "out"
    data = ["--data", str(tmp_path / "folder"), "--data-mode", "lazy", "--workers", "0"] if mode == "lazy" else \
        ["--data", str(assets["npz"])]
    code = main(["probe", str(assets["ckpt"]), *PROBE[2:], *data, "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    warned = [line for line in err.splitlines() if line.startswith("warning: feature cache not written")]
    assert len(warned) == 1, err
    assert "set UMAE_CACHE_DIR to a writable folder" in warned[0] and "free space" not in warned[0]
    notes = json.loads((out / "results.json").read_text())["settings"]["data"]["notes"]
    assert any(n.startswith("feature cache not written") for n in notes), notes


@pytest.mark.parametrize("mode", ["memory", "lazy"])
def test_a_tar_replaced_by_one_of_equal_size_and_mtime_is_decoded_again(mode: str, tmp_path: Path) -> None:
    """Issue 23 (weak): the decode cache and tar index were keyed by size and mtime only."""
    from umae_eval.data.choose import open_dataset

    def pack(path: Path, value: int) -> None:
        with tarfile.open(path, "w") as tf:
            for split in ("train", "test"):
                for cls in ("a", "b"):
                    for i in range(2):
                        buf = io.BytesIO()
                        Image.fromarray(np.full((8, 8, 3), value + i, np.uint8)).save(buf, "BMP")  # fixed size
                        info = tarfile.TarInfo(f"{split}/{cls}/{i}.bmp")
                        info.size, info.mtime = len(buf.getvalue()), 0
                        tf.addfile(info, io.BytesIO(buf.getvalue()))

    data = tmp_path / "data.tar"
    pack(data, 10)
    def train_images() -> np.ndarray:
        opened = open_dataset(data, mode=mode)
        if mode == "memory":
            return np.asarray(opened.x_train)
        from umae_eval.data.lazy import LazyArray

        return np.asarray(LazyArray(opened.train, 8, "fit", str(data))[np.arange(len(opened.train))])

    first = train_images()
    st = data.stat()
    replacement = tmp_path / "new.tar"
    pack(replacement, 200)
    assert replacement.stat().st_size == st.st_size
    os.replace(replacement, data)
    os.utime(data, ns=(st.st_atime_ns, st.st_mtime_ns))
    again = train_images()
    assert first.max() <= 11 and again.min() >= 200


def test_hf_config_contradicting_the_weights_is_reported(assets: dict[str, Path], tmp_path: Path,
                                                         monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    """Issue 23 (weak): a config.json saying patch 8 beside patch-4 weights loaded without a word."""
    _hf_folder(patch_size=8, num_hidden_layers=5)(tmp_path)
    monkeypatch.chdir(tmp_path)
    code = main(["probe", str(tmp_path / "hf"), *PROBE[2:], "--data", str(assets["npz"]), "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 0, err
    warned = [line for line in err.splitlines() if line.startswith("warning:") and "contradicts" in line]
    assert len(warned) == 1, err
    assert "patch_size: config.json patch_size 8, weights 4" in warned[0] and "num_hidden_layers 5" in warned[0]
