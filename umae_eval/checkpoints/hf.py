"""Hugging Face transformers ViTMAE (``facebook/vit-mae-base|large|huge``) <-> timm / official names.

A ``save_pretrained`` folder holds ``config.json`` and ``model.safetensors`` (or
``pytorch_model.bin``, possibly sharded with an ``*.index.json``). Three key vocabularies occur:

- the hub's files and transformers 4.x: ``vit.encoder.layer.{i}.attention.attention.query`` ...,
  decoder ``decoder.decoder_layers.{i}.*``;
- what transformers 5.x writes with ``save_pretrained``: the same encoder names, but the decoder
  as ``decoder.decoder_encoder.layer.{i}.*``;
- transformers 5.x module names (``torch.save(model.state_dict())``): ``vit.layers.{i}.attention.
  q_proj``, ``o_proj``, ``mlp.fc1`` / ``mlp.fc2``.

``ViTMAEForPreTraining`` prefixes the encoder with ``vit.`` and adds ``decoder.*``;
``ViTMAEModel`` has the encoder keys without prefix. Separate query / key / value projections
are concatenated (in that order) into timm's fused ``attn.qkv``, which is exactly how timm's
``Attention`` splits its output into q, k, v.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import torch

from umae_eval.checkpoints.arch import ViTArch
from umae_eval.checkpoints.info import ParsedCheckpoint
from umae_eval.errors import UmaeError

_TOP = {
    "embeddings.cls_token": "cls_token",
    "embeddings.position_embeddings": "pos_embed",
    "embeddings.patch_embeddings.projection.weight": "patch_embed.proj.weight",
    "embeddings.patch_embeddings.projection.bias": "patch_embed.proj.bias",
    "layernorm.weight": "norm.weight",
    "layernorm.bias": "norm.bias",
}
_DECODER_TOP = {
    "decoder.mask_token": "mask_token",
    "decoder.decoder_pos_embed": "decoder_pos_embed",
    "decoder.decoder_embed.weight": "decoder_embed.weight",
    "decoder.decoder_embed.bias": "decoder_embed.bias",
    "decoder.decoder_norm.weight": "decoder_norm.weight",
    "decoder.decoder_norm.bias": "decoder_norm.bias",
    "decoder.decoder_pred.weight": "decoder_pred.weight",
    "decoder.decoder_pred.bias": "decoder_pred.bias",
}
#: A layer's module names (4.x / hub, then 5.x) -> timm's, q/k/v kept apart until fused.
_LAYER = {
    "layernorm_before": "norm1", "layernorm_after": "norm2",
    "attention.attention.query": "q", "attention.q_proj": "q",
    "attention.attention.key": "k", "attention.k_proj": "k",
    "attention.attention.value": "v", "attention.v_proj": "v",
    "attention.output.dense": "attn.proj", "attention.o_proj": "attn.proj",
    "intermediate.dense": "mlp.fc1", "mlp.fc1": "mlp.fc1",
    "output.dense": "mlp.fc2", "mlp.fc2": "mlp.fc2",
}
#: timm's names -> the hub's (what :func:`to_hf` writes; every transformers version reads them).
_LAYER_OUT = {"norm1": "layernorm_before", "norm2": "layernorm_after",
              "attn.proj": "attention.output.dense", "mlp.fc1": "intermediate.dense",
              "mlp.fc2": "output.dense"}
_ENC_LAYER = re.compile(r"^(?:encoder\.layer|layers)\.(\d+)\.(.+)\.(weight|bias)$")
_DEC_LAYER = re.compile(r"^decoder\.(?:decoder_layers|decoder_encoder\.layer)\.(\d+)\.(.+)\.(weight|bias)$")
#: Heads of models built on these weights (ViTForImageClassification, ViTModel): dropped.
_DROPPED = ("classifier.", "pooler.", "embeddings.mask_token")

#: ViTMAEConfig's defaults where a lone file has no config.json beside it.
HF_DEFAULT_EPS = 1e-12


def detect(obj: Any) -> bool:
    """True for a state dict with ViTMAE's embedding names (with or without ``vit.``)."""
    if not isinstance(obj, Mapping):
        return False
    return any(f"{p}embeddings.patch_embeddings.projection.weight" in obj for p in ("", "vit."))


def _fuse(parts: dict[str, dict[str, torch.Tensor]], where: str, source: str) -> dict[str, torch.Tensor]:
    """q/k/v weights (and biases) of one layer -> ``attn.qkv.weight`` (3D, D) (+ ``.bias``)."""
    out: dict[str, torch.Tensor] = {}
    for kind in ("weight", "bias"):
        have = [n for n in "qkv" if kind in parts.get(n, {})]
        if not have:
            continue
        if len(have) != 3:
            raise UmaeError(f"{source}: {where} has a {kind} for only {', '.join(have)} of query/key/value; "
                            "the file is incomplete")
        out[f"attn.qkv.{kind}"] = torch.cat([parts[n][kind] for n in "qkv"], dim=0)
    if "attn.qkv.weight" not in out:
        raise UmaeError(f"{source}: {where} has no query/key/value weights")
    return out


def _layers(matches: list[tuple[int, str, str, torch.Tensor]], prefix: str, where: str,
            source: str) -> dict[str, torch.Tensor]:
    by_layer: dict[int, dict[str, dict[str, torch.Tensor]]] = {}
    for i, module, kind, value in matches:
        name = _LAYER.get(module)
        if name is None:
            raise UmaeError(f"{source}: unexpected module '{module}' in {where} {i}; "
                            "not a ViTMAE layer (layer scale or another variant?)")
        by_layer.setdefault(i, {}).setdefault(name, {})[kind] = value
    out: dict[str, torch.Tensor] = {}
    for i in sorted(by_layer):
        parts = by_layer[i]
        for name, tensors in parts.items():
            if name not in "qkv":
                for kind, value in tensors.items():
                    out[f"{prefix}.{i}.{name}.{kind}"] = value
        for key, value in _fuse(parts, f"{where} {i}", source).items():
            out[f"{prefix}.{i}.{key}"] = value
    return out


def _config_int(config: Mapping[str, Any], field: str, source: str) -> int:
    """A positive integer field of config.json, refused in one line otherwise (JSON true is not 1)."""
    value = config[field]
    if type(value) is not int or value < 1:
        raise UmaeError(f"{source}: config.json has {field} {value!r}; it must be a positive integer")
    return value


def _config_eps(config: Mapping[str, Any], source: str) -> float:
    value = config.get("layer_norm_eps", HF_DEFAULT_EPS)
    if type(value) not in (int, float) or not 0 < value < 1:
        raise UmaeError(f"{source}: config.json has layer_norm_eps {value!r}; it must be a number "
                        "between 0 and 1 (ViTMAE's default is 1e-12)")
    return float(value)


def _config_bool(config: Mapping[str, Any], field: str, default: bool, source: str) -> bool:
    value = config.get(field, default)
    if not isinstance(value, bool):
        raise UmaeError(f"{source}: config.json has {field} {value!r}; it must be true or false")
    return value


def parse(state: Mapping[str, torch.Tensor], config: Mapping[str, Any] | None,
          source: str) -> ParsedCheckpoint:
    """Rename a ViTMAE state dict to timm (encoder) and official MAE (decoder) names.

    Parameters
    ----------
    state : Mapping[str, Tensor]
        ``ViTMAEForPreTraining`` (``vit.*`` + ``decoder.*``) or ``ViTMAEModel`` keys, any of
        the three vocabularies in the module docstring.
    config : Mapping, optional
        The folder's ``config.json``: heads, LayerNorm eps, qkv bias, activation and the
        decoder's heads come from it; without it, ViTMAEConfig's eps (1e-12) and ``D / 64`` heads.
    source : str
        File name for messages.

    Raises
    ------
    UmaeError
        A key that is no part of ViTMAE, q/k/v incomplete, an activation other than exact GELU,
        or a config that contradicts the weights.
    """
    pretraining = any(k.startswith("vit.") for k in state)
    encoder: dict[str, torch.Tensor] = {}
    decoder: dict[str, torch.Tensor] = {}
    enc_layers: list[tuple[int, str, str, torch.Tensor]] = []
    dec_layers: list[tuple[int, str, str, torch.Tensor]] = []
    dropped: list[str] = []
    for key, value in state.items():
        if key in _DECODER_TOP:
            decoder[_DECODER_TOP[key]] = value
            continue
        if (m := _DEC_LAYER.match(key)):
            dec_layers.append((int(m.group(1)), m.group(2), m.group(3), value))
            continue
        inner = key[len("vit."):] if pretraining and key.startswith("vit.") else key
        if inner in _TOP:
            encoder[_TOP[inner]] = value
        elif (m := _ENC_LAYER.match(inner)):
            enc_layers.append((int(m.group(1)), m.group(2), m.group(3), value))
        elif inner.startswith(_DROPPED):
            dropped.append(key)
        else:
            raise UmaeError(f"{source}: unexpected key '{key}' for a Hugging Face ViTMAE state dict")
    encoder.update(_layers(enc_layers, "blocks", "encoder layer", source))
    decoder.update(_layers(dec_layers, "decoder_blocks", "decoder layer", source))

    cls_name = "ViTMAEForPreTraining" if decoder else "ViTMAEModel"
    hints: dict[str, Any] = {}
    decoder_hints: dict[str, Any] = {}
    dim = encoder["cls_token"].shape[-1] if "cls_token" in encoder else None
    if config is not None:
        act = config.get("hidden_act", "gelu")
        if act != "gelu":
            raise UmaeError(f"{source}: config.json has hidden_act {act!r}; only 'gelu' (exact, as "
                            "MAE and timm use) is supported")
        hidden = config.get("hidden_size")
        if hidden is not None:
            hidden = _config_int(config, "hidden_size", source)
        if dim is not None and hidden is not None and hidden != dim:
            raise UmaeError(f"{source}: config.json says hidden_size {hidden} but the weights are "
                            f"{dim} wide; the folder mixes two models")
        if "num_attention_heads" in config:
            hints["num_heads"] = _config_int(config, "num_attention_heads", source)
        hints["norm_eps"] = _config_eps(config, source)
        hints["qkv_bias"] = _config_bool(config, "qkv_bias", True, source)
        if "decoder_num_attention_heads" in config:
            decoder_hints["decoder_num_heads"] = _config_int(config, "decoder_num_attention_heads", source)
        if "norm_pix_loss" in config:
            decoder_hints["norm_pix_loss"] = _config_bool(config, "norm_pix_loss", False, source)
        note = f"{cls_name}, arch from config.json"
    else:
        hints["norm_eps"] = HF_DEFAULT_EPS
        hints["qkv_bias"] = "blocks.0.attn.qkv.bias" in encoder
        note = (f"{cls_name} keys, no config.json beside the file: heads D/64, "
                f"LayerNorm eps {HF_DEFAULT_EPS:g} (ViTMAEConfig defaults)")
    if dropped:
        note += f"; dropped {len(dropped)} head tensor(s)"
    if decoder:
        note += f"; with a {len({k.split('.')[1] for k in decoder if k.startswith('decoder_blocks.')})}-block decoder"
    return ParsedCheckpoint(layout="hf-vitmae", encoder=encoder, decoder=decoder, hints=hints,
                            decoder_hints=decoder_hints, metadata=dict(config or {}), note=note)


def to_hf(encoder: Mapping[str, torch.Tensor], decoder: Mapping[str, torch.Tensor], arch: ViTArch,
          *, decoder_num_heads: int | None, norm_pix_loss: bool = False,
          mask_ratio: float = 0.75) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """timm / official tensors -> a ``save_pretrained`` state dict (hub names) and ``config.json``.

    ``ViTMAEForPreTraining`` when ``decoder`` is not empty, else ``ViTMAEModel``. q/k/v are split
    from ``attn.qkv`` (rows [0, D), [D, 2D), [2D, 3D)).

    Raises
    ------
    UmaeError
        An encoder without the final norm (ViTMAE always has one) or a decoder whose head count
        is unknown.
    """
    if not arch.has_final_norm:
        raise UmaeError("a Hugging Face ViTMAE always ends with a LayerNorm, but this encoder has "
                        "no final norm (a fine-tuned file?); convert it --to timm or --to official")
    prefix = "vit." if decoder else ""
    out: dict[str, torch.Tensor] = {}
    back_top = {v: k for k, v in _TOP.items()}
    back_dec = {v: k for k, v in _DECODER_TOP.items()}
    block = re.compile(r"^(blocks|decoder_blocks)\.(\d+)\.(.+)\.(weight|bias)$")
    for source, tensors in (("encoder", encoder), ("decoder", decoder)):
        for key, value in tensors.items():
            if key in back_top and source == "encoder":
                out[prefix + back_top[key]] = value
                continue
            if key in back_dec and source == "decoder":
                out[back_dec[key]] = value
                continue
            m = block.match(key)
            if m is None:
                if key.startswith("fc_norm."):
                    continue  # ViTMAE has no fc_norm; it only served average pooling
                raise UmaeError(f"cannot express '{key}' in a Hugging Face ViTMAE")
            group, i, module, kind = m.groups()
            base = (f"{prefix}encoder.layer.{i}" if group == "blocks"
                    else f"decoder.decoder_layers.{i}")
            if module == "attn.qkv":
                for name, part in zip(("query", "key", "value"), value.chunk(3, dim=0)):
                    out[f"{base}.attention.attention.{name}.{kind}"] = part.contiguous()
            elif module in _LAYER_OUT:
                out[f"{base}.{_LAYER_OUT[module]}.{kind}"] = value
            else:
                raise UmaeError(f"cannot express '{key}' in a Hugging Face ViTMAE")
    config: dict[str, Any] = {
        "architectures": ["ViTMAEForPreTraining" if decoder else "ViTMAEModel"],
        "model_type": "vit_mae",
        "hidden_size": arch.embed_dim, "num_hidden_layers": arch.depth,
        "num_attention_heads": arch.num_heads,
        "intermediate_size": int(round(arch.mlp_ratio * arch.embed_dim)),
        "hidden_act": "gelu", "hidden_dropout_prob": 0.0, "attention_probs_dropout_prob": 0.0,
        "initializer_range": 0.02, "layer_norm_eps": arch.norm_eps,
        "image_size": arch.img_size, "patch_size": arch.patch_size, "num_channels": 3,
        "qkv_bias": arch.qkv_bias, "mask_ratio": mask_ratio, "norm_pix_loss": norm_pix_loss,
    }
    if decoder:
        width = int(decoder["decoder_embed.weight"].shape[0])
        depth = len({k.split(".")[1] for k in decoder if k.startswith("decoder_blocks.")})
        if decoder_num_heads is None:
            raise UmaeError("the decoder's head count is not recorded in the source; pass "
                            "--decoder-num-heads N")
        config.update(decoder_hidden_size=width, decoder_num_hidden_layers=depth,
                      decoder_num_attention_heads=decoder_num_heads,
                      decoder_intermediate_size=int(decoder["decoder_blocks.0.mlp.fc1.weight"].shape[0]))
    return out, config
