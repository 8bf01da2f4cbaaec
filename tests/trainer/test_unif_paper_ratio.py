"""``--unif-form paper``: the ratio to the 'code' form is measured at the first step and shown."""

from __future__ import annotations

import json

import torch

from trainer.losses import paper_over_code
from trainer.model import build_model
from trainer.presets import get_preset
from umae_eval.cli import main


def test_ratio_is_paper_over_code_on_fixed_noise_and_leaves_the_rng() -> None:
    torch.manual_seed(0)
    preset = get_preset("tiny-test")
    model = build_model(preset)
    imgs = torch.randn(8, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    state = torch.get_rng_state()
    ratio = paper_over_code(model, imgs, 0.75, seed=3)
    assert torch.equal(torch.get_rng_state(), state)  # the run's masking stream is untouched
    noise = torch.rand(8, preset.num_patches, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        f = model(imgs, 0.75, noise).cls
    n = len(f)
    gram = f @ f.t()
    paper = sum(float(gram[i, j]) ** 2 for i in range(n) for j in range(n) if i != j) / (n * (n - 1))
    z = f / f.norm(dim=1, keepdim=True)
    code = float(((z @ z.t()) ** 2).mean())
    assert abs(ratio - paper / code) <= 1e-4 * (paper / code)


def test_train_paper_form_warns_with_the_ratio(tmp_path, capsys) -> None:
    out = tmp_path / "run"
    assert main(["train", "--data", "demo", "--preset", "tiny-test", "--epochs", "1", "--lam", "0.01",
                 "--unif-form", "paper", "--max-train-images", "32", "--batch-size", "16",
                 "--eval-images", "16", "--knn-train-images", "32", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    first = json.loads((out / "metrics.jsonl").read_text().splitlines()[0])
    ratio = first["unif_paper_over_code"]
    assert ratio > 0
    assert f"warning: --unif-form paper: on the first batch its term is {ratio:.3g} x the 'code' form's" \
        in " ".join(err.split())
