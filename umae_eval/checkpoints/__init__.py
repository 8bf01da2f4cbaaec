"""Load any MAE-family checkpoint into timm's ViT: detect the layout, infer the ViT, refuse clearly.

One loader for every command. ``load_encoder(path)`` reads a checkpoint file or folder with
``torch.load(weights_only=True)`` (or the ``safetensors`` package), recognises which tool wrote
it, renames its tensors to timm's ``VisionTransformer`` names, infers the encoder's architecture
from the weights (and a config file where the layout has one), builds a timm ViT
(``num_classes=0``, ``global_pool='token'``) and loads the encoder keys strictly.

Modules: :mod:`.arch` (ViTArch, inference, the timm model), :mod:`.files` (readers),
:mod:`.official` (official MAE, U-MAE, umae, timm), :mod:`.hf` (Hugging Face ViTMAE),
:mod:`.detect` (which layout), :mod:`.loader` (``read_checkpoint``, ``load_encoder``).

Layouts (``LAYOUTS``; README "Checkpoints" says where such files come from):

- ``official-encoder``, ``official-full``, ``u-mae``, ``timm``, ``umae``: see :mod:`.official`.
- ``hf-vitmae``: a transformers ``ViTMAEForPreTraining`` / ``ViTMAEModel`` folder or file.
- ``random-init``: not a file: :func:`random_init_encoder`, the untrained baseline.

Example
-------
>>> enc = load_encoder("mae_pretrain_vit_base.pth")          # doctest: +SKIP
>>> enc.info.summary()                                         # doctest: +SKIP
'official-encoder: ViT dim768 depth12 heads12 p16 224px, 85.80M params, sha256 3f1a...'
"""

from umae_eval.checkpoints.arch import MAEEncoderViT, ViTArch, build_vit, infer_arch
from umae_eval.checkpoints.detect import detect_layout
from umae_eval.checkpoints.info import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    LAYOUTS,
    EncoderInfo,
    LoadedEncoder,
    ParsedCheckpoint,
)
from umae_eval.checkpoints.loader import build_encoder, load_encoder, random_init_encoder, read_checkpoint
from umae_eval.checkpoints.official import decoder_state_dict, encoder_state_dict

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "LAYOUTS",
    "EncoderInfo",
    "LoadedEncoder",
    "MAEEncoderViT",
    "ParsedCheckpoint",
    "ViTArch",
    "build_encoder",
    "build_vit",
    "decoder_state_dict",
    "detect_layout",
    "encoder_state_dict",
    "infer_arch",
    "load_encoder",
    "random_init_encoder",
    "read_checkpoint",
]
