"""Flow-matching training maths: timestep sampling, noising, the regression target.

Pure functions on tensors; randomness comes only from the ``torch.Generator`` passed in, so a seed
reproduces a run. Conventions (as diffusers' FLUX pipelines and ai-toolkit):

* ``t`` in (0, 1000) is the timestep the trainer handles; the noise level is ``s = t / 1000`` (the
  transformer is called with ``s``). ``s = 0`` is the clean image, ``s = 1`` pure noise.
* ``x_s = (1 - s) * x0 + s * noise`` and the model predicts the velocity ``noise - x0``.

Timestep types (``train.timestep_type``), as densities over s:

* ``sigmoid``: ``sigmoid(N(0, 1))``, ai-toolkit's (and kohya's) default: logit-normal, centred on s = 0.5.
* ``linear``: uniform.
* ``shift``: uniform, then the resolution-dependent exponential time shift the model's pipeline samples
  with: ``s' = e^mu / (e^mu + 1/s - 1)``. FLUX.2's mu is its pipeline's ``compute_empirical_mu(image_seq_len,
  num_steps)`` (:func:`flux2_mu`); FLUX.1's is its pipeline's ``calculate_shift`` (:func:`flux1_mu`). Larger
  images get larger mu, i.e. more training at high noise, matching where inference spends its steps.
  BFL's fit interpolates in the step count only up to 4300 tokens: at 50 steps mu rises to about 2.0 near
  4300 tokens (~1024x1024 px), falls to ~1.2 just above, and rises again along the 200-step line
  (``mu = 0.000169 * tokens + 0.457``, the classic 0.5 at 256 / 1.15 at 4096 line). We keep the pipeline's
  function unchanged so training and sampling agree.
* ``weighted``: ai-toolkit's bell-shaped weighting centred mid-schedule, ``w(s) = exp(-2 (s - 1/2)^2) -
  exp(-1/2)`` (zero at both ends). ai-toolkit draws uniform timesteps and multiplies the loss by w; we draw s
  with density proportional to w instead (importance sampling): the same expected gradient, less variance, and
  no loss weighting to carry around.
* ``lognorm_blend``: per sample, with probability 3/4 logit-normal (as ``sigmoid``), else uniform: mostly
  mid-schedule while the uniform quarter keeps both ends trained. ai-toolkit's version normalises a log-normal
  draw by the batch maximum, which makes it depend on the batch size (degenerate at batch size 1); the
  per-sample mixture keeps its 75/25 blend without that.

``content_or_style`` (``train.content_or_style``) is applied by the sampler, not a loss weight, and as in
ai-toolkit it replaces the timestep type: ``content`` draws ``s = 1 - u^3`` (biased to high noise, where
composition and structure are decided), ``style`` draws ``s = u^3`` (low noise, where texture and detail are).
"""

from __future__ import annotations

import math

import torch

from toolkit.util.transfer import to_device

__all__ = [
    "NUM_TRAIN_TIMESTEPS",
    "TIMESTEP_TYPES",
    "flux2_mu",
    "flux1_mu",
    "time_shift",
    "sample_timesteps",
    "sample_noise",
    "add_noise",
    "loss_target",
]

NUM_TRAIN_TIMESTEPS = 1000
TIMESTEP_TYPES = ("sigmoid", "linear", "shift", "weighted", "lognorm_blend")
CONTENT_OR_STYLE = ("balanced", "content", "style")
LOGNORM_BLEND_FRACTION = 0.75  # logit-normal share of lognorm_blend (ai-toolkit's alpha)
_EDGE = 1e-5  # sampled s stays in [_EDGE, 1 - _EDGE], so t is strictly inside (0, 1000)
_WEIGHTED_BINS = 1000


def flux2_mu(image_seq_len: int, num_steps: int = 50) -> float:
    """FLUX.2's shift for ``image_seq_len`` latent tokens at ``num_steps`` sampling steps (its pipeline's default 50).

    diffusers' own ``compute_empirical_mu`` (pipeline_flux2.py), so training shifts exactly as sampling does.
    """
    from diffusers.pipelines.flux2.pipeline_flux2 import compute_empirical_mu

    return compute_empirical_mu(image_seq_len=int(image_seq_len), num_steps=int(num_steps))


def flux1_mu(image_seq_len: int) -> float:
    """FLUX.1-dev's shift: diffusers' ``calculate_shift`` with the release scheduler's values (0.5 at 256 tokens,
    1.15 at 4096)."""
    from diffusers.pipelines.flux.pipeline_flux import calculate_shift

    return calculate_shift(int(image_seq_len), 256, 4096, 0.5, 1.15)


def time_shift(mu: float, s: torch.Tensor) -> torch.Tensor:
    """Exponential time shift of ``FlowMatchEulerDiscreteScheduler`` (sigma exponent 1): s in (0, 1] -> (0, 1]."""
    return math.exp(mu) / (math.exp(mu) + (1.0 / s - 1.0))


def _uniform(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=generator.device)


def _logit_normal(n: int, generator: torch.Generator) -> torch.Tensor:
    return torch.sigmoid(torch.randn(n, generator=generator, device=generator.device))


def _bell(n: int, generator: torch.Generator) -> torch.Tensor:
    """Draws from w(s) = exp(-2 (s - 1/2)^2) - exp(-1/2): pick a bin by weight, then uniformly inside it."""
    centres = (torch.arange(_WEIGHTED_BINS, dtype=torch.float64) + 0.5) / _WEIGHTED_BINS
    weights = torch.exp(-2 * (centres - 0.5) ** 2) - math.exp(-0.5)
    bins = torch.multinomial(weights.to(generator.device), n, replacement=True, generator=generator)
    return (bins + _uniform(n, generator)) / _WEIGHTED_BINS


def sample_timesteps(
    kind: str,
    batch_size: int,
    generator: torch.Generator,
    *,
    image_seq_len: int | None = None,
    mu: float | None = None,
    num_steps: int = 50,
    content_or_style: str = "balanced",
    device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Training timesteps: (batch_size,) float32 in (0, 1000), on ``device`` (drawn on the generator's device).

    kind: one of :data:`TIMESTEP_TYPES` (module docstring). ``shift`` needs ``mu``, or ``image_seq_len``
        (latent tokens per image, ``(H/16) * (W/16)``) to compute FLUX.2's mu at ``num_steps`` steps.
    content_or_style: ``balanced`` uses ``kind``; ``content`` / ``style`` replace it (module docstring).
    Raises ValueError for an unknown kind or content_or_style, or ``shift`` without mu or image_seq_len.
    """
    if kind not in TIMESTEP_TYPES:
        raise ValueError(f"unknown timestep type '{kind}'; expected one of {', '.join(TIMESTEP_TYPES)}")
    if content_or_style not in CONTENT_OR_STYLE:
        choices = ", ".join(CONTENT_OR_STYLE)
        raise ValueError(f"unknown content_or_style '{content_or_style}'; expected one of {choices}")
    if content_or_style == "content":
        s = 1 - _uniform(batch_size, generator) ** 3
    elif content_or_style == "style":
        s = _uniform(batch_size, generator) ** 3
    elif kind == "sigmoid":
        s = _logit_normal(batch_size, generator)
    elif kind == "linear":
        s = _uniform(batch_size, generator)
    elif kind == "shift":
        if mu is None:
            if image_seq_len is None:
                raise ValueError("timestep type 'shift' needs mu or image_seq_len")
            mu = flux2_mu(image_seq_len, num_steps)
        s = time_shift(mu, _uniform(batch_size, generator).clamp(min=_EDGE))
    elif kind == "weighted":
        s = _bell(batch_size, generator)
    else:  # lognorm_blend: draw both, then pick per sample, so the generator advances the same every call
        logit_normal = _logit_normal(batch_size, generator)
        uniform = _uniform(batch_size, generator)
        s = torch.where(_uniform(batch_size, generator) < LOGNORM_BLEND_FRACTION, logit_normal, uniform)
    s = s.to(torch.float32).clamp(_EDGE, 1 - _EDGE)
    return to_device(s * NUM_TRAIN_TIMESTEPS, device)


def sample_noise(
    shape: tuple[int, ...], generator: torch.Generator, *, noise_offset: float = 0.0,
    dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu",
) -> torch.Tensor:
    """Gaussian noise of ``shape`` (B, C, ...); ``noise_offset`` adds ``noise_offset * N(0, 1)`` per (sample,
    channel), constant over space (``train.noise_offset``: lets the model learn overall brightness shifts)."""
    noise = torch.randn(shape, generator=generator, device=generator.device)
    if noise_offset:
        per_channel = torch.randn(shape[:2], generator=generator, device=generator.device)
        noise = noise + noise_offset * per_channel.reshape(*shape[:2], *([1] * (len(shape) - 2)))
    return to_device(noise, device, dtype)  # drawn on the CPU generator: pinned, non-blocking copy to a GPU


def add_noise(latents: torch.Tensor, noise: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
    """``x_t = (1 - s) * latents + s * noise`` with ``s = timesteps / 1000``, per sample.

    latents, noise: (B, ...) same shape and dtype; timesteps: (B,) in [0, 1000]. Computed in float32 and
    returned in ``latents.dtype``; exact at the ends (t = 0 gives ``latents``, t = 1000 gives ``noise``).
    """
    s = (timesteps.to(torch.float32) / NUM_TRAIN_TIMESTEPS).reshape(-1, *([1] * (latents.ndim - 1)))
    s = s.to(latents.device)
    noisy = (1 - s) * latents.to(torch.float32) + s * noise.to(torch.float32)
    return noisy.to(latents.dtype)


def loss_target(noise: torch.Tensor, latents: torch.Tensor) -> torch.Tensor:
    """The flow-matching regression target, the velocity ``noise - latents`` (same shape as both)."""
    return noise - latents
