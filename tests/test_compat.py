"""The timm-on-CPU compatibility step."""

from __future__ import annotations

import subprocess
import sys


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_timm_imports_and_builds_a_vit_through_umae() -> None:
    proc = _run(
        "from umae_eval.compat import ensure_timm_importable\n"
        "ensure_timm_importable()\n"
        "import timm, torch\n"
        "m = timm.create_model('vit_tiny_patch16_224', img_size=32, patch_size=4, num_classes=0)\n"
        "print(tuple(m(torch.zeros(1, 3, 32, 32)).shape))\n"
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("(1, 192)")


def test_step_is_a_no_op_when_torchvision_loads_normally(tmp_path) -> None:
    # A CUDA machine's torchvision imports by itself. Stand in for it with a package that imports
    # cleanly, first on sys.path: the step must leave it alone and define no schema.
    fake = tmp_path / "torchvision"
    fake.mkdir()
    (fake / "__init__.py").write_text("__version__ = '0.0-standin'\n")
    proc = subprocess.run(
        [sys.executable, "-c",
         "import sys; sys.path.insert(0, sys.argv[1])\n"
         "from umae_eval import compat\n"
         "import torchvision\n"
         "print(torchvision.__version__, compat.ensure_timm_importable(), compat._LIBRARY is None,"
         " compat._op_exists('nms'))\n",
         str(tmp_path)],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split() == ["0.0-standin", "False", "True", "False"]


def test_step_defines_schemas_only_when_the_extension_is_missing() -> None:
    proc = _run(
        "import torch, importlib.util\n"
        "from umae_eval import compat\n"
        "compat.ensure_timm_importable()\n"
        "import torchvision\n"
        "missing = compat._LIBRARY is not None\n"
        "has_nms = compat._op_exists('nms')\n"
        "print(missing, has_nms, torchvision.extension._has_ops())\n"
    )
    assert proc.returncode == 0, proc.stderr
    missing, has_nms, own_ops = proc.stdout.split()
    # Either torchvision brought its own ops, or the step defined the schema: nms exists both ways.
    assert has_nms == "True"
    # The stand-in schemas are defined exactly when torchvision's C extension did not load.
    assert (missing == "True") == (own_ops == "False")


def test_unrelated_runtime_errors_are_not_swallowed(monkeypatch) -> None:
    import builtins

    from umae_eval import compat

    real_import = builtins.__import__
    saved = {k: v for k, v in sys.modules.items() if k.startswith("torchvision")}
    for k in saved:
        del sys.modules[k]
    monkeypatch.setattr(compat, "_LIBRARY", None)

    def fake_import(name, *args, **kwargs):
        if name == "torchvision":
            raise RuntimeError("CUDA driver exploded")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    try:
        import pytest

        with pytest.raises(RuntimeError, match="CUDA driver exploded"):
            compat.ensure_timm_importable()
    finally:
        monkeypatch.setattr(builtins, "__import__", real_import)
        sys.modules.update(saved)
