"""Loss maths (masks, per-item weights, loss types), the per-item LoRA multiplier, reg steps, guidance bypass."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from toolkit.train.batches import is_reg_step
from toolkit.train.losses import (
    batch_loss,
    elementwise_loss,
    haar_subbands,
    mask_weights,
)


def test_masked_out_region_gets_zero_gradient():
    torch.manual_seed(0)
    prediction = torch.randn(2, 4, 4, 6, requires_grad=True)
    target = torch.randn(2, 4, 4, 6)
    masks = torch.ones(2, 1, 32, 48)
    masks[:, :, :, :24] = 0  # left half of the pixels masked out: latent columns 0-2 of 6
    loss = batch_loss(elementwise_loss("mse", prediction, target), masks)
    loss.backward()
    assert torch.all(prediction.grad[..., :3] == 0)
    assert torch.all(prediction.grad[..., 3:].abs() > 0)
    # weights average 1: a uniform mask changes nothing
    uniform = batch_loss(elementwise_loss("mse", prediction, target), torch.full((2, 1, 32, 48), 0.3))
    assert torch.allclose(uniform, F.mse_loss(prediction, target))


def test_mask_weights_average_pixels_per_latent_cell():
    masks = torch.zeros(1, 1, 4, 4)
    masks[..., 0, 0] = 1.0  # one pixel of the top-left 2x2 cell
    weights = mask_weights(masks, (2, 2))
    assert torch.allclose(weights, torch.tensor([[[[4.0, 0.0], [0.0, 0.0]]]]))  # 0.25 / mean 0.0625


def test_loss_multiplier_weights_items():
    prediction, target = torch.zeros(2, 1, 2, 2), torch.stack([torch.ones(1, 2, 2), 2 * torch.ones(1, 2, 2)])
    plain = batch_loss(elementwise_loss("mse", prediction, target))
    weighted = batch_loss(elementwise_loss("mse", prediction, target), item_weights=torch.tensor([2.0, 0.5]))
    assert plain.item() == pytest.approx((1 + 4) / 2) and weighted.item() == pytest.approx((2 + 2) / 2)


def test_loss_types():
    torch.manual_seed(1)
    prediction, target = torch.randn(2, 3, 4, 6), torch.randn(2, 3, 4, 6)
    d = prediction - target
    assert torch.allclose(elementwise_loss("mae", prediction, target), d.abs())
    huber = elementwise_loss("pseudo_huber", prediction, target)
    assert torch.allclose(huber, torch.sqrt(d**2 + 1e-4) - 0.01)
    assert torch.all(huber <= d.abs())
    noise, latents = torch.randn(2, 3, 4, 6), torch.randn(2, 3, 4, 6)
    velocity = noise - latents
    wavelet = elementwise_loss("wavelet", prediction, velocity, noise=noise, latents=latents)
    assert wavelet.shape == (2, 12, 2, 3)
    # orthonormal Haar: on even sizes the wavelet loss's mean is the mse's
    assert torch.allclose(wavelet.mean(), F.mse_loss(prediction, velocity), rtol=1e-5)
    # but it is not the same per element
    assert not torch.allclose(
        wavelet, F.mse_loss(prediction, velocity, reduction="none")[:, :, :2, :3].repeat(1, 4, 1, 1)
    )
    with pytest.raises(ValueError, match="unknown loss_type"):
        elementwise_loss("stepped", prediction, target)


def test_haar_subbands_of_a_constant_image_are_all_low_pass():
    x = torch.full((1, 1, 2, 2), 3.0)
    bands = haar_subbands(x)
    assert bands.flatten().tolist() == [6.0, 0.0, 0.0, 0.0]
    assert haar_subbands(torch.ones(1, 2, 3, 5)).shape == (1, 8, 2, 3)  # odd sides zero-padded


def test_reg_steps_alternate_and_skip_save_and_sample_steps():
    assert [s for s in range(1, 9) if is_reg_step(s, saves_or_samples_after=False)] == [1, 3, 5, 7]
    assert not is_reg_step(3, saves_or_samples_after=True)


def _peft_model(config):
    from diffusers import ModelMixin
    from diffusers.loaders import PeftAdapterMixin

    class Tiny(ModelMixin, PeftAdapterMixin):
        def __init__(self):
            super().__init__()
            self.lin = torch.nn.Linear(8, 8)

        def forward(self, x):
            return self.lin(x)

    torch.manual_seed(0)
    model = Tiny()
    model.add_adapter(config, adapter_name="default")
    return model


@pytest.mark.parametrize("kind", ["lora", "lokr"])
def test_item_multiplier_scales_each_items_adapter_output(kind):
    from peft import LoKrConfig, LoraConfig

    from toolkit.network import ItemMultiplier

    config = (
        LoraConfig(r=4, lora_alpha=4, target_modules=["lin"], init_lora_weights=False)
        if kind == "lora"
        else LoKrConfig(r=4, alpha=4, target_modules=["lin"], init_weights=False)
    )
    model = _peft_model(config)
    x = torch.randn(3, 5, 8)
    full = model(x)
    model.disable_adapters()
    base = model(x)
    model.enable_adapters()
    multiplier = ItemMultiplier(model)
    multiplier.set(torch.tensor([0.5, 0.0, 1.0]))
    out = model(x)
    expected = base + torch.tensor([0.5, 0.0, 1.0]).view(3, 1, 1) * (full - base)
    assert torch.allclose(out, expected, atol=1e-5)
    multiplier.clear()
    assert torch.allclose(model(x), full)
    multiplier.set(torch.tensor([0.5, 0.0]))
    with pytest.raises(RuntimeError, match="batch of 3"):
        model(x)


def test_bypass_guidance_zeroes_the_embedder_output_only_inside():
    from toolkit.train.guidance import bypass_guidance

    embedder = torch.nn.Linear(4, 4)
    x = torch.randn(2, 4)
    with bypass_guidance(embedder):
        assert torch.equal(embedder(x), torch.zeros(2, 4))
    assert not torch.equal(embedder(x), torch.zeros(2, 4))
