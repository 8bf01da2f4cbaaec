"""Whole-model pickles (``torch.save(model)``): their tensors, even when the class is not importable.

IcarusWizard/MAE, the CIFAR-10 code behind Table 1, saves ``torch.save(model)``: the pickle names
its classes (``model.MAE_ViT``, ``einops.layers.torch.Rearrange``, ...), which exist only in that
repository. With ``--trust-pickle`` umae first unpickles normally; when a class cannot be
imported, it unpickles again with each missing class replaced by :class:`Stub`, which only keeps
the state pickle hands it. ``nn.Module`` state is plain (``_parameters``, ``_buffers``,
``_modules``), so the tensors are recovered by walking it; nothing of the missing code runs.
"""

from __future__ import annotations

import pickle
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn


class Stub:
    """Stands in for a class that cannot be imported; keeps the pickled state and nothing else."""

    _stub_origin = "?"

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.__dict__["_stub_args"] = args

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_stub_state"] = state

    def __call__(self, *args: Any, **kwargs: Any) -> Stub:  # a stubbed function used as a reducer
        return Stub(*args)


def _stub_class(module: str, name: str) -> type:
    return type(name, (Stub,), {"__module__": module, "_stub_origin": f"{module}.{name}"})


class _StubUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        try:
            return super().find_class(module, name)
        except (ImportError, AttributeError):
            return _stub_class(module, name)


#: What ``torch.load(pickle_module=...)`` needs: ``Unpickler`` and ``load``.
STUB_PICKLE = types.SimpleNamespace(Unpickler=_StubUnpickler, load=pickle.load, __name__="stub_pickle")


def load_with_stubs(path: Path) -> Any:
    """``torch.load(weights_only=False)`` with every unimportable class stubbed."""
    return torch.load(path, map_location="cpu", weights_only=False, pickle_module=STUB_PICKLE)


def is_module_like(obj: Any) -> bool:
    """An ``nn.Module`` or a stub of one (its pickled state has ``_parameters`` / ``_modules``)."""
    if isinstance(obj, nn.Module):
        return True
    state = obj.__dict__.get("_stub_state") if isinstance(obj, Stub) else None
    return isinstance(state, Mapping) and "_parameters" in state and "_modules" in state


def module_state(obj: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """The state dict of a (possibly stubbed) module tree: parameters and persistent buffers."""
    if isinstance(obj, nn.Module):
        out: dict[str, torch.Tensor] = {}
        for name, p in obj._parameters.items():
            if p is not None:
                out[prefix + name] = p.detach()
        skip = getattr(obj, "_non_persistent_buffers_set", set())
        for name, b in obj._buffers.items():
            if b is not None and name not in skip:
                out[prefix + name] = b.detach()
        children = obj._modules
    else:
        state = obj.__dict__["_stub_state"]
        out = {prefix + n: p.detach() for n, p in state["_parameters"].items() if p is not None}
        skip = state.get("_non_persistent_buffers_set", set())
        out.update({prefix + n: b.detach() for n, b in state.get("_buffers", {}).items()
                    if b is not None and n not in skip})
        children = state["_modules"]
    for name, child in children.items():
        if child is not None and is_module_like(child):
            out.update(module_state(child, f"{prefix}{name}."))
    return out


def layer_norm_eps(obj: Any) -> set[float]:
    """The ``eps`` of every LayerNorm in a (possibly stubbed) module tree (pickled with it)."""
    if isinstance(obj, nn.Module):
        return {float(m.eps) for m in obj.modules() if isinstance(m, nn.LayerNorm)}
    found: set[float] = set()
    for child in obj.__dict__["_stub_state"]["_modules"].values():
        if child is not None and is_module_like(child):
            found |= layer_norm_eps(child)
    return found


def class_name(obj: Any) -> str:
    """``module.Class`` of a pickled model (the stubbed class's original name too)."""
    if isinstance(obj, Stub):
        return type(obj)._stub_origin
    return f"{type(obj).__module__}.{type(obj).__qualname__}"


# ------------------------------------------------------- weights beside a training state, untrusted

def _allowed_globals() -> dict[str, Any]:
    """What ``torch.load(weights_only=True)`` may build (torch's own allow-list)."""
    try:
        from torch import _weights_only_unpickler as wou

        allowed = dict(wou._get_allowed_globals())
        allowed.update(wou._get_user_allowed_globals())
        return allowed
    except (ImportError, AttributeError):  # a torch without the private helper: nothing extra
        return {}


class _RestrictedStubUnpickler(pickle.Unpickler):
    """Builds only what weights-only loading may build; *every* other global (a class, or a
    function such as ``os.system`` a hostile pickle reduces with) becomes a :class:`Stub`, whose
    constructor and ``__setstate__`` only store their arguments: nothing of the file's code runs,
    and no module is imported."""

    _allowed: dict[str, Any] | None = None

    def find_class(self, module: str, name: str) -> Any:
        if _RestrictedStubUnpickler._allowed is None:
            _RestrictedStubUnpickler._allowed = _allowed_globals()
        found = _RestrictedStubUnpickler._allowed.get(f"{module}.{name}")
        return found if found is not None else _stub_class(module, name)


RESTRICTED_STUB_PICKLE = types.SimpleNamespace(Unpickler=_RestrictedStubUnpickler, load=pickle.load,
                                               __name__="restricted_stub_pickle")


def _holds_stub(obj: Any, depth: int = 0) -> bool:
    if isinstance(obj, Stub) or depth > 50:
        return True
    if isinstance(obj, Mapping):
        return any(_holds_stub(k, depth + 1) or _holds_stub(v, depth + 1) for k, v in obj.items())
    if isinstance(obj, (list, tuple, set)):
        return any(_holds_stub(v, depth + 1) for v in obj)
    return False


def weights_beside_training_state(path: Path) -> tuple[dict[str, Any], list[str]] | None:
    """A checkpoint's plain parts when only its *training state* needs classes weights-only
    loading refuses (mmpretrain's ``epoch_N.pth``: mmengine's ``HistoryBuffer`` in
    ``message_hub``), read without running any of it; None when the weights themselves need them.

    Returns
    -------
    (dict, list of str) or None
        The top-level entries that hold no stubbed object (``state_dict``, ``meta``, ...) and the
        names of the entries left out.
    """
    obj = torch.load(path, map_location="cpu", weights_only=False, pickle_module=RESTRICTED_STUB_PICKLE)
    if not isinstance(obj, Mapping):
        return None
    kept = {k: v for k, v in obj.items() if isinstance(k, str) and not _holds_stub(v)}
    if not isinstance(kept.get("meta"), Mapping):
        return None  # only mmengine's {'meta', 'state_dict', <training state>}; others need trust
    weights = kept.get("state_dict")
    if not isinstance(weights, Mapping) or not weights or \
            not all(isinstance(v, torch.Tensor) for v in weights.values()):
        return None
    return kept, sorted(str(k) for k in obj if k not in kept)
