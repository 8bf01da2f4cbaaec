"""MAE LightningModules whose encoder is a timm ViT under a prefix: solo-learn and lightly.

Both save PyTorch Lightning checkpoints (``{'state_dict', 'epoch', 'global_step',
'pytorch-lightning_version', ...}``; a bare ``torch.save(module.state_dict())`` reads the same).

- ``solo-learn`` (``solo.methods.MAE``): the encoder ``backbone.*`` with timm names
  (``solo.backbones.vit.vit_mae``: LayerNorm eps 1e-6), the decoder ``decoder.*`` with the
  official names (its ``nn.LayerNorm``s use torch's eps 1e-5), the online linear head
  ``classifier.*`` (dropped). Its ViT-Tiny and ViT-Small use 12 heads; the ``args.json`` that
  solo-learn writes beside each checkpoint names the backbone (so the heads), the decoder's heads
  and the dataset (so the pixel normalisation).
- ``lightly`` (``MaskedVisionTransformerTIMM`` + ``MAEDecoderTIMM``, as in lightly's MAE example):
  the encoder ``backbone.vit.*`` (a timm VisionTransformer), an encoder-side ``backbone.mask_token``
  that MAE never uses (dropped), the decoder ``decoder.*`` with the official names (eps 1e-6).
  lightly 1.6.0's example uses ``MaskedVisionTransformerDecoderTIMM`` instead: ``decoder.blocks`` /
  ``decoder.norm`` / ``decoder.pos_embed`` / ``decoder.mask_token``, with ``decoder_embed`` and
  ``prediction_head`` on the module itself; renamed to the official names.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from umae_eval.checkpoints.arch import HEADS_UNKNOWN
from umae_eval.checkpoints.info import ParsedCheckpoint
from umae_eval.errors import UmaeError

#: solo.backbones.vit.vit_mae: backbone name -> heads.
_SOLO_HEADS = {"vit_tiny": 12, "vit_small": 12, "vit_base": 12, "vit_large": 16, "vit_huge": 16}
#: solo.data.pretrain_dataloader's MEANS_N_STD.
_SOLO_NORM = {"cifar10": ((0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
              "cifar100": ((0.5071, 0.4865, 0.4409), (0.2673, 0.2564, 0.2762)),
              "stl10": ((0.4914, 0.4823, 0.4466), (0.247, 0.243, 0.261))}
_PREFIX = {"lightly": "backbone.vit.", "solo-learn": "backbone."}
#: lightly's MaskedVisionTransformerDecoderTIMM (1.6.0) -> the official decoder names that
#: MAEDecoderTIMM and solo-learn already use (those pass through unchanged).
_LIGHTLY_DECODER = {"blocks": "decoder_blocks", "norm": "decoder_norm", "pos_embed": "decoder_pos_embed"}


def _state(obj: Any) -> Mapping[str, Any] | None:
    inner = obj.get("state_dict") if isinstance(obj, Mapping) else None
    return inner if isinstance(inner, Mapping) else (obj if isinstance(obj, Mapping) else None)


def detect(obj: Any) -> str | None:
    """``'lightly'``, ``'solo-learn'`` or None, from where the timm ViT's keys sit."""
    state = _state(obj)
    if state is None:
        return None
    for layout, prefix in _PREFIX.items():
        if f"{prefix}patch_embed.proj.weight" in state and f"{prefix}cls_token" in state:
            return layout
    return None


def _solo_args(path: Path) -> dict[str, Any] | None:
    args = path.parent / "args.json"
    if not args.is_file():
        return None
    try:
        data = json.loads(args.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return data if isinstance(data, dict) else None


def parse(obj: Mapping[str, Any], layout: str, path: Path) -> ParsedCheckpoint:
    """Split a solo-learn / lightly state dict into timm encoder and official decoder names."""
    state = _state(obj)
    assert state is not None
    prefix = _PREFIX[layout]
    encoder, decoder, dropped = {}, {}, []
    new_names = False
    for key, value in state.items():
        if key.startswith(prefix):
            name = key[len(prefix):]
            if name.startswith("head."):
                dropped.append(key)
            else:
                encoder[name] = value
        elif key.startswith("decoder."):
            first, dot, rest = key[len("decoder."):].partition(".")
            if layout == "lightly":
                first = _LIGHTLY_DECODER.get(first, first)
            decoder[first + dot + rest] = value
        elif layout == "lightly" and key.startswith(("decoder_embed.", "prediction_head.")):
            # lightly 1.6.0's MAE example: the decoder's input Linear and output head sit on the
            # module itself, beside MaskedVisionTransformerDecoderTIMM
            head, rest = key.split(".", 1)
            decoder[("decoder_embed." if head == "decoder_embed" else "decoder_pred.") + rest] = value
            new_names = True
        elif key.startswith(("classifier.", "backbone.mask_token")):
            dropped.append(key)
        else:
            raise UmaeError(f"{path}: unexpected key '{key}' for a {layout} MAE checkpoint")
    hints: dict[str, Any] = {"norm_eps": 1e-6}
    decoder_hints: dict[str, Any] = {}
    metadata: dict[str, Any] = {k: obj[k] for k in ("epoch", "global_step", "pytorch-lightning_version")
                                if isinstance(obj.get(k), (int, str))}
    norm = None
    if layout == "lightly":
        note = "lightly MaskedVisionTransformerTIMM" + (
            "" if not decoder else " + MaskedVisionTransformerDecoderTIMM" if new_names else " + MAEDecoderTIMM")
    else:
        note = "solo-learn MAE"
        args = _solo_args(path)
        if args is None:
            hints[HEADS_UNKNOWN] = ("a solo-learn checkpoint without the args.json solo-learn writes beside it "
                                    "does not record its attention heads (vit_tiny, vit_small and vit_base "
                                    "have 12, vit_large 16): put args.json back beside it")
            note += "; no args.json beside the file: heads from --num-heads"
        else:
            backbone = args.get("backbone") or {}
            name = backbone.get("name") if isinstance(backbone, Mapping) else None
            if name in _SOLO_HEADS:
                hints["num_heads"] = _SOLO_HEADS[name]
            method = args.get("method_kwargs") or {}
            if isinstance(method, Mapping):
                for key, value in (("decoder_num_heads", method.get("decoder_num_heads")),
                                   ("norm_pix_loss", method.get("norm_pix_loss"))):
                    if value is not None:
                        decoder_hints[key] = value
            data = args.get("data") or {}
            dataset = data.get("dataset") if isinstance(data, Mapping) else None
            norm = _SOLO_NORM.get(str(dataset))
            metadata["args"] = args
            note += f", {name or 'backbone'} from args.json"
        if decoder:
            note += "; decoder LayerNorm eps 1e-5 (torch's default), umae's is 1e-6"
    return ParsedCheckpoint(layout=layout, encoder=encoder, decoder=decoder, hints=hints,
                            decoder_hints=decoder_hints, metadata=metadata, note=note, norm=norm)
