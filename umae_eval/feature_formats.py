"""Readers of the feature files `--features PATH` accepts, one per format, memory-mapping what they can.

Every reader returns a :class:`RawFeatures`: the four arrays by name (``train_features``,
``train_labels``, ``test_features``, ``test_labels``), the class names if the file has them,
the files read (for their sha256) and how the arrays were opened. Checking what the arrays hold
(shapes, NaN rows, labels) is :mod:`umae_eval.feature_input`'s job; a reader only refuses what
it cannot open: a missing key, an unknown layout, Python objects (pickles are never loaded).

Formats (README: `--features`):

- ``.npz``: arrays ``train_features``, ``train_labels``, ``test_features``, ``test_labels`` and
  optionally ``class_names`` (a str array). Members stored uncompressed (``np.savez``) are
  memory-mapped in place; compressed ones (``np.savez_compressed``) are read into memory.
- a folder of ``.npy`` files: ``train_features.npy``, ``test_features.npy``, ``train_labels.npy``
  (or ``train_labels.txt``, one integer a line), ``test_labels.npy`` (or ``.txt``), optionally
  ``class_names.txt`` (one a line) or ``class_names.json`` (a list).
- ``.safetensors``: tensors under the same four names; class names as the JSON list in the
  header's ``__metadata__["class_names"]``. Read by parsing the header (8-byte length + JSON)
  and memory-mapping each tensor's byte range.
- a umae feature store pair: a folder with ``train/`` and ``test/`` feature stores
  (``manifest.json``, ``features.npy``, ``valid.npy``; umae_eval.featurestore), the labels of
  every stored row as ``train_labels.npy`` / ``test_labels.npy`` (or ``.txt``) beside them, and
  optional class names as above. Rows a store marks invalid (undecodable images) are dropped
  together with their labels.
"""

from __future__ import annotations

import json
import struct
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from umae_eval.errors import UmaeError

#: The array names every format uses (results.json and the README say the same).
KEYS: tuple[str, ...] = ("train_features", "train_labels", "test_features", "test_labels")
CLASS_NAMES = "class_names"
#: How a fix is spelled in messages: the names to save under.
SAVE_HINT = ("save the arrays train_features, train_labels, test_features, test_labels "
             "(README: --features)")

#: safetensors dtype names -> numpy (BF16 has no numpy dtype: refused with a fix).
SAFETENSORS_DTYPES = {"F16": "<f2", "F32": "<f4", "F64": "<f8", "I64": "<i8", "I32": "<i4", "I16": "<i2",
                      "I8": "i1", "U8": "u1", "U16": "<u2", "U32": "<u4", "U64": "<u8", "BOOL": "?"}
#: A safetensors header longer than this is not one (the format's own reader caps it at 100 MB).
MAX_SAFETENSORS_HEADER = 100_000_000


@dataclass
class RawFeatures:
    """What a reader found: arrays by name (memory-mapped where possible), class names, files."""

    arrays: dict[str, np.ndarray]
    class_names: list[str] | None
    files: list[Path]
    format: str
    memory_mapped: bool
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)


def fail(path: Path | str, text: str) -> UmaeError:
    """The one-line error of a bad feature file: ``--features PATH: text``."""
    return UmaeError(f"--features {path}: {text}")


def detect_format(path: Path) -> str:
    """'npz', 'safetensors', 'npy-folder' or 'feature-store', from the path's kind and contents."""
    if not path.exists():
        raise fail(path, "not found (check the path)")
    if path.is_dir():
        if (path / "train" / "manifest.json").is_file() or (path / "test" / "manifest.json").is_file():
            return "feature-store"
        if any((path / f"{k}.npy").exists() for k in ("train_features", "test_features")):
            return "npy-folder"
        present = sorted(p.name for p in path.iterdir())[:12]
        raise fail(path, f"a folder without train_features.npy / test_features.npy or train/ and test/ "
                         f"feature stores (it holds: {', '.join(present) or 'nothing'}); {SAVE_HINT}")
    try:
        with open(path, "rb") as fh:
            head = fh.read(16)
    except OSError as exc:
        raise fail(path, f"cannot be read ({exc.strerror or exc}); check its permissions") from None
    if head[:2] == b"PK":
        return "npz"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"
    raise fail(path, "not an .npz, .safetensors, or a folder of .npy files or feature stores; "
                     f"{SAVE_HINT}, e.g. np.savez(path, train_features=..., ...)")


def read_features(path: Path) -> RawFeatures:
    """Open ``path`` in its format (:func:`detect_format`); raises UmaeError on what cannot be read."""
    kind = detect_format(path)
    reader = {"npz": read_npz, "safetensors": read_safetensors, "npy-folder": read_npy_folder,
              "feature-store": read_store_pair}[kind]
    try:
        return reader(path)
    except UmaeError:
        raise
    except (OSError, ValueError, EOFError, zipfile.BadZipFile, struct.error, KeyError) as exc:
        raise fail(path, f"unreadable {kind} ({type(exc).__name__}: {str(exc)[:120]}); "
                         "write it again (a truncated or damaged file)") from None


# --------------------------------------------------------------------------- npy headers


def _npy_header(fh: Any, where: str, path: Path) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran order and dtype of the ``.npy`` at the file's position; objects refused."""
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
    else:
        shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    if dtype.hasobject:
        raise fail(path, f"{where} holds Python objects (a pickle); umae never unpickles feature files: "
                         "save numbers (float features, integer labels) and class names as a str array, "
                         "e.g. np.array(names, dtype=str)")
    return tuple(int(s) for s in shape), bool(fortran), dtype


def _map_npy(path: Path, offset: int, where: str) -> np.ndarray:
    """Memory-map the ``.npy`` that starts at byte ``offset`` of ``path`` (read-only)."""
    with open(path, "rb") as fh:
        fh.seek(offset)
        shape, fortran, dtype = _npy_header(fh, where, path)
        data_at = fh.tell()
    n = int(np.prod(shape)) * dtype.itemsize
    if path.stat().st_size < data_at + n:
        raise fail(path, f"{where} is truncated (needs {data_at + n} bytes, the file has "
                         f"{path.stat().st_size}); write it again")
    if n == 0:
        return np.zeros(shape, dtype=dtype)
    return np.memmap(path, dtype=dtype, mode="r", offset=data_at, shape=shape, order="F" if fortran else "C")


def load_npy(path: Path, where: str | None = None) -> np.ndarray:
    """A plain ``.npy`` file memory-mapped read-only (objects refused)."""
    return _map_npy(path, 0, where or path.name)


# --------------------------------------------------------------------------- npz


def read_npz(path: Path) -> RawFeatures:
    """An ``.npz``: stored members memory-mapped in place, compressed ones read into memory."""
    with zipfile.ZipFile(path) as zf:
        members = {i.filename[:-4] if i.filename.endswith(".npy") else i.filename: i for i in zf.infolist()}
    missing = [k for k in KEYS if k not in members]
    if missing:
        raise fail(path, f"no {', '.join(missing)} array(s); it holds: {', '.join(sorted(members)) or 'nothing'}; "
                         f"{SAVE_HINT}")
    arrays: dict[str, np.ndarray] = {}
    compressed = []
    wanted = [*KEYS, *([CLASS_NAMES] if CLASS_NAMES in members else [])]
    for key in wanted:
        info = members[key]
        if info.compress_type == zipfile.ZIP_STORED:
            arrays[key] = _map_npy(path, _member_data_offset(path, info), key)
        else:
            compressed.append(key)
            with zipfile.ZipFile(path) as zf, zf.open(info) as fh:
                shape, fortran, dtype = _npy_header(fh, key, path)  # objects refused before any load
            with np.load(path, allow_pickle=False) as z:
                arrays[key] = np.asarray(z[key])
    names = _names_array(arrays.pop(CLASS_NAMES), path) if CLASS_NAMES in arrays else None
    notes = [f"compressed members read into memory: {', '.join(compressed)} (np.savez, uncompressed, is "
             "memory-mapped instead)"] if compressed else []
    mapped = not any(k in compressed for k in ("train_features", "test_features"))
    return RawFeatures(arrays, names, [path], "npz", mapped, notes)


def _member_data_offset(path: Path, info: zipfile.ZipInfo) -> int:
    """Where a stored zip member's bytes start: after its local header (30 bytes + name + extra)."""
    with open(path, "rb") as fh:
        fh.seek(info.header_offset)
        local = fh.read(30)
    if len(local) != 30 or local[:4] != b"PK\x03\x04":
        raise fail(path, f"member {info.filename} has a damaged zip header; write the file again")
    name_len, extra_len = struct.unpack("<HH", local[26:30])
    return info.header_offset + 30 + name_len + extra_len


def _names_array(a: np.ndarray, path: Path) -> list[str]:
    if a.ndim != 1 or a.dtype.kind not in "US":
        raise fail(path, f"class_names must be a 1-D str array, got {a.dtype} of shape {a.shape}; "
                         "save np.array(names, dtype=str)")
    return [x.decode() if isinstance(x, bytes) else str(x) for x in a.tolist()]


# --------------------------------------------------------------------------- npy folder


def _labels_file(folder: Path, key: str, path: Path) -> Path:
    for suffix in (".npy", ".txt"):
        p = folder / f"{key}{suffix}"
        if p.exists():
            return p
    present = sorted(p.name for p in folder.iterdir())[:12]
    raise fail(path, f"no {key}.npy or {key}.txt in {folder}; it holds: {', '.join(present)}; {SAVE_HINT}")


def _read_labels(p: Path) -> np.ndarray:
    if p.suffix == ".npy":
        return load_npy(p)
    rows = [line.strip() for line in p.read_text().splitlines() if line.strip()]
    try:
        return np.array([float(v) for v in rows], dtype=np.float64)
    except ValueError:
        bad = next(v for v in rows if not _is_number(v))
        raise fail(p, f"'{bad[:40]}' is not a number; a labels .txt holds one class index a line") from None


def _is_number(v: str) -> bool:
    try:
        float(v)
        return True
    except ValueError:
        return False


def _class_names_file(folder: Path) -> tuple[list[str] | None, Path | None]:
    txt, js = folder / "class_names.txt", folder / "class_names.json"
    if txt.exists():
        return [line.rstrip("\r") for line in txt.read_text().splitlines() if line.strip()], txt
    if js.exists():
        try:
            names = json.loads(js.read_text())
        except ValueError:
            names = None
        if not isinstance(names, list) or not all(isinstance(n, (str, int)) for n in names):
            raise fail(js, "must be a JSON list of class names, e.g. [\"cat\", \"dog\"]")
        return [str(n) for n in names], js
    return None, None


def read_npy_folder(path: Path) -> RawFeatures:
    """``train_features.npy`` + ``test_features.npy`` (memory-mapped) and their labels files."""
    arrays: dict[str, np.ndarray] = {}
    files: list[Path] = []
    for split in ("train", "test"):
        f = path / f"{split}_features.npy"
        if not f.exists():
            present = sorted(p.name for p in path.iterdir())[:12]
            raise fail(path, f"no {split}_features.npy; it holds: {', '.join(present)}; {SAVE_HINT}")
        arrays[f"{split}_features"] = load_npy(f)
        lab = _labels_file(path, f"{split}_labels", path)
        arrays[f"{split}_labels"] = _read_labels(lab)
        files += [f, lab]
    names, nfile = _class_names_file(path)
    return RawFeatures(arrays, names, files + ([nfile] if nfile else []), "npy-folder", True)


# --------------------------------------------------------------------------- safetensors


def read_safetensors(path: Path) -> RawFeatures:
    """Parse the header (u64 length + JSON) and memory-map each tensor's byte range."""
    size = path.stat().st_size
    with open(path, "rb") as fh:
        (n,) = struct.unpack("<Q", fh.read(8))
        if n > min(size - 8, MAX_SAFETENSORS_HEADER):
            raise fail(path, "not a safetensors file (its header length runs past the file); write it again")
        header = json.loads(fh.read(n))
    if not isinstance(header, dict):
        raise fail(path, "not a safetensors file (the header is not a JSON object)")
    meta = header.pop("__metadata__", None) or {}
    missing = [k for k in KEYS if k not in header]
    if missing:
        raise fail(path, f"no {', '.join(missing)} tensor(s); it holds: {', '.join(sorted(header)) or 'nothing'}; "
                         f"{SAVE_HINT}")
    arrays = {}
    for key in KEYS:
        entry = header[key]
        code = str(entry.get("dtype"))
        if code not in SAFETENSORS_DTYPES:
            raise fail(path, f"{key} is {code}, which numpy cannot read; save float16 or float32 "
                             "(e.g. tensor.float() or tensor.half() before save_file)")
        dtype = np.dtype(SAFETENSORS_DTYPES[code])
        shape = tuple(int(s) for s in entry["shape"])
        start, stop = (int(v) for v in entry["data_offsets"])
        if stop - start != int(np.prod(shape)) * dtype.itemsize or 8 + n + stop > size:
            raise fail(path, f"{key}'s byte range does not fit its shape {shape} or the file; write it again")
        arrays[key] = (np.zeros(shape, dtype) if stop == start else
                       np.memmap(path, dtype=dtype, mode="r", offset=8 + n + start, shape=shape))
    names = None
    if CLASS_NAMES in meta:
        try:
            names = json.loads(meta[CLASS_NAMES])
        except (TypeError, ValueError):
            names = None
        if not isinstance(names, list):
            raise fail(path, "__metadata__['class_names'] must be a JSON list as text, e.g. "
                             "save_file(t, path, metadata={'class_names': json.dumps(names)})")
        names = [str(x) for x in names]
    return RawFeatures(arrays, names, [path], "safetensors", True,
                       extra={"metadata": {k: str(v)[:200] for k, v in meta.items() if k != CLASS_NAMES}})


# --------------------------------------------------------------------------- feature stores


def read_store_pair(path: Path) -> RawFeatures:
    """``train/`` and ``test/`` umae feature stores + labels files; invalid rows dropped."""
    from umae_eval.featurestore.key import StoreKey
    from umae_eval.featurestore.store import open_store

    arrays: dict[str, np.ndarray] = {}
    files: list[Path] = []
    keys: dict[str, Any] = {}
    notes: list[str] = []
    mapped = True
    for split in ("train", "test"):
        folder = path / split
        man = folder / "manifest.json"
        if not man.is_file():
            raise fail(path, f"no {split}/manifest.json; a feature-store pair needs train/ and test/ stores "
                             "(umae's feature cache folders) and train_labels / test_labels beside them")
        try:
            key = StoreKey.from_json(json.loads(man.read_text())["key"])
        except (ValueError, TypeError, KeyError, UmaeError):
            raise fail(man, "not a umae feature store manifest (unreadable key); point --features at "
                            "a folder whose train/ and test/ are stores umae wrote") from None
        store = open_store(folder, key)
        if store is None:
            raise fail(folder, "a damaged feature store (manifest, features.npy or valid.npy do not agree); "
                               "extract it again")
        feats = store.read(verify=True)  # incomplete or damaged chunks: UmaeError naming the fix
        valid = store.valid()
        lab_file = _labels_file(path, f"{split}_labels", path)
        labels = _read_labels(lab_file)
        if len(labels) != len(feats):
            raise fail(lab_file, f"has {len(labels)} labels but the {split} store holds {len(feats)} rows; "
                                 "give one label per stored row, in store order")
        if not valid.all():
            notes.append(f"{split}: {int((~valid).sum())} rows the store marks invalid (undecodable images) "
                         "left out with their labels")
            feats, labels = np.asarray(feats[valid]), np.asarray(labels)[valid]
            mapped = False
        arrays[f"{split}_features"], arrays[f"{split}_labels"] = feats, labels
        files += [folder / "features.npy", folder / "valid.npy", man, lab_file]
        keys[split] = key.to_json()
    names, nfile = _class_names_file(path)
    return RawFeatures(arrays, names, files + ([nfile] if nfile else []), "feature-store", mapped, notes,
                       extra={"store_keys": keys})
