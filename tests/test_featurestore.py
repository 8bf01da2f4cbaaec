"""umae_eval.featurestore: bit-exact against extract_features, resume after SIGKILL, 2 gloo ranks,
float16, damaged chunks, full/read-only disks; umae_eval.subsets.balanced_subset.

Every comparison is against :func:`umae_eval.features.extract_features` on the same images (the
unchunked, in-memory extractor), and checksums are recomputed here with hashlib on the bytes that
``np.load`` reads back, not with the store's own helper.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp
from ckpt_factory import make_official_encoder
from torch.utils.data import Dataset

from umae_eval.cache import cache_root
from umae_eval.checkpoints import LoadedEncoder, load_encoder
from umae_eval.errors import UmaeError
from umae_eval.features import extract_features
from umae_eval.featurestore import (
    ArrayImages,
    StoreKey,
    default_chunk_rows,
    default_store_dir,
    extract_to_store,
    store_key,
    stored_features,
)
from umae_eval.featurestore import store as store_mod
from umae_eval.subsets import balanced_subset, subset_digest

REPO = Path(__file__).resolve().parents[1]
N, CHUNK, BATCH, D = 37, 8, 4, 192  # 5 chunks, the last one 5 rows; 2 batches per chunk


def images(n: int = N, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("store") / "mae.pth"
    make_official_encoder(path, seed=5)
    return path


@pytest.fixture(scope="module")
def enc(ckpt: Path) -> LoadedEncoder:
    return load_encoder(ckpt)


@pytest.fixture(scope="module")
def ref(enc: LoadedEncoder) -> np.ndarray:
    return extract_features(enc, images(), device="cpu", batch_size=BATCH)


def key_of(enc: LoadedEncoder, n: int = N, **kw) -> StoreKey:
    return store_key(enc, data_fingerprint="fp-test", split="test", n=n, device="cpu", **kw)


def extract(enc: LoadedEncoder, store_dir: Path, key: StoreKey | None = None, data=None, **kw):
    kw = {"device": "cpu", "batch_size": BATCH, "chunk_rows": CHUNK, **kw}
    return extract_to_store(enc, data if data is not None else ArrayImages(images()), store_dir,
                            key or key_of(enc), pool=(key.pool if key else "cls"), **kw)


class Counter:
    """Counts the images the encoder actually runs on (a hook on the patch embedding)."""

    def __init__(self, enc: LoadedEncoder) -> None:
        self.rows = 0
        self._h = enc.model.patch_embed.register_forward_hook(self._hook)

    def _hook(self, module, inputs, output) -> None:
        self.rows += len(output)

    def __enter__(self) -> Counter:  # noqa: PYI034
        return self

    def __exit__(self, *exc) -> None:
        self._h.remove()


def hashed_chunks(store_dir: Path, chunk_rows: int) -> list[str]:
    feats = np.load(store_dir / "features.npy")
    valid = np.load(store_dir / "valid.npy")
    out = []
    for a in range(0, len(feats), chunk_rows):
        h = hashlib.sha256(feats[a:a + chunk_rows].tobytes())
        h.update(valid[a:a + chunk_rows].tobytes())
        out.append(h.hexdigest())
    return out


# --------------------------------------------------------------------------------- the store

@pytest.mark.parametrize("pool", ["cls", "avg"])
def test_store_equals_extract_features_bit_exactly(enc, tmp_path, pool) -> None:
    want = extract_features(enc, images(), pool=pool, device="cpu", batch_size=BATCH)
    key = key_of(enc, pool=pool)
    store = extract(enc, tmp_path / "s", key)
    got = store.read()
    assert isinstance(got, np.memmap) and not got.flags.writeable
    assert got.shape == (N, D) and got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    assert store.complete and store.missing_chunks() == [] and store.valid().all()
    cow = store.as_float32()  # copy-on-write: torch can take it, the store never changes
    assert isinstance(cow, np.memmap) and cow.flags.writeable
    torch.from_numpy(cow).mul_(0)
    np.testing.assert_array_equal(np.load(tmp_path / "s" / "features.npy"), want)
    assert store.damaged_chunks() == []
    # Plain .npy files: numpy alone reads them.
    np.testing.assert_array_equal(np.load(tmp_path / "s" / "features.npy"), want)
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert m["key"] == key.to_json() and StoreKey.from_json(m["key"]) == key
    assert (m["n"], m["dim"], m["dtype"], m["chunk_rows"], m["n_chunks"]) == (N, D, "float32", 8, 5)
    assert [m["chunks"][str(i)]["sha256"] for i in range(5)] == hashed_chunks(tmp_path / "s", 8)
    assert [m["chunks"][str(i)]["rows"] for i in range(5)] == [[0, 8], [8, 16], [16, 24],
                                                                [24, 32], [32, 37]]
    assert m["complete"] is True and "torch" in m["versions"]
    (run,) = m["runs"]
    assert run["rows"] == N and run["chunks"] == [0, 1, 2, 3, 4] and run["img_per_s"] > 0
    assert run["seconds"] > 0 and run["device"] == "cpu" and run["precision"] == "fp32"


def test_workers_and_default_chunk_keep_the_features(enc, ref, tmp_path) -> None:
    store = extract(enc, tmp_path / "w", workers=2)
    np.testing.assert_array_equal(store.read(), ref)
    one = extract(enc, tmp_path / "d", chunk_rows=None)  # default: 16 MiB -> one chunk here
    assert one.chunk_rows == default_chunk_rows(D, BATCH) and one.n_chunks == 1
    np.testing.assert_array_equal(one.read(), ref)


def test_default_chunk_rows_by_bytes() -> None:
    assert default_chunk_rows(768, 256) == 5632  # 16 MiB / (4 B x 768) = 5461.3 -> whole batches
    assert default_chunk_rows(1024, 256) == 4096
    assert default_chunk_rows(1024, 100) == 4100
    assert default_chunk_rows(10**8, 32) == 32  # never below one batch


def test_second_call_computes_nothing(enc, ref, tmp_path) -> None:
    extract(enc, tmp_path / "s")
    before = (tmp_path / "s" / "manifest.json").read_bytes()
    with Counter(enc) as c:
        again = extract(enc, tmp_path / "s")
    assert c.rows == 0 and again.warnings == []
    np.testing.assert_array_equal(again.read(), ref)
    assert (tmp_path / "s" / "manifest.json").read_bytes() == before  # not even rewritten


def test_damaged_chunk_is_recomputed_with_one_warning(enc, ref, tmp_path) -> None:
    store = extract(enc, tmp_path / "s")
    offset = store_mod._npy_offset(tmp_path / "s" / "features.npy")[0]
    with open(tmp_path / "s" / "features.npy", "r+b") as fh:  # zero rows 17-18 (chunk 2)
        fh.seek(offset + 17 * D * 4)
        fh.write(bytes(2 * D * 4))
    assert store.damaged_chunks() == [2]
    with pytest.raises(UmaeError, match=r"chunk\(s\) \[2\] do not match their checksum; run the "
                                        "extraction again"):
        store.read(verify=True)
    with Counter(enc) as c:
        fixed = extract(enc, tmp_path / "s")
    assert c.rows == 8
    assert fixed.warnings == [f"feature store {tmp_path / 's'}: chunk(s) 2 did not match their "
                              "checksum; recomputing them"]
    np.testing.assert_array_equal(fixed.read(verify=True), ref)


def test_unrecorded_chunks_are_recomputed_and_only_they(enc, ref, tmp_path) -> None:
    extract(enc, tmp_path / "s")
    mpath = tmp_path / "s" / "manifest.json"
    m = json.loads(mpath.read_text())
    del m["chunks"]["1"], m["chunks"]["4"]
    mpath.write_text(json.dumps(m))
    with Counter(enc) as c:
        store = extract(enc, tmp_path / "s")
    assert c.rows == 8 + 5 and store.manifest["runs"][-1]["chunks"] == [1, 4]
    np.testing.assert_array_equal(store.read(), ref)


def test_death_between_rows_and_record_loses_only_that_chunk(enc, ref, tmp_path, monkeypatch) -> None:
    """The process dies after chunk 2's rows are written but before its checksum is recorded."""
    real = store_mod.atomic_write_json
    calls = {"n": 0}

    def dying(path, obj):
        calls["n"] += 1
        if calls["n"] == 4:  # 1: the empty manifest, 2-3: chunks 0-1, 4: chunk 2
            raise SystemExit("killed")
        return real(path, obj)

    monkeypatch.setattr(store_mod, "atomic_write_json", dying)
    with pytest.raises(SystemExit):
        extract(enc, tmp_path / "s")
    monkeypatch.setattr(store_mod, "atomic_write_json", real)
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert sorted(m["chunks"]) == ["0", "1"] and m["complete"] is False
    with Counter(enc) as c:
        store = extract(enc, tmp_path / "s")
    assert c.rows == 8 + 8 + 5
    np.testing.assert_array_equal(store.read(), ref)


class BlockingImages(Dataset):
    """ArrayImages that, at item ``block``, touches ``marker`` and hangs (to be SIGKILLed)."""

    def __init__(self, x: np.ndarray, block: int, marker: str) -> None:
        self.inner, self.block, self.marker = ArrayImages(x), block, marker

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int):
        if i == self.block:
            Path(self.marker).touch()
            time.sleep(600)
        return self.inner[i]


KILL_SCRIPT = """
import sys
sys.path[:0] = [{repo!r}, {tests!r}]
import torch
torch.set_num_threads(1)
from test_featurestore import BlockingImages, images, key_of, extract
from umae_eval.checkpoints import load_encoder
from pathlib import Path
enc = load_encoder({ckpt!r})
extract(enc, Path({store!r}), data=BlockingImages(images(), {block}, {marker!r}))
"""


@pytest.mark.parametrize("block", [16, 20])  # at a chunk boundary, and one batch into chunk 2
def test_sigkill_then_resume_recomputes_only_missing_chunks(enc, ref, ckpt, tmp_path, block) -> None:
    marker = tmp_path / "blocked"
    script = KILL_SCRIPT.format(repo=str(REPO), tests=str(REPO / "tests"), ckpt=str(ckpt),
                                store=str(tmp_path / "s"), block=block, marker=str(marker))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-c", script], env=env, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 180
        while not marker.exists():
            if proc.poll() is not None:
                pytest.fail(f"extraction ended before blocking: {proc.stderr.read().decode()}")
            if time.monotonic() > deadline:
                pytest.fail("the extraction subprocess never reached the blocking item")
            time.sleep(0.2)
        # Chunks are stored by a background thread: kill once the manifest shows chunks 0-1.
        mpath = tmp_path / "s" / "manifest.json"
        while len(json.loads(mpath.read_text())["chunks"]) < 2:
            if time.monotonic() > deadline:
                pytest.fail("chunks 0 and 1 were never recorded")
            time.sleep(0.1)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.stderr.close()
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert sorted(m["chunks"]) == ["0", "1"] and m["runs"] == []  # 2 whole chunks survived
    with Counter(enc) as c:
        store = extract(enc, tmp_path / "s")
    assert c.rows == N - 16  # chunks 2, 3, 4 and nothing else
    assert store.manifest["runs"][-1]["chunks"] == [2, 3, 4]
    np.testing.assert_array_equal(store.read(), ref)
    assert [store.manifest["chunks"][str(i)]["sha256"] for i in range(5)] == \
        hashed_chunks(tmp_path / "s", CHUNK)


# ------------------------------------------------------------------------------ 2 processes

def _rank_worker(rank: int, port: int, ckpt: str, store: str, out: str) -> None:
    try:
        torch.set_num_threads(1)
        # torchrun's environment, no process group: the store creates (and destroys) its own.
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE="2",
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        enc = load_encoder(ckpt)
        result = extract(enc, Path(store))
        np.save(Path(out) / f"rank{rank}.npy", np.array(result.read()))
        (Path(out) / f"rank{rank}.json").write_text(json.dumps(
            {"complete": result.complete, "initialised": torch.distributed.is_initialized()}))
    except BaseException:
        (Path(out) / f"rank{rank}.err").write_text(traceback.format_exc())
        raise


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_two_gloo_ranks_give_exactly_the_single_process_features(enc, ref, ckpt, tmp_path) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    out = tmp_path / "out"
    out.mkdir()
    ctx = mp.spawn(_rank_worker, args=(_free_port(), str(ckpt), str(tmp_path / "s"), str(out)),
                   nprocs=2, join=False)
    deadline = time.monotonic() + 900  # ~25 s on 2 idle cores; far more while training runs
    try:
        while not ctx.join(timeout=1):
            if time.monotonic() > deadline:
                pytest.fail("2-rank extraction did not finish within 900 s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
    errs = [e.read_text() for e in out.glob("*.err")]
    assert not errs, "\n".join(errs)
    for rank in (0, 1):
        np.testing.assert_array_equal(np.load(out / f"rank{rank}.npy"), ref)
        info = json.loads((out / f"rank{rank}.json").read_text())
        assert info == {"complete": True, "initialised": False}
    m = json.loads((tmp_path / "s" / "manifest.json").read_text())
    assert {i: m["chunks"][str(i)]["rank"] for i in range(5)} == {0: 0, 1: 1, 2: 0, 3: 1, 4: 0}
    assert sorted((r["rank"], r["chunks"]) for r in m["runs"]) == [(0, [0, 2, 4]), (1, [1, 3])]
    assert [m["chunks"][str(i)]["sha256"] for i in range(5)] == hashed_chunks(tmp_path / "s", CHUNK)
    assert not list((tmp_path / "s").glob("manifest.rank*.json"))  # merged into manifest.json


def test_parts_of_an_interrupted_multi_rank_run_are_merged_on_resume(enc, ref, tmp_path) -> None:
    """Rank part files left by a killed torchrun count as done for a later single process."""
    extract(enc, tmp_path / "s")
    mpath = tmp_path / "s" / "manifest.json"
    m = json.loads(mpath.read_text())
    part = {"format": "umae-feature-store", "key_digest": m["key_digest"], "rank": 1, "run": None,
            "chunks": {k: m["chunks"].pop(k) for k in ("1", "3")}}
    mpath.write_text(json.dumps(m))
    (tmp_path / "s" / "manifest.rank1.json").write_text(json.dumps(part))
    with Counter(enc) as c:
        store = extract(enc, tmp_path / "s")
    assert c.rows == 0 and store.complete
    assert not (tmp_path / "s" / "manifest.rank1.json").exists()
    assert sorted(json.loads(mpath.read_text())["chunks"]) == ["0", "1", "2", "3", "4"]
    np.testing.assert_array_equal(store.read(), ref)


# ----------------------------------------------------------------------------- float16, valid

def test_float16_storage_is_the_rounded_float32_features(enc, ref, tmp_path) -> None:
    store = extract(enc, tmp_path / "h", key_of(enc, dtype="float16"))
    assert store.read().dtype == np.float16
    np.testing.assert_array_equal(store.as_float32(), ref.astype(np.float16).astype(np.float32))
    assert store.as_float32().dtype == np.float32
    full = extract(enc, tmp_path / "f")
    assert full.read().nbytes == 2 * store.read().nbytes


def test_float16_overflow_is_refused(ckpt, tmp_path) -> None:
    loud = load_encoder(ckpt)
    with torch.no_grad():
        loud.model.norm.weight.mul_(1e6)  # features ~1e6 > float16's 65504
    with pytest.raises(UmaeError, match=r"features of chunk 0 exceed float16's range .* use "
                                        "--feature-dtype float32"):
        extract(loud, tmp_path / "h", key_of(loud, dtype="float16"))


class HalfBroken(Dataset):
    """Every third image 'could not be decoded': zeros and ok=False (--skip-bad-images)."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = x

    def __len__(self) -> int:
        return len(self.x)

    def __getitem__(self, i: int):
        if i % 3 == 0:
            return torch.zeros(self.x.shape[1:], dtype=torch.uint8), False
        return torch.from_numpy(self.x[i].copy()), True


def test_valid_mask_marks_undecodable_images(enc, tmp_path) -> None:
    x = images()
    store = extract(enc, tmp_path / "s", data=HalfBroken(x))
    valid = store.valid()
    np.testing.assert_array_equal(valid, np.arange(N) % 3 != 0)
    expected = x.copy()
    expected[::3] = 0
    np.testing.assert_array_equal(store.read(), extract_features(enc, expected, device="cpu",
                                                                 batch_size=BATCH))
    assert [c["n_valid"] for _, c in sorted(store.chunks.items())] == [5, 5, 6, 5, 3]


# ------------------------------------------------------------------------ keys and bad input

def test_keys_separate_what_changes_the_numbers(enc) -> None:
    base = key_of(enc)
    assert StoreKey.from_json(json.loads(json.dumps(base.to_json()))) == base
    others = [key_of(enc, dtype="float16"), key_of(enc, pool="avg"), key_of(enc, n=36),
              key_of(enc, subset=subset_digest(np.arange(5))), key_of(enc, transform="resize256")]
    dirs = {default_store_dir(k) for k in [base, *others]}
    assert len(dirs) == 6 and all(d.parent == cache_root() / "features" for d in dirs)
    assert default_store_dir(base).name.startswith("fp-test-test-all-cls-32px-fp32-")
    assert default_store_dir(base, root="/data/stores").parent == Path("/data/stores")
    assert hash(base) == hash(key_of(enc))


def test_default_store_dir_is_used_when_none_is_given(enc, ref) -> None:
    store = extract_to_store(enc, ArrayImages(images()), None, key_of(enc), device="cpu",
                             batch_size=BATCH)
    assert store.path == default_store_dir(key_of(enc)) and store.path.is_dir()
    np.testing.assert_array_equal(store.read(), ref)


def test_bad_inputs_name_the_problem(enc, tmp_path) -> None:
    with pytest.raises(UmaeError, match="key does not match the extraction: n=36 but the "
                                        "dataset has 37 images"):
        extract(enc, tmp_path / "a", key_of(enc, n=36))
    with pytest.raises(UmaeError, match=r"pool='avg' but pool='cls' was asked for"):
        extract_to_store(enc, ArrayImages(images()), tmp_path / "a", key_of(enc, pool="avg"),
                         device="cpu")
    bf16 = StoreKey(**{**key_of(enc).to_json(), "precision": "bf16"})
    with pytest.raises(UmaeError, match="precision bf16 but cpu computes in fp32"):
        extract(enc, tmp_path / "a", bf16)
    with pytest.raises(UmaeError, match="chunk_rows must be a positive multiple of the batch "
                                        "size 4, got 6"):
        extract(enc, tmp_path / "a", chunk_rows=6)
    with pytest.raises(UmaeError, match="feature dtype 'int8' is not supported; use float32 or "
                                        "float16"):
        key_of(enc, dtype="int8")
    with pytest.raises(UmaeError, match=r"images must be a \(N, H, W, 3\) uint8 array, got "
                                        r"ndarray float32 \(37, 32, 32, 3\)"):
        ArrayImages(images().astype(np.float32))

    class Bare(Dataset):
        def __len__(self):
            return N

        def __getitem__(self, i):
            return torch.zeros(32, 32, 3, dtype=torch.uint8)

    with pytest.raises(UmaeError, match=r"items of Bare must be \(image, ok\) pairs; wrap a plain "
                                        "uint8 array in umae_eval.featurestore.ArrayImages"):
        extract(enc, tmp_path / "b", data=Bare())
    extract(enc, tmp_path / "c")
    with pytest.raises(UmaeError, match=f"{tmp_path / 'c'} holds another feature store .*split "
                                        "test, pool cls.*delete that folder \\(it is a cache and is rebuilt\\) or point "
                                        r"\$UMAE_CACHE_DIR at another cache"):
        extract(enc, tmp_path / "c", key_of(enc, transform="other"))


def test_empty_split_gives_an_empty_complete_store(enc, tmp_path) -> None:
    store = extract(enc, tmp_path / "e", key_of(enc, n=0), data=ArrayImages(images(0)))
    assert store.complete and store.n_chunks == 0
    assert store.read().shape == (0, D) and store.valid().shape == (0,)


def test_two_concurrent_extractions_of_one_store_take_turns(enc, ref, tmp_path) -> None:
    """Two commands on the same data at once: the lock makes the second wait, then read."""
    import threading

    results: list = []
    with Counter(enc) as c:
        threads = [threading.Thread(target=lambda: results.append(extract(enc, tmp_path / "s")))
                   for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=600)
    assert len(results) == 2 and c.rows == N  # each image encoded once in all
    for store in results:
        np.testing.assert_array_equal(store.read(), ref)


class FailingImages(Dataset):
    """ArrayImages whose item 9 cannot be read (an error raised in a DataLoader worker)."""

    def __init__(self, x: np.ndarray) -> None:
        self.inner = ArrayImages(x)

    def __len__(self) -> int:
        return len(self.inner)

    def __getitem__(self, i: int):
        if i == 9:
            raise UmaeError("cannot read image 9")
        return self.inner[i]


def test_failed_extraction_with_workers_does_not_leave_the_store_locked(enc, ref, tmp_path) -> None:
    """Forked workers inherit the store's flock; an error must not leave them holding it."""
    import threading

    with pytest.raises(UmaeError, match="cannot read image 9") as failure:
        extract(enc, tmp_path / "s", data=FailingImages(images()), workers=2)
    done: list = []  # `failure` keeps the traceback (and its frames) alive meanwhile
    t = threading.Thread(target=lambda: done.append(extract(enc, tmp_path / "s", workers=2)),
                         daemon=True)
    t.start()
    t.join(timeout=300)
    assert done, "the second extraction is stuck waiting for the store's lock"
    np.testing.assert_array_equal(done[0].read(), ref)
    assert failure.value is not None


def test_torn_manifest_rebuilds_the_store(enc, ref, tmp_path) -> None:
    extract(enc, tmp_path / "s")
    (tmp_path / "s" / "manifest.json").write_text('{"format": "umae-feat')
    with Counter(enc) as c:
        store = extract(enc, tmp_path / "s")
    assert c.rows == N and store.warnings == [f"feature store {tmp_path / 's'}: unreadable "
                                              "manifest or damaged files; rebuilt it"]
    np.testing.assert_array_equal(store.read(), ref)


_DAMAGES = {
    "chunk_rows-text": lambda m: m.update(chunk_rows="many"),
    "chunk_rows-float": lambda m: m.update(chunk_rows=2.5),
    "chunk_rows-zero": lambda m: m.update(chunk_rows=0),
    "chunk-index-text": lambda m: m["chunks"].update({"x": m["chunks"].pop("0")}),
    "chunk-rows-text": lambda m: m["chunks"]["0"].update(rows=["a", "b"]),
    "chunk-rows-beyond-n": lambda m: m["chunks"]["0"].update(rows=[0, 10**12]),
    "chunk-rows-shifted": lambda m: m["chunks"]["0"].update(rows=[1, 2]),
    "chunk-sha-number": lambda m: m["chunks"]["0"].update(sha256=12),
    "chunks-a-list": lambda m: m.update(chunks=[1, 2]),
    "key-a-string": lambda m: m.update(key="x", key_digest="0" * 64),
    "runs-a-number": lambda m: m.update(runs=3),
    "manifest-a-list": lambda m: (m.clear(), m.update(format="not a dict")),
}


@pytest.mark.parametrize("damage", list(_DAMAGES), ids=list(_DAMAGES))
def test_damaged_manifest_fields_rebuild_the_store(damage, enc, ref, tmp_path) -> None:
    """Issue 23: non-numeric or out-of-range manifest fields reached int() and array slices
    (internal error); a damaged manifest is rebuilt, as a torn one is."""
    extract(enc, tmp_path / "s")
    manifest = json.loads((tmp_path / "s" / "manifest.json").read_text())
    _DAMAGES[damage](manifest)
    (tmp_path / "s" / "manifest.json").write_text(json.dumps(manifest))
    with Counter(enc) as c:
        store = extract(enc, tmp_path / "s")
    assert c.rows == N and store.warnings == [f"feature store {tmp_path / 's'}: unreadable "
                                              "manifest or damaged files; rebuilt it"]
    np.testing.assert_array_equal(store.read(), ref)


# --------------------------------------------------------------------- full / read-only disks

def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_disk_full_at_creation_goes_on_in_memory(enc, ref, tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(store_mod, "_reserve", _enospc)
    with Counter(enc) as c:
        got = stored_features(enc, ArrayImages(images()), key_of(enc), store_dir=tmp_path / "s",
                              device="cpu", batch_size=BATCH, chunk_rows=CHUNK)
    assert got.store is None and c.rows == N and got.computed_rows == N
    np.testing.assert_array_equal(got.features, ref)
    assert got.valid.all()
    assert got.warnings == [f"feature cache not written to {tmp_path / 's'}: No space left on "
                            "device; going on without it (free space there, or set UMAE_CACHE_DIR "
                            "to a writable folder)"]
    assert not (tmp_path / "s" / "features.npy").exists()  # no half-made store left behind
    with pytest.raises(UmaeError, match=f"cannot write the feature store {tmp_path / 's'}: No "
                                        "space left on device; free space there or choose"):
        extract(enc, tmp_path / "s")


def test_disk_full_midway_keeps_every_encoded_chunk(enc, ref, tmp_path, monkeypatch) -> None:
    real = store_mod.atomic_write_json
    calls = {"n": 0}

    def filling(path, obj):
        calls["n"] += 1
        if calls["n"] >= 4:  # chunks 0 and 1 recorded, then the disk is full
            _enospc()
        return real(path, obj)

    monkeypatch.setattr(store_mod, "atomic_write_json", filling)
    with Counter(enc) as c:
        got = stored_features(enc, ArrayImages(images()), key_of(enc), store_dir=tmp_path / "s",
                              device="cpu", batch_size=BATCH, chunk_rows=CHUNK)
    assert c.rows == N  # nothing encoded twice
    assert got.store is None and len(got.warnings) == 1 and "No space left" in got.warnings[0]
    np.testing.assert_array_equal(got.features, ref)


def test_unwritable_cache_root_goes_on_in_memory(enc, ref, tmp_path, monkeypatch) -> None:
    (tmp_path / "file").write_text("not a folder")
    monkeypatch.setenv("UMAE_CACHE_DIR", str(tmp_path / "file" / "cache"))  # ENOTDIR, even as root
    got = stored_features(enc, ArrayImages(images()), key_of(enc), device="cpu", batch_size=BATCH)
    assert got.store is None and len(got.warnings) == 1
    assert got.warnings[0].startswith(f"feature cache not written to {tmp_path / 'file' / 'cache'}: "
                                      "Not a directory; going on without it")
    np.testing.assert_array_equal(got.features, ref)


TMPFS_SCRIPT = """
import json, subprocess, sys
sys.path[:0] = [{repo!r}, {tests!r}]
import numpy as np, torch
torch.set_num_threads(1)
from pathlib import Path
from test_featurestore import ArrayImages, images, key_of, BATCH
from umae_eval.checkpoints import load_encoder
from umae_eval.features import cached_features
from umae_eval.featurestore import stored_features
disk = Path(sys.argv[1])
enc = load_encoder({ckpt!r})
x = images(64)
out = {{}}
small = stored_features(enc, ArrayImages(x[:8]), key_of(enc, n=8), store_dir=disk / "small",
                        device="cpu", batch_size=BATCH)
free = __import__("shutil").disk_usage(disk).free
(disk / "filler").write_bytes(bytes(max(free - 16 * 1024, 0)))
full = stored_features(enc, ArrayImages(x), key_of(enc, n=64), store_dir=disk / "big",
                       device="cpu", batch_size=BATCH)
warn = []
cached = cached_features(enc, x, images_key="fp-64", device="cpu", warnings=warn)
out["full"] = dict(store=full.store is not None, warnings=full.warnings, left=sorted(
    p.name for p in (disk / "big").iterdir()) if (disk / "big").exists() else [])
out["cached_warnings"] = warn
out["cached_left"] = sorted(p.name for p in disk.rglob("*.tmp"))
subprocess.run(["mount", "-o", "remount,ro", str(disk)], check=True)
again = stored_features(enc, ArrayImages(x[:8]), key_of(enc, n=8), store_dir=disk / "small",
                        device="cpu", batch_size=BATCH)
ro = stored_features(enc, ArrayImages(x[:8]), key_of(enc, n=8, pool="avg"), pool="avg",
                     store_dir=disk / "other", device="cpu", batch_size=BATCH)
out["ro_complete"] = dict(store=again.store is not None, warnings=again.warnings,
                          rows=again.computed_rows)
out["ro_new"] = dict(store=ro.store is not None, warnings=ro.warnings)
np.save(Path(sys.argv[2]) / "full.npy", np.asarray(full.features))
np.save(Path(sys.argv[2]) / "cached.npy", cached)
np.save(Path(sys.argv[2]) / "again.npy", np.asarray(again.features))
Path(sys.argv[2], "out.json").write_text(json.dumps(out))
"""


def test_real_full_and_read_only_tmpfs(enc, ckpt, tmp_path) -> None:
    """A 256 KiB tmpfs filled up, then remounted read-only (needs mount namespaces)."""
    probe = subprocess.run(["unshare", "-rm", "sh", "-c", "mount -t tmpfs -o size=64k none /mnt"],
                           capture_output=True, check=False)
    if probe.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (no unprivileged mount namespaces)")
    disk, out = tmp_path / "disk", tmp_path / "out"
    disk.mkdir(), out.mkdir()
    script = tmp_path / "tmpfs.py"
    script.write_text(TMPFS_SCRIPT.format(repo=str(REPO), tests=str(REPO / "tests"), ckpt=str(ckpt)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "UMAE_CACHE_DIR": str(disk / "cache")}
    cmd = f"mount -t tmpfs -o size=256k none {disk} && exec {sys.executable} {script} {disk} {out}"
    res = subprocess.run(["unshare", "-rm", "sh", "-c", cmd], env=env, capture_output=True,
                         text=True, timeout=300, check=False)
    assert res.returncode == 0, res.stderr
    got = json.loads((out / "out.json").read_text())
    x = images(64)
    want = extract_features(enc, x, device="cpu", batch_size=BATCH)
    np.testing.assert_array_equal(np.load(out / "full.npy"), want)
    np.testing.assert_array_equal(np.load(out / "cached.npy"), want)
    assert got["full"]["store"] is False and got["full"]["left"] in ([], [".lock"])
    assert len(got["full"]["warnings"]) == 1 and "No space left on device" in got["full"]["warnings"][0]
    # numpy's np.save reports the full disk as a short write without an errno.
    (cached_warning,) = got["cached_warnings"]
    assert cached_warning.startswith(f"feature cache not written to {disk / 'cache' / 'features'}: ")
    assert "No space left on device" in cached_warning or "(is the disk full?)" in cached_warning
    assert got["cached_left"] == []  # no temporary files left on the full disk
    # Read-only: a complete store is read as it is; a new one falls back to memory.
    assert got["ro_complete"] == {"store": True, "warnings": [], "rows": 0}
    np.testing.assert_array_equal(np.load(out / "again.npy"), want[:8])
    assert got["ro_new"]["store"] is False and "Read-only file system" in got["ro_new"]["warnings"][0]


# ------------------------------------------------------------------------------------ subsets

def test_balanced_subset_counts_and_determinism() -> None:
    rng = np.random.default_rng(3)
    labels = np.repeat(np.arange(5), [50, 3, 20, 7, 1])
    rng.shuffle(labels)
    sub = balanced_subset(labels, per_class=7, seed=11)
    assert sub.dtype == np.int64 and np.all(np.diff(sub) > 0)  # sorted, no duplicates
    counts = np.bincount(labels[sub], minlength=5)
    np.testing.assert_array_equal(counts, [7, 3, 7, 7, 1])  # small classes keep all
    for small in (1, 3, 4):
        np.testing.assert_array_equal(np.sort(sub[labels[sub] == small]),
                                      np.flatnonzero(labels == small))
    np.testing.assert_array_equal(sub, balanced_subset(labels, 7, 11))
    assert not np.array_equal(sub, balanced_subset(labels, 7, 12))
    np.testing.assert_array_equal(balanced_subset(labels, 50, 0), np.arange(len(labels)))
    # A class's draw does not depend on the other classes present.
    extra = np.concatenate([labels, np.full(30, 9)])
    np.testing.assert_array_equal(balanced_subset(extra, 7, 11)[:len(sub)], sub)
    assert balanced_subset(np.zeros(0, dtype=np.int64), 3, 0).shape == (0,)


def test_balanced_subset_is_uniform_within_a_class() -> None:
    """Over many seeds each of 10 images of a class is kept 3/10 of the time."""
    labels = np.zeros(10, dtype=np.int64)
    hits = np.zeros(10)
    for seed in range(2000):
        hits[balanced_subset(labels, 3, seed)] += 1
    np.testing.assert_allclose(hits / 2000, 0.3, atol=0.04)  # binomial sd ~0.01


def test_balanced_subset_bad_inputs() -> None:
    with pytest.raises(UmaeError, match="--max-train-per-class must be at least 1, got 0"):
        balanced_subset(np.array([0, 1]), 0, 0)
    with pytest.raises(UmaeError, match="labels must be a 1-D integer array, got float64"):
        balanced_subset(np.array([0.5]), 1, 0)
    with pytest.raises(UmaeError, match="labels must be non-negative class indices, got -1"):
        balanced_subset(np.array([-1, 0]), 1, 0)
    with pytest.raises(UmaeError, match="--seed must be a non-negative integer, got -3"):
        balanced_subset(np.array([0]), 1, -3)
    assert subset_digest(None) == "all"
    assert subset_digest(np.array([1, 2])) != subset_digest(np.array([2, 1]))
