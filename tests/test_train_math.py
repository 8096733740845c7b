"""Timestep sampling, noising and the loss target, checked numerically with fixed generators."""

from __future__ import annotations

import math

import pytest
import torch
from diffusers import FlowMatchEulerDiscreteScheduler

from toolkit.train_math import (
    TIMESTEP_TYPES,
    add_noise,
    aitk_timestep_weights,
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


# ai-toolkit's figures for timestep_type: weighted (toolkit/aitk_timestep_weights.txt, taken over from
# ai-toolkit's default_weighing_scheme.py): uniform timesteps, loss weight w(t). The effective weight over t
# is what our importance sampler must reproduce.
def aitk_weighted_share(low_t: float, high_t: float, content_or_style: str = "balanced") -> float:
    weights = aitk_timestep_weights()
    t = [1000 - i for i in range(1000)]
    if content_or_style == "balanced":
        p = [1.0] * 1000
    else:  # ai-toolkit's position = u^3 (content) or 1 - u^3 (style), in its high-to-low list

        def cdf(e):
            return e ** (1 / 3) if content_or_style == "content" else 1 - (1 - e) ** (1 / 3)

        p = [cdf((i + 1) / 1000) - cdf(i / 1000) for i in range(1000)]
    mass = [pi * wi for pi, wi in zip(p, weights)]
    return sum(m for m, ti in zip(mass, t) if low_t < ti <= high_t) / sum(mass)


def test_aitk_weights_are_the_figures():
    weights = aitk_timestep_weights()
    assert len(weights) == 1000 and sum(weights) / 1000 == pytest.approx(1.0, abs=1e-4)
    assert 1000 - weights.index(max(weights)) == 876  # the peak, at high noise
    assert aitk_weighted_share(750, 1000) == pytest.approx(0.3519, abs=1e-3)


@pytest.mark.parametrize("content_or_style", ["balanced", "content", "style"])
def test_weighted_matches_aitk_effective_weight(content_or_style):
    t = draw("weighted", content_or_style=content_or_style)
    for low in range(0, 1000, 100):
        expected = aitk_weighted_share(low, low + 100, content_or_style)
        assert fraction(t, low, low + 100) == pytest.approx(expected, abs=0.008), low
    if content_or_style == "balanced":
        assert fraction(t, 750, 1000) == pytest.approx(0.352, abs=0.008)  # the bell of old had 14.5% there
        counts = torch.histc(t, bins=20, min=0, max=1000)
        assert 800 <= 50 * int(counts.argmax()) <= 900  # peak bin holds t ~ 876


def aitk_lognorm_blend(positions: torch.Tensor) -> torch.Tensor:
    """ai-toolkit's lognorm_blend, written from its description: a fresh list per step of 750 values
    (1 - x / max x) * 1000 with x ~ LogNormal(0, 0.333) and 250 evenly spaced from 1000 to 1, sorted from
    high to low; a position picks one."""
    x = torch.distributions.LogNormal(0.0, 0.333).sample((750,))
    schedule = torch.sort(torch.cat([(1 - x / x.max()) * 1000, torch.linspace(1000, 1, 250)]), descending=True).values
    return schedule[(positions * 1000).long().clamp(max=999)]


@pytest.mark.parametrize("content_or_style", ["balanced", "content", "style"])
def test_lognorm_blend_matches_aitk(content_or_style):
    torch.manual_seed(0)
    u = torch.rand(N)
    positions = {"balanced": u, "content": u**3, "style": 1 - u**3}[content_or_style]
    # ai-toolkit draws one list per training step: a list per 8 draws, in the reference and here
    reference = torch.cat([aitk_lognorm_blend(chunk) for chunk in positions[:4000].split(8)])
    t = torch.cat(
        [
            sample_timesteps("lognorm_blend", 8, torch.Generator().manual_seed(i), content_or_style=content_or_style)
            for i in range(500)
        ]
    )
    for q in (0.1, 0.25, 0.5, 0.75, 0.9):
        assert torch.quantile(t, q).item() == pytest.approx(torch.quantile(reference, q).item(), abs=20), q


@pytest.mark.parametrize("kind", ["sigmoid", "linear"])
@pytest.mark.parametrize("bias", ["content", "style"])
def test_content_or_style_composes_with_the_type_as_aitk(kind, bias):
    # ai-toolkit: the type's sorted list, position u^3 from the high-noise end (content) or from the low end.
    # Median position 1/8 -> the type's 7/8 quantile (content) or 1/8 quantile (style).
    level = 7 / 8 if bias == "content" else 1 / 8
    expected = (
        1 / (1 + math.exp(-math.sqrt(2) * torch.erfinv(torch.tensor(2 * level - 1)).item()))
        if kind == "sigmoid"
        else level
    )
    t = draw(kind, content_or_style=bias)
    assert torch.median(t).item() / 1000 == pytest.approx(expected, abs=0.01)
    # P(s >= 0.9) for linear: content P(u^3 <= 0.1) = 0.1^(1/3); style P(u^3 >= 0.9) = 1 - 0.9^(1/3)
    if kind == "linear":
        share = 0.1 ** (1 / 3) if bias == "content" else 1 - 0.9 ** (1 / 3)
        assert fraction(t, 900, 1000) == pytest.approx(share, abs=0.01)


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
