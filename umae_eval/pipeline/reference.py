"""The paper's reference numbers (How Mask Matters, NeurIPS 2022, Table 1), and when they apply.

A report shows the paper's linear-probe accuracy next to a checkpoint only when the dataset,
the backbone and the method match Table 1's row; it lists what still differs from the paper's
recipe (epochs, patch size, probe protocol) so the reader knows how far the comparison goes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: CIFAR-10's class names in label order (how a CIFAR-10 test split is recognised).
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")

#: Table 1, linear probe (%): {(dataset, backbone): {method: accuracy}}.
TABLE1_LINEAR: dict[tuple[str, str], dict[str, float]] = {
    ("CIFAR-10", "ViT-Tiny"): {"MAE": 59.6, "U-MAE": 68.9},
    ("CIFAR-10", "ViT-Base"): {"MAE": 61.7, "U-MAE": 70.2},
    ("ImageNet-100", "ViT-Base"): {"MAE": 61.2, "U-MAE": 67.5},
    ("ImageNet-100", "ViT-Large"): {"MAE": 64.4, "U-MAE": 72.8},
    ("ImageNet-1K", "ViT-Base"): {"MAE": 55.4, "U-MAE": 58.5},
    ("ImageNet-1K", "ViT-Large"): {"MAE": 62.2, "U-MAE": 65.8},
}

#: Backbones by (width, depth).
BACKBONES: dict[tuple[int, int], str] = {(192, 12): "ViT-Tiny", (768, 12): "ViT-Base", (1024, 24): "ViT-Large"}

#: The paper's recipe for each dataset (what a matching row was trained with).
PAPER_RECIPE: dict[str, dict[str, Any]] = {
    "CIFAR-10": {"epochs": 2000, "patch_size": 2, "mask_ratio": 0.75, "lam": 0.01},
    "ImageNet-100": {"epochs": 200, "patch_size": 16, "mask_ratio": 0.75, "lam": 0.01},
    "ImageNet-1K": {"epochs": 200, "patch_size": 16, "mask_ratio": 0.75, "lam": 0.01},
}


@dataclass(frozen=True)
class Reference:
    """The paper's number for one checkpoint's setting, and what differs from the paper's run."""

    dataset: str
    backbone: str
    method: str
    linear_accuracy: float
    source: str = "Table 1 (linear probe)"
    differences: tuple[str, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "backbone": self.backbone, "method": self.method,
                "linear_accuracy": self.linear_accuracy, "source": self.source,
                "differences": list(self.differences)}


def dataset_name(class_names: Sequence[str], image_size: Sequence[int] | int | None,
                 class_ids: Sequence[str] = ()) -> str | None:
    """``'CIFAR-10'``, ``'ImageNet-100'``, ``'ImageNet-1K'`` or None (not a Table 1 dataset).

    CIFAR-10 is recognised by its ten class names; ImageNet subsets by 100 / 1,000 classes that
    are WordNet ids (``n01440764``) or, for in-memory sets, at an image size of at least 160 px
    (CIFAR-100 also has 100 classes, at 32 px).
    """
    import re

    names = tuple(str(c).strip().lower() for c in class_names)
    if names == CIFAR10_CLASSES:
        return "CIFAR-10"
    ids = list(class_ids) or list(class_names)
    wnids = bool(ids) and all(re.fullmatch(r"n\d{8}", str(c)) for c in ids)
    size = (min(image_size) if isinstance(image_size, Sequence) and len(image_size) else
            int(image_size) if isinstance(image_size, (int, float)) else 0)
    if wnids or size >= 160:
        return {100: "ImageNet-100", 1000: "ImageNet-1K"}.get(len(names))
    return None


def backbone_name(embed_dim: int, depth: int) -> str | None:
    """``'ViT-Tiny'`` (192 wide, 12 deep), ``'ViT-Base'``, ``'ViT-Large'`` or None."""
    return BACKBONES.get((int(embed_dim), int(depth)))


def table1_setting(data: Mapping[str, Any]) -> str | None:
    """The Table 1 dataset of an analysis' data settings (``class_names``, ``image_size``)."""
    return dataset_name(data.get("class_names", []), data.get("image_size"), data.get("class_ids") or ())


def reference_for(data: Mapping[str, Any], arch: Mapping[str, Any], method: str | None, *,
                  epochs: int | None = None, mask_ratio: float | None = None,
                  protocol: str | None = None) -> Reference | None:
    """The paper's linear accuracy for this dataset, backbone and method, or None.

    ``arch`` has ``embed_dim``, ``depth``, ``patch_size``; ``method`` is ``'MAE'`` or ``'U-MAE'``
    (other methods have no Table 1 row). The recipe fields given are compared with the paper's
    and each difference is named in ``Reference.differences``.
    """
    ds = table1_setting(data)
    bb = backbone_name(int(arch.get("embed_dim", 0)), int(arch.get("depth", 0)))
    if ds is None or bb is None or method not in ("MAE", "U-MAE"):
        return None
    row = TABLE1_LINEAR.get((ds, bb))
    if row is None:
        return None
    paper = PAPER_RECIPE[ds]
    diffs = []
    if epochs is not None and epochs != paper["epochs"]:
        diffs.append(f"{epochs} epochs (paper: {paper['epochs']})")
    if arch.get("patch_size") is not None and int(arch["patch_size"]) != paper["patch_size"]:
        diffs.append(f"patch {arch['patch_size']} (paper: {paper['patch_size']})")
    if mask_ratio is not None and abs(mask_ratio - paper["mask_ratio"]) > 1e-9:
        diffs.append(f"mask ratio {mask_ratio:g} (paper: {paper['mask_ratio']:g})")
    if protocol is not None and protocol != "mae":
        diffs.append(f"linear probe '{protocol}' (paper: MAE's BatchNorm + LARS recipe, --protocol mae)")
    return Reference(ds, bb, method, row[method], differences=tuple(diffs))


def table1_rows(dataset: str | None) -> dict[str, dict[str, float]]:
    """Table 1's linear accuracies for one dataset, by backbone (for 'does not apply' notes)."""
    return {bb: v for (ds, bb), v in TABLE1_LINEAR.items() if ds == dataset}
