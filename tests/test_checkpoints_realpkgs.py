"""Checkpoints written by the real packages, with the real packages' own forward as the reference.

The other third-party tests (test_checkpoints_thirdparty.py) use models written in the tests under
each tool's names; these build the model with the tool itself and save it the way the tool's own
training entry point does:

- lightly 1.6 (``realpkgs`` extra): its current MAE example, ``MaskedVisionTransformerTIMM`` +
  ``MaskedVisionTransformerDecoderTIMM`` with ``decoder_embed`` / ``prediction_head`` on the
  LightningModule, trained for one epoch by ``pytorch_lightning.Trainer``, which writes
  ``lightning_logs/version_0/checkpoints/epoch=0-step=2.ckpt``;
- mmpretrain 1.2 + mmengine 0.10 + mmcv-lite (``realpkgs`` extra): an MAE config run by
  mmengine's ``Runner`` for one epoch, whose ``CheckpointHook`` writes ``work_dir/epoch_1.pth``
  with the message hub's ``HistoryBuffer`` objects and the optimizer state beside the weights;
- transformers 5 (``dev`` extra): ``ViTMAEForPreTraining.save_pretrained``.

umae's features must equal the library's own forward to 3e-6 with no ``--trust-pickle``. Each test
skips, naming the package and the extra, where the package is not installed. Every parameter is
randomised before training (LayerNorm weights away from 1), so swapped or dropped tensors show.
solo-learn is not here: its PyPI release pins torch 1.9 (README: Checkpoints).
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import random
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from ckpt_factory import _randomise
from umae_eval.checkpoints import load_encoder, read_checkpoint
from umae_eval.compat import ensure_timm_importable

ensure_timm_importable()  # lightly, mmpretrain and transformers import timm / torchvision

ATOL = 3e-6


def _need(module: str, extra: str) -> Any:
    """Import ``module`` or skip the test, naming what to install."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        pytest.skip(f"{module} is not installed ({exc}); pip install -e '.[{extra}]' "
                    "(bash scripts/install.sh installs it)")


def images(n: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(seed))


def close(a: torch.Tensor, b: torch.Tensor) -> None:
    torch.testing.assert_close(a, b, rtol=0, atol=ATOL)


class _GlobalState:
    """The process-wide state a training framework may change (seeds, threads, start method),
    put back afterwards so that the tests after these run as they would alone."""

    def __enter__(self) -> _GlobalState:
        self.torch_rng = torch.random.get_rng_state()
        self.np_rng = np.random.get_state()
        self.py_rng = random.getstate()
        self.threads = torch.get_num_threads()
        self.start = multiprocessing.get_start_method(allow_none=True)
        self.env = dict(os.environ)
        return self

    def __exit__(self, *exc: object) -> None:
        torch.random.set_rng_state(self.torch_rng)
        np.random.set_state(self.np_rng)
        random.setstate(self.py_rng)
        torch.set_num_threads(self.threads)
        if multiprocessing.get_start_method(allow_none=True) != self.start:
            multiprocessing.set_start_method(self.start, force=True)
        for key in set(os.environ) - set(self.env):
            del os.environ[key]
        os.environ.update(self.env)


# ------------------------------------------------------------------------------------- lightly

def _lightly_mae(pl: Any) -> Any:
    """lightly 1.6's examples/pytorch_lightning/mae.py ``MAE``, with a 32 px ViT (width 128, 2
    heads, depth 2) and a 32-wide one-block decoder instead of ViT-B/32 and 512, so it trains on CPU."""
    from timm.models.vision_transformer import VisionTransformer
    from torch import nn

    from lightly.models import utils
    from lightly.models.modules import MaskedVisionTransformerDecoderTIMM, MaskedVisionTransformerTIMM
    from lightly.models.modules.masked_vision_transformer_timm import init_weights

    class MAE(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            decoder_dim = 32
            vit = VisionTransformer(img_size=32, patch_size=4, embed_dim=128, depth=2, num_heads=2)
            self.mask_ratio = 0.75
            self.patch_size = vit.patch_embed.patch_size[0]
            self.backbone = MaskedVisionTransformerTIMM(vit=vit)
            self.sequence_length = self.backbone.sequence_length
            self.decoder_embed = nn.Linear(vit.embed_dim, decoder_dim)
            self.decoder = MaskedVisionTransformerDecoderTIMM(
                num_patches=vit.patch_embed.num_patches, embed_dim=decoder_dim, depth=1, num_heads=2,
                num_prefix_tokens=vit.num_prefix_tokens, mlp_ratio=4.0, proj_drop_rate=0.0,
                attn_drop_rate=0.0)
            self.prediction_head = nn.Linear(decoder_dim, self.patch_size**2 * 3)
            self.decoder_embed.apply(init_weights)
            self.prediction_head.apply(init_weights)
            self.criterion = nn.MSELoss()

        def forward_encoder(self, images, idx_keep=None):
            return self.backbone.encode(images=images, idx_keep=idx_keep)

        def forward_decoder(self, x_encoded, idx_keep, idx_mask):
            batch_size = x_encoded.shape[0]
            x_decode = self.decoder_embed(x_encoded)
            x_masked = x_decode.new_zeros(batch_size, self.sequence_length, x_decode.shape[-1])
            x_masked = utils.set_at_index(x_masked, idx_keep, x_decode.type_as(x_masked))
            x_decoded = self.decoder(x_masked, idx_mask=idx_mask)
            x_pred = utils.get_at_index(x_decoded, idx_mask)
            return self.prediction_head(x_pred)

        def training_step(self, batch, batch_idx):
            images = batch[0][0]
            idx_keep, idx_mask = utils.random_token_mask(
                size=(images.shape[0], self.sequence_length), mask_ratio=self.mask_ratio,
                device=images.device)
            x_encoded = self.forward_encoder(images=images, idx_keep=idx_keep)
            x_pred = self.forward_decoder(x_encoded=x_encoded, idx_keep=idx_keep, idx_mask=idx_mask)
            patches = utils.patchify(images, self.patch_size)
            target = utils.get_at_index(patches, idx_mask - 1)
            return self.criterion(x_pred, target)

        def configure_optimizers(self):
            return torch.optim.AdamW(self.parameters(), lr=1.5e-4)

    return MAE()


class _Views(torch.utils.data.Dataset):
    """What the example's dataset yields through ``MAETransform``: ([view], target, ...)."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> tuple[list[torch.Tensor], int]:
        return [images(1, seed=10 + i)[0]], 0


@pytest.fixture(scope="module")
def lightly_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any]]:
    lightly = _need("lightly", "realpkgs")
    pl = _need("pytorch_lightning", "realpkgs")
    root = tmp_path_factory.mktemp("lightly")
    with _GlobalState():
        torch.manual_seed(0)
        model = _lightly_mae(pl)
        _randomise(model, 21)
        loader = torch.utils.data.DataLoader(_Views(), batch_size=2, shuffle=True, drop_last=True)
        trainer = pl.Trainer(max_epochs=1, devices=1, accelerator="cpu", default_root_dir=root,
                             enable_progress_bar=False, enable_model_summary=False)
        trainer.fit(model=model, train_dataloaders=loader)
    ckpts = sorted(root.glob("lightning_logs/version_0/checkpoints/*.ckpt"))
    assert [p.name for p in ckpts] == ["epoch=0-step=2.ckpt"], ckpts
    assert lightly.__version__.startswith("1.")
    yield ckpts[0], model.eval()


@pytest.mark.slow
def test_lightly_trainer_checkpoint_features_equal_lightly(lightly_run) -> None:
    path, model = lightly_run
    enc = load_encoder(path)  # no trust_pickle
    assert enc.info.layout == "lightly" and "MaskedVisionTransformerDecoderTIMM" in enc.info.note
    assert enc.info.arch.num_heads == 2 and enc.info.arch.embed_dim == 128 and enc.info.arch.depth == 2
    with torch.no_grad():
        close(enc.model(images()), model.backbone(images()))  # lightly's forward: [CLS] after norm


@pytest.mark.slow
def test_lightly_trainer_checkpoint_decoder_reconstructs_like_lightly(lightly_run) -> None:
    """The renamed decoder in umae's MAE predicts what lightly's example predicts for the same mask."""
    from trainer.model import MaskedAutoencoderViT

    path, model = lightly_run
    parsed = read_checkpoint(path)
    ours = MaskedAutoencoderViT(img_size=32, patch_size=4, embed_dim=128, depth=2, num_heads=2,
                                decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2).eval()
    ours.load_state_dict({**parsed.encoder, **parsed.decoder}, strict=True)
    x = images()
    noise = torch.rand(3, 64, generator=torch.Generator().manual_seed(1))
    order = torch.argsort(noise, dim=1)  # umae keeps the 16 lowest-noise patches, in that order
    kept, removed = order[:, :16], order[:, 16:]
    idx_keep = torch.cat([torch.zeros(3, 1, dtype=torch.long), kept + 1], dim=1)  # + [CLS] at 0
    with torch.no_grad():
        out = ours(x, 0.75, noise)
        want = model.forward_decoder(model.forward_encoder(x, idx_keep), idx_keep, removed + 1)
        got = torch.gather(out.pred, 1, removed.unsqueeze(-1).expand(-1, -1, out.pred.shape[-1]))
    close(got, want)


# ---------------------------------------------------------------------------------- mmpretrain

MM_CFG = """default_scope = 'mmpretrain'
model = dict(
    type='MAE',
    data_preprocessor=dict(type='SelfSupDataPreprocessor', mean=[123.675, 116.28, 103.53],
                           std=[58.395, 57.12, 57.375], to_rgb=True),
    backbone=dict(type='MAEViT', arch=dict(embed_dims=64, num_layers=2, num_heads=2,
                  feedforward_channels=256), img_size=32, patch_size=4, mask_ratio=0.75),
    neck=dict(type='MAEPretrainDecoder', num_patches=64, patch_size=4, in_chans=3, embed_dim=64,
              decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2, mlp_ratio=4.),
    head=dict(type='MAEPretrainHead', norm_pix=True, patch_size=4,
              loss=dict(type='PixelReconstructionLoss', criterion='L2')))
optim_wrapper = dict(optimizer=dict(type='AdamW', lr=1e-3))
train_cfg = dict(by_epoch=True, max_epochs=1)
default_hooks = dict(checkpoint=dict(type='CheckpointHook', interval=1),
                     logger=dict(type='LoggerHook', interval=1))
randomness = dict(seed=0)
"""


class _Pictures(torch.utils.data.Dataset):
    """uint8 images as mmpretrain's ``PackInputs`` leaves them (C, H, W), read as BGR by cv2."""

    def __len__(self) -> int:
        return 4

    def __getitem__(self, i: int) -> dict[str, Any]:
        from mmpretrain.structures import DataSample

        pixels = torch.randint(0, 256, (3, 32, 32), generator=torch.Generator().manual_seed(i),
                               dtype=torch.uint8)
        return {"inputs": pixels, "data_samples": DataSample()}


def _collate(batch: list[dict[str, Any]]) -> dict[str, Any]:
    return {"inputs": torch.stack([b["inputs"] for b in batch]),
            "data_samples": [b["data_samples"] for b in batch]}


@pytest.fixture(scope="module")
def mmpretrain_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Any]]:
    mmengine = _need("mmengine", "realpkgs")
    _need("mmcv", "realpkgs")
    _need("mmpretrain", "realpkgs")
    from mmengine.config import Config
    from mmengine.hooks import Hook
    from mmengine.runner import Runner

    class Randomise(Hook):
        """After the Runner's own weight init (which would undo it), before the first step."""

        def before_train(self, runner: Any) -> None:
            _randomise(runner.model, 22)

    work = tmp_path_factory.mktemp("mmpretrain")
    (work / "mae_tiny.py").write_text(MM_CFG)
    cfg = Config.fromfile(str(work / "mae_tiny.py"))
    loader = torch.utils.data.DataLoader(_Pictures(), batch_size=2, collate_fn=_collate)
    with _GlobalState():
        runner = Runner(model=cfg.model, work_dir=str(work), train_dataloader=loader,
                        optim_wrapper=cfg.optim_wrapper, train_cfg=cfg.train_cfg,
                        default_hooks=cfg.default_hooks, custom_hooks=[Randomise()],
                        default_scope="mmpretrain", randomness=cfg.randomness, cfg=cfg)
        runner.train()
    assert (work / "epoch_1.pth").is_file() and mmengine.__version__.startswith("0.")
    yield work / "epoch_1.pth", runner.model.eval()


@pytest.mark.slow
def test_mmpretrain_work_dir_epoch_file_features_equal_mmpretrain(mmpretrain_run) -> None:
    from mmengine.logging import HistoryBuffer

    path, model = mmpretrain_run
    raw = torch.load(path, map_location="cpu", weights_only=False)  # what the file holds
    assert isinstance(raw["message_hub"]["log_scalars"]["train/loss"], HistoryBuffer)
    assert {"meta", "state_dict", "message_hub", "optimizer"} <= set(raw)
    with pytest.raises(Exception, match="HistoryBuffer"):
        torch.load(path, map_location="cpu", weights_only=True)  # why the restricted reader exists
    enc = load_encoder(path)  # no trust_pickle
    assert enc.info.layout == "mmpretrain" and enc.info.arch.num_heads == 2  # the config's, not 64/64
    assert enc.info.arch.norm_eps == 1e-6 and enc.info.arch.embed_dim == 64
    with torch.no_grad():
        want = model.backbone(images(), mask=None)[0][:, 0]  # MAEViT unmasked: [CLS] after ln1
        close(enc.model(images()), want)
    # The pixel normalisation from the config's data preprocessor: umae's (RGB / 255 - mean) / std
    # on the same picture equals mmpretrain's preprocessor on the BGR array it would read.
    rgb = torch.randint(0, 256, (2, 3, 32, 32), generator=torch.Generator().manual_seed(5),
                        dtype=torch.uint8)
    mean, std = torch.tensor(enc.info.mean).view(1, 3, 1, 1), torch.tensor(enc.info.std).view(1, 3, 1, 1)
    with torch.no_grad():
        ours = enc.model((rgb.float() / 255 - mean) / std)
        pre = model.data_preprocessor({"inputs": rgb[:, [2, 1, 0]], "data_samples": None})
        close(ours, model.backbone(pre["inputs"], mask=None)[0][:, 0])


@pytest.mark.slow
def test_mmpretrain_decoder_equals_its_neck(mmpretrain_run) -> None:
    from trainer.model import MaskedAutoencoderViT

    path, model = mmpretrain_run
    parsed = read_checkpoint(path)
    assert parsed.decoder_hints == {"decoder_num_heads": 2, "norm_pix_loss": True}
    ours = MaskedAutoencoderViT(img_size=32, patch_size=4, embed_dim=64, depth=2, num_heads=2,
                                decoder_embed_dim=32, decoder_depth=1, decoder_num_heads=2).eval()
    ours.load_state_dict({**parsed.encoder, **parsed.decoder}, strict=True)
    torch.manual_seed(3)
    with torch.no_grad():
        latent, _, ids_restore = model.backbone(images())  # mmpretrain's own random masking
        close(ours.forward_decoder(latent, ids_restore), model.neck(latent, ids_restore))


@pytest.mark.slow
def test_mmpretrain_epoch_file_converts_through_the_command(mmpretrain_run, tmp_path: Path) -> None:
    """Through the installed command: no --trust-pickle asked for, and the Hugging Face folder it
    writes gives transformers' features equal to mmpretrain's."""
    _need("transformers", "dev")
    path, model = mmpretrain_run
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    done = subprocess.run(["umae", "convert", str(path), str(tmp_path / "hf"), "--to", "hf"],
                          capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stderr
    assert "trust" not in (done.stdout + done.stderr).lower()
    from hf_factory import hf_cls
    from transformers import ViTMAEForPreTraining

    # mask_ratio 0 (the written config keeps mmpretrain's 0.75) so that every patch is encoded
    hf = ViTMAEForPreTraining.from_pretrained(tmp_path / "hf", mask_ratio=0.0).eval()
    with torch.no_grad():
        close(hf_cls(hf, images()), model.backbone(images(), mask=None)[0][:, 0])


# -------------------------------------------------------------------------------- transformers

def test_transformers_save_pretrained_features_equal_transformers(tmp_path: Path) -> None:
    _need("transformers", "dev")
    from hf_factory import hf_cls, hf_pretraining

    hf = hf_pretraining(seed=23)
    hf.save_pretrained(tmp_path / "vit-mae")
    enc = load_encoder(tmp_path / "vit-mae")  # safetensors: nothing to trust
    assert enc.info.layout == "hf-vitmae" and enc.info.arch.norm_eps == 1e-12
    with torch.no_grad():
        close(enc.model(images()), hf_cls(hf, images()))
