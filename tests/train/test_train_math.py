"""Timestep sampling, noising and the loss target, checked numerically with fixed generators."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from toolkit.train_math import (
    TIMESTEP_TYPES,
    add_noise,
    flux1_mu,
    flux2_mu,
    loss_target,
    sample_noise,
    sample_timesteps,
    time_shift,
)

N = 40_000


def draw(kind, seed=0, **kwargs) -> torch.Tensor:
    return sample_timesteps(kind, N, torch.Generator().manual_seed(seed), **kwargs)


def fraction(t, low, high):
    return ((t >= low) & (t < high)).float().mean().item()


@pytest.mark.parametrize("kind", TIMESTEP_TYPES)
def test_every_kind_is_in_range_float32_and_reproducible(kind):
    t = draw(kind, image_seq_len=1024)
    assert t.shape == (N,) and t.dtype == torch.float32
    assert 0 < t.min() and t.max() < 1000
    assert torch.equal(t, draw(kind, image_seq_len=1024))
    assert not torch.equal(t, draw(kind, seed=1, image_seq_len=1024))


def test_sigmoid_is_logit_normal():
    s = draw("sigmoid") / 1000
    logit = torch.log(s / (1 - s))
    assert logit.mean().item() == pytest.approx(0, abs=0.02)
    assert logit.std().item() == pytest.approx(1, abs=0.02)


def test_linear_is_uniform():
    t = draw("linear")
    assert t.mean().item() == pytest.approx(500, abs=5)
    assert t.std().item() == pytest.approx(1000 / math.sqrt(12), abs=3)
    for low in range(0, 1000, 100):
        assert fraction(t, low, low + 100) == pytest.approx(0.1, abs=0.006)


def test_shift_is_diffusers_time_shift_of_the_uniform_draw():
    u = draw("linear") / 1000
    mu = flux2_mu(1024)
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, time_shift_type="exponential")
    expected = scheduler.time_shift(mu, 1.0, u.double()).float().clamp(1e-5, 1 - 1e-5) * 1000
    torch.testing.assert_close(draw("shift", image_seq_len=1024), expected, atol=1e-3, rtol=0)
    torch.testing.assert_close(draw("shift", mu=0.7), time_shift(0.7, u).clamp(1e-5, 1 - 1e-5) * 1000)


def test_shift_grows_with_image_size():
    # BFL's empirical fit interpolates in the step count up to 4300 tokens, so at 50 steps mu rises to
    # 4300 tokens and restarts lower on the 200-step line above; at 200 steps it rises everywhere.
    means = [draw("shift", image_seq_len=seq).mean().item() for seq in (64, 256, 1024, 2048, 4096)]
    assert means == sorted(means) and means[0] > 500  # FLUX.2 shifts towards noise even for small images
    means = [draw("shift", image_seq_len=seq, num_steps=200).mean().item() for seq in (64, 1024, 4096, 16384)]
    assert means == sorted(means)
    assert [flux1_mu(seq) for seq in (256, 4096)] == pytest.approx([0.5, 1.15])


def test_flux2_mu_is_the_pipeline_function():
    from diffusers.pipelines.flux2.pipeline_flux2 import compute_empirical_mu

    assert flux2_mu(4096, 28) == compute_empirical_mu(4096, 28)
    assert flux2_mu(1024) == compute_empirical_mu(1024, 50)


def test_weighted_follows_the_bell():
    t = draw("weighted")
    assert t.mean().item() == pytest.approx(500, abs=5)

    def mass(a, b):  # integral of exp(-2 (s - 1/2)^2) - exp(-1/2) over [a, b]
        erf = lambda s: math.sqrt(math.pi / 8) * math.erf(math.sqrt(2) * (s - 0.5))  # noqa: E731
        return erf(b) - erf(a) - (b - a) * math.exp(-0.5)

    total = mass(0, 1)
    for low in range(0, 1000, 100):
        expected = mass(low / 1000, (low + 100) / 1000) / total
        assert fraction(t, low, low + 100) == pytest.approx(expected, abs=0.006)
    assert fraction(t, 0, 50) < 0.01 and fraction(t, 450, 550) > 0.14


def test_lognorm_blend_is_three_quarters_logit_normal_one_quarter_uniform():
    t = draw("lognorm_blend")
    assert t.mean().item() == pytest.approx(500, abs=5)
    normal_cdf = lambda x: 0.5 * (1 + math.erf(x / math.sqrt(2)))  # noqa: E731
    tail = 0.75 * normal_cdf(math.log(0.05 / 0.95)) + 0.25 * 0.05  # P(s < 0.05)
    assert fraction(t, 0, 50) == pytest.approx(tail, abs=0.003)
    assert fraction(draw("sigmoid"), 0, 50) < 0.004  # the uniform quarter is what fills the ends


@pytest.mark.parametrize("bias, mean", [("content", 750), ("style", 250)])
def test_content_or_style_biases_the_noise_level(bias, mean):
    t = draw("sigmoid", content_or_style=bias)
    assert t.mean().item() == pytest.approx(mean, abs=5)  # E[1 - u^3] = 3/4, E[u^3] = 1/4
    # P(s >= 0.9): content P(u^3 <= 0.1) = 0.1^(1/3); style P(u^3 >= 0.9) = 1 - 0.9^(1/3)
    expected = 0.1 ** (1 / 3) if bias == "content" else 1 - 0.9 ** (1 / 3)
    assert fraction(t, 900, 1000) == pytest.approx(expected, abs=0.01)


def test_unknown_kinds_are_errors():
    generator = torch.Generator().manual_seed(0)
    with pytest.raises(ValueError, match="unknown timestep type 'cosmic'"):
        sample_timesteps("cosmic", 2, generator)
    with pytest.raises(ValueError, match="needs mu or image_seq_len"):
        sample_timesteps("shift", 2, generator)
    with pytest.raises(ValueError, match="unknown content_or_style"):
        sample_timesteps("linear", 2, generator, content_or_style="both")


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_add_noise_endpoints_are_exact(dtype):
    generator = torch.Generator().manual_seed(0)
    latents = torch.randn(3, 4, 5, 5, generator=generator).to(dtype)
    noise = torch.randn(3, 4, 5, 5, generator=generator).to(dtype)
    noisy = add_noise(latents, noise, torch.tensor([0.0, 1000.0, 250.0]))
    assert noisy.dtype == dtype
    assert torch.equal(noisy[0], latents[0]) and torch.equal(noisy[1], noise[1])
    expected = 0.75 * latents[2].float() + 0.25 * noise[2].float()
    torch.testing.assert_close(noisy[2], expected.to(dtype))


def test_loss_target_is_the_velocity_along_the_path():
    generator = torch.Generator().manual_seed(0)
    latents, noise = torch.randn(2, 4, 3, 3, generator=generator), torch.randn(2, 4, 3, 3, generator=generator)
    target = loss_target(noise, latents)
    torch.testing.assert_close(target, noise - latents)
    # d x_t / d s along the straight path is the target
    t, dt = torch.tensor([300.0, 300.0]), 1.0
    slope = (add_noise(latents, noise, t + dt) - add_noise(latents, noise, t)) / (dt / 1000)
    torch.testing.assert_close(slope, target, atol=2e-3, rtol=0)


def test_sample_noise_offset_shifts_each_channel():
    plain = sample_noise((2, 8, 64, 64), torch.Generator().manual_seed(0))
    assert plain.mean().abs() < 0.01 and plain.std().item() == pytest.approx(1, abs=0.01)
    torch.testing.assert_close(plain, torch.randn((2, 8, 64, 64), generator=torch.Generator().manual_seed(0)))
    offset = sample_noise((2, 8, 64, 64), torch.Generator().manual_seed(0), noise_offset=0.5, dtype=torch.bfloat16)
    assert offset.dtype == torch.bfloat16
    channel_means = offset.float().mean(dim=(2, 3))
    assert channel_means.std().item() == pytest.approx(0.5, abs=0.3)
    centred = offset.float() - channel_means[..., None, None]
    torch.testing.assert_close(centred, plain - plain.mean(dim=(2, 3), keepdim=True), atol=0.02, rtol=0)
