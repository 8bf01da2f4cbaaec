"""The figures a run measures along training on held-out images: effective rank and RankMe every
epoch; linear probe, kNN and mean classifier every ``--eval-every`` epochs (``OnlineEvaluator``).

Split out of :mod:`trainer.loop` (code moved unchanged); ``trainer.loop`` re-exports every name.
"""

from __future__ import annotations

from typing import Any


import numpy as np
import torch
from torch import nn

from trainer.batches import (
    augment_batch,
)
from trainer.presets import Preset
from trainer.run_config import _autocast


class OnlineEvaluator:
    """Features of fixed image subsets and the per-epoch figures computed from them.

    Parameters
    ----------
    test_images : np.ndarray, shape (M, H, W, 3), uint8
        Held-out subset (effective rank, RankMe, probe test set).
    test_labels : np.ndarray, shape (M,)
    train_images : np.ndarray, shape (K, H, W, 3), uint8
        Fixed train subset the probes fit.
    train_labels : np.ndarray, shape (K,)
    preset : Preset
        Image size and normalisation.
    device : torch.device
    amp_dtype : torch.dtype or None
    batch : int
        Images per forward pass.
    """

    def __init__(self, test_images: np.ndarray, test_labels: np.ndarray, train_images: np.ndarray,
                 train_labels: np.ndarray, preset: Preset, device: torch.device,
                 amp_dtype: torch.dtype | None, batch: int = 256) -> None:
        self.test_images, self.test_labels = test_images, test_labels
        self.train_images, self.train_labels = train_images, train_labels
        self.preset, self.device, self.amp_dtype, self.batch = preset, device, amp_dtype, batch

    @torch.no_grad()
    def features(self, model: nn.Module, images: np.ndarray) -> np.ndarray:
        """[CLS] after the final norm of unmasked images, shape (N, D), float32.

        Parameters
        ----------
        model : nn.Module
            The unwrapped model (``forward_encoder`` is called with ``mask_ratio=0`` and the
            identity order, so no RNG is drawn).
        images : np.ndarray, shape (N, H, W, 3), uint8
        """
        was_training = model.training
        model.eval()
        out = []
        L = self.preset.num_patches
        try:
            for start in range(0, len(images), self.batch):
                raw = torch.from_numpy(np.ascontiguousarray(images[start:start + self.batch])).to(self.device)
                x = augment_batch(raw, self.preset.img_size, self.preset.mean, self.preset.std, "none")
                noise = torch.arange(L, device=self.device, dtype=torch.float32).expand(len(raw), L)
                with _autocast(self.device, self.amp_dtype):
                    latent, _, _ = model.forward_encoder(x, 0.0, noise)
                out.append(latent[:, 0].float().cpu())
        finally:
            model.train(was_training)
        return torch.cat(out).numpy()

    def evaluate(self, model: nn.Module, probes: bool) -> dict[str, Any]:
        """``effective_rank`` and ``rankme`` of the held-out features; with ``probes`` also
        ``knn_accuracy`` (k=20, T=0.07), ``mean_classifier_accuracy`` (cosine) and
        ``linear_accuracy`` (the 'fast' L-BFGS probe), all percent, and ``singular_values``
        (centred, divided by the largest: Fig. 1b's spectrum at this epoch, 6 significant digits)."""
        from umae_eval.metrics.spectrum import effective_rank, rankme, singular_values

        test_f = self.features(model, self.test_images)
        out = {"effective_rank": float(effective_rank(test_f, center=True)),
               "rankme": float(rankme(test_f))}
        if probes:
            out["singular_values"] = [float(f"{v:.6g}") for v in singular_values(test_f, center=True)]
            from umae_eval.probes.knn import knn_accuracy
            from umae_eval.probes.mean import mean_classifier_accuracy

            train_f = self.features(model, self.train_images)
            out["knn_accuracy"] = float(knn_accuracy(train_f, self.train_labels, test_f, self.test_labels,
                                                     k=20, temperature=0.07))
            out["mean_classifier_accuracy"] = float(mean_classifier_accuracy(
                train_f, self.train_labels, test_f, self.test_labels, metric="cosine"))
            # Fig. 3b of the paper plots linear-probe accuracy along training, so the online
            # figures include it: the 'fast' L-BFGS probe (weight decay chosen on a held-out
            # tenth of the probe's train images), deterministic given the features.
            from umae_eval.probes.linear import linear_probe

            out["linear_accuracy"] = float(linear_probe(
                train_f, self.train_labels, test_f, self.test_labels, seed=0).accuracy)
        return out


# --------------------------------------------------------------------------- the run
