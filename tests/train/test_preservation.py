"""DOP and blank prompt preservation: prompts, cached texts, and the loss against the LoRA-off prediction."""

from __future__ import annotations

import types

import pytest
import torch
import torch.nn.functional as F
from peft import LoraConfig

from tests.train.test_losses import _peft_model
from toolkit.train.preservation import Preservation


def _train(**changes):
    base = {
        "diff_output_preservation": False,
        "diff_output_preservation_multiplier": 1.0,
        "diff_output_preservation_class": "",
        "blank_prompt_preservation": False,
        "blank_prompt_preservation_multiplier": 1.0,
    }
    return types.SimpleNamespace(**{**base, **changes})


def test_dop_replaces_each_items_trigger_with_the_class():
    dop = Preservation(_train(diff_output_preservation=True, diff_output_preservation_class="woman"))
    assert dop.kind == "dop" and bool(dop)
    texts = dop.texts(["photo of sks, smiling", "ohwx at the beach", "no trigger here"], ["sks", "ohwx", None])
    assert texts == ["photo of woman, smiling", "woman at the beach", "no trigger here"]
    blank = Preservation(_train(blank_prompt_preservation=True))
    assert blank.kind == "blank" and blank.texts(["a", "b"], ["x", "y"]) == ["", ""]
    assert not Preservation(_train())


def test_dop_cache_texts_cover_every_caption_draw(tmp_path):
    from tests.data.conftest import write_image
    from toolkit.config_modules import DatasetConfig
    from toolkit.data.dataset import build_items

    for name, caption in (("a", "photo of [trigger]"), ("b", "a cat")):
        write_image(tmp_path / f"{name}.png", (32, 32))
        (tmp_path / f"{name}.txt").write_text(caption)
    items = build_items([DatasetConfig(folder_path=str(tmp_path), caption_dropout_rate=0.1, resolution=32)], "sks", 16)
    dop = Preservation(_train(diff_output_preservation=True, diff_output_preservation_class="man"))
    assert sorted(dop.cache_texts(items)) == ["", "man, a cat", "photo of man"]


def test_preservation_loss_pulls_the_lora_towards_the_base_model():
    config = LoraConfig(r=4, lora_alpha=4, target_modules=["lin"], init_lora_weights=False)
    model = _peft_model(config)
    x = torch.randn(2, 3, 8)
    with torch.no_grad():
        lora_on = model(x)
        model.disable_adapters()
        base = model(x)
        model.enable_adapters()
    dop = Preservation(
        _train(
            diff_output_preservation=True, diff_output_preservation_class="c", diff_output_preservation_multiplier=0.5
        )
    )

    def predict(noisy, timesteps, embeds, references):
        return model(noisy)

    loss = dop.loss(predict, model, None, x, torch.zeros(2))
    assert loss.item() == pytest.approx(0.5 * F.mse_loss(lora_on, base).item(), rel=1e-5)
    loss.backward()
    lora_grads = [p.grad for n, p in model.named_parameters() if "lora_" in n]
    assert all(g is not None and g.abs().sum() > 0 for g in lora_grads)
    assert model.lin.base_layer.weight.grad is None  # base weights stay frozen
