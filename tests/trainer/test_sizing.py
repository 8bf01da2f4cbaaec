"""trainer.sizing: the parameter count from a preset's fields equals the built model's, and a
model too large for the memory is refused in one line before torch allocates it."""

from __future__ import annotations

import pytest

from trainer.model import build_model
from trainer.presets import get_preset, method_defaults
from trainer.sizing import BYTES_PER_PARAMETER, check_model_fits, parameter_count
from umae_eval.errors import UmaeError


@pytest.mark.parametrize("name, fields", [
    ("tiny-test", {}),
    ("cifar10-vit-tiny-p4", {}),
    ("tiny-test", {"mlp_ratio": 2.7, "decoder_depth": 0}),
    ("tiny-test", {"embed_dim": 48, "num_heads": 4, "decoder_embed_dim": 24, "decoder_num_heads": 3, "img_size": 16}),
    ("tiny-test", method_defaults("simmim")),
])
def test_parameter_count_equals_the_built_model(name: str, fields: dict) -> None:
    preset = get_preset(name, **fields)
    assert parameter_count(preset) == sum(p.numel() for p in build_model(preset).parameters())


def test_a_model_over_the_free_memory_is_refused_naming_the_fields() -> None:
    preset = get_preset("tiny-test", embed_dim=4096)
    count = parameter_count(preset)
    with pytest.raises(UmaeError, match="embed_dim 4096") as err:
        check_model_fits(preset, available=count * BYTES_PER_PARAMETER - 1)
    assert "GiB" in str(err.value)
    assert check_model_fits(preset, available=count * BYTES_PER_PARAMETER) == count


def test_beyond_the_parameter_ceiling_is_refused_whatever_the_memory() -> None:
    with pytest.raises(UmaeError, match="embed_dim 65536"):
        check_model_fits(get_preset("tiny-test", embed_dim=65536), available=1 << 62)
