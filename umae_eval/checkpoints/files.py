"""Reading checkpoint files: torch pickles (weights-only unless trusted), safetensors, folders.

Only ``argparse.Namespace`` is allow-listed for unpickling (scoped to the one ``torch.load``
call); anything else needs ``trust_pickle=True`` (the CLI's ``--trust-pickle``).
"""

from __future__ import annotations

import argparse
import json
import math
import pickle
import re
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from umae_eval.errors import UmaeError
from umae_eval.oom import is_out_of_memory

#: The only global unpickled without --trust-pickle: the ``args`` of MAE/U-MAE training files.
_SAFE_GLOBALS: list[Any] = [argparse.Namespace]
#: torch's weights-only refusals: a global not allow-listed, or one from a blocked module (os, ...).
_UNSAFE_GLOBAL = re.compile(r"GLOBAL ([\w.]+) (?:was not an allowed global|whose module [\w.]+ is blocked)")

#: Weight files of a Hugging Face folder, in the order ``from_pretrained`` prefers them.
HF_WEIGHT_FILES = ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                   "pytorch_model.bin.index.json")


def one_line(exc: BaseException, limit: int = 120) -> str:
    """The gist of a reader's error: torch's weights-only advice and miniz's hints dropped."""
    text = " ".join(str(exc).split())
    if "WeightsUnpickler error:" in text:
        text = text.split("WeightsUnpickler error:", 1)[1].split("Check the documentation", 1)[0]
    text = text.strip().split(". ", 1)[0].rstrip(".") or type(exc).__name__
    return text if len(text) <= limit else text[: limit - 3] + "..."


def looks_like_safetensors(path: Path) -> bool:
    """By suffix, or by the header: 8 little-endian length bytes then ``{``."""
    if path.suffix == ".safetensors":
        return True
    with open(path, "rb") as fh:
        head = fh.read(9)
    return len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < 1 << 32


def read_safetensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file, on the CPU."""
    from safetensors.torch import load_file

    try:
        return load_file(str(path), device="cpu")
    except Exception as exc:  # safetensors raises its own SafetensorError and OSError
        raise UmaeError(f"{path}: truncated or not a safetensors file ({one_line(exc)}); "
                        "re-download or re-export it") from exc


def read_torch(path: Path, trust_pickle: bool) -> Any:
    """``torch.load`` on the CPU: weights-only (plus ``argparse.Namespace``) unless trusted."""
    with warnings.catch_warnings():
        # torch warns about pickle protocols it did not write; the user cannot act on it.
        warnings.filterwarnings("ignore", message=".*pickle protocol.*")
        if trust_pickle:
            try:
                return torch.load(path, map_location="cpu", weights_only=False)
            except (ImportError, AttributeError):
                # A whole-model pickle whose classes live in another repository: keep the tensors.
                from umae_eval.checkpoints.pickles import load_with_stubs

                try:
                    return load_with_stubs(path)
                except Exception as exc:
                    raise UmaeError(f"{path}: unpickling needs code that is not importable here "
                                    f"({one_line(exc)}); install the package that wrote it or "
                                    "re-save only its state dict") from exc
            except Exception as exc:
                raise _load_error(path, exc) from exc
        try:
            with torch.serialization.safe_globals(_SAFE_GLOBALS):
                return torch.load(path, map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            match = _UNSAFE_GLOBAL.search(str(exc))
            if match:
                from umae_eval.checkpoints.pickles import weights_beside_training_state

                try:
                    plain = weights_beside_training_state(path)
                except Exception:  # noqa: BLE001 - anything odd: refused below as before
                    plain = None
                if plain is not None:  # only the training state needed other classes: left out
                    return plain[0]
                raise UmaeError(
                    f"{path}: needs full unpickling of {match.group(1)}, which is not allowed by "
                    "default; pass --trust-pickle (trust_pickle=True) only if you trust the file, "
                    "since unpickling can run arbitrary code") from exc
            raise _load_error(path, exc) from exc
        except Exception as exc:  # zip / EOF / index errors of torch's readers
            raise _load_error(path, exc) from exc


def _load_error(path: Path, exc: BaseException) -> UmaeError:
    """A failed torch.load as one line: out of memory said as such, not as a damaged file."""
    if is_out_of_memory(exc):
        size = path.stat().st_size / 2**30 if path.exists() else 0.0
        return UmaeError(f"{path}: not enough memory to load it ({size:.1f} GiB on disk; {one_line(exc)}); "
                         "free memory or use a machine with more")
    return UmaeError(f"{path}: truncated or not a PyTorch checkpoint ({one_line(exc)}); re-download or re-save it")


def check_file(path: Path) -> None:
    """Refuse a missing, non-regular or empty file with one line."""
    if not path.exists():
        raise UmaeError(f"checkpoint not found: {path}; check the path")
    if not path.is_file():
        raise UmaeError(f"checkpoint {path} is not a file; give the .pth/.bin/.safetensors file")
    if path.stat().st_size == 0:
        raise UmaeError(f"{path}: the file is empty (truncated download?); re-download it")


def read_any(path: Path, trust_pickle: bool) -> Any:
    """The object in one checkpoint file (safetensors or torch)."""
    check_file(path)
    return read_safetensors(path) if looks_like_safetensors(path) else read_torch(path, trust_pickle)


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object file (a Hugging Face ``config.json``), refused in one line if it is not one."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UmaeError(f"{path}: not a readable JSON file ({one_line(exc)}); re-download it") from exc
    if not isinstance(data, dict):
        raise UmaeError(f"{path}: expected a JSON object, got {type(data).__name__}")
    return data


def folder_weights(folder: Path) -> Path:
    """The weights file of a Hugging Face ``save_pretrained`` folder.

    Raises
    ------
    UmaeError
        When the folder holds none of :data:`HF_WEIGHT_FILES` (names what it holds).
    """
    for name in HF_WEIGHT_FILES:
        if (folder / name).is_file():
            return folder / name
    if (folder / "last.pth").is_file():
        raise UmaeError(f"{folder} is a umae run folder, not a Hugging Face one; pass "
                        f"{folder / 'last.pth'} (or a checkpoint-<epoch>.pth in it)")
    held = sorted(p.name for p in folder.iterdir())[:8]
    raise UmaeError(f"checkpoint folder {folder} holds no {' / '.join(HF_WEIGHT_FILES[::2])} "
                    f"(it holds: {', '.join(held) or 'nothing'}); give a checkpoint file or a "
                    "Hugging Face save_pretrained folder")


def read_weights(path: Path, trust_pickle: bool) -> Any:
    """One weights file, or every shard named by a ``*.index.json`` (merged into one dict)."""
    if not path.name.endswith(".index.json"):
        return read_any(path, trust_pickle)
    index = read_json(path)
    weight_map = index.get("weight_map")
    if not isinstance(weight_map, Mapping) or not weight_map:
        raise UmaeError(f"{path}: no 'weight_map' in the shard index; re-download the folder")
    merged: dict[str, Any] = {}
    for shard in dict.fromkeys(str(v) for v in weight_map.values()):
        # transformers writes bare file names: a path, absolute or through '..', is refused
        # (an index must not make umae open files outside the checkpoint folder)
        if not shard or "/" in shard or "\\" in shard or shard in (".", ".."):
            raise UmaeError(f"{path}: shard {shard!r} is not a file name inside {path.parent}; "
                            "the index may only name files of its own folder (re-download it)")
        part = read_any(path.parent / shard, trust_pickle)
        if not isinstance(part, Mapping):
            raise UmaeError(f"{path.parent / shard}: a shard that is not a state dict")
        merged.update(part)
    return merged


def json_safe(obj: Any) -> Any:
    """Plain JSON values for metadata: tensors summarised, Namespaces as dicts, NaN as text."""
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else str(obj)
    if isinstance(obj, (np.integer, np.floating, np.bool_)):
        return json_safe(obj.item())
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, argparse.Namespace):
        return json_safe(vars(obj))
    if isinstance(obj, (torch.Tensor, np.ndarray)):
        n = obj.numel() if isinstance(obj, torch.Tensor) else obj.size
        return obj.tolist() if n <= 16 else f"<{type(obj).__name__} shape {tuple(obj.shape)}>"
    return str(obj)
