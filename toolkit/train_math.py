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
  function unchanged so training and sampling agree; ai-toolkit shifts FLUX.2 by that classic line
  (:func:`flux1_mu`) at every size, so below ~4300 tokens our FLUX.2 ``shift`` trains at more noise.
* ``weighted``: ai-toolkit's: timesteps drawn like ``linear`` and the loss weighted by a fixed curve measured
  on Flex.1-alpha (figures in ``toolkit/aitk_timestep_weights.txt``, from ai-toolkit), which peaks at
  t = 876 and is 0.44..1.52 (mean 1): 35% of the weight lies at s > 0.75. We draw t with probability
  proportional to the curve instead of weighting the loss (importance sampling): the same expected gradient,
  less variance, and no weight to carry around. (For ``content``/``style`` the curve's mean under the biased
  draw, 1.11 / 0.74, is a constant loss scale ai-toolkit has and we do not; Adam-family optimizers ignore it.)
* ``lognorm_blend``: ai-toolkit's list of 1000 timesteps, rebuilt every draw: 750 of ``1 - x / max(x)`` for
  ``x ~ LogNormal(0, 0.333)`` (max over those 750) and 250 evenly spaced, mostly mid-to-high noise.

ai-toolkit builds each type's timestep list sorted from high to low noise and picks a position in it;
``content_or_style`` (``train.content_or_style``) changes only that position, so it composes with every
type exactly as there: ``balanced`` picks uniformly, ``content`` picks ``u^3`` from the high-noise end (where
composition and structure are decided), ``style`` ``u^3`` from the low-noise end (texture and detail). Here a
type is its quantile function ``Q`` and the draw is ``s = Q(1 - position)``, continuous instead of 1000 steps.
"""

from __future__ import annotations

import functools
import math
from pathlib import Path

import torch

from toolkit.util.transfer import to_device

__all__ = [
    "NUM_TRAIN_TIMESTEPS",
    "TIMESTEP_TYPES",
    "flux2_mu",
    "flux1_mu",
    "time_shift",
    "sample_timesteps",
    "aitk_timestep_weights",
    "sample_noise",
    "add_noise",
    "loss_target",
]

NUM_TRAIN_TIMESTEPS = 1000
TIMESTEP_TYPES = ("sigmoid", "linear", "shift", "weighted", "lognorm_blend")
CONTENT_OR_STYLE = ("balanced", "content", "style")
LOGNORM_BLEND_FRACTION = 0.75  # log-normal share of ai-toolkit's lognorm_blend list (its alpha)
_LOGNORM_SCALE = 0.333  # ai-toolkit's LogNormal(0, 0.333)
_LIST_SIZE = 1000  # ai-toolkit's training timestep list
_EDGE = 1e-5  # sampled s stays in [_EDGE, 1 - _EDGE], so t is strictly inside (0, 1000)
WEIGHTS_PATH = Path(__file__).with_name("aitk_timestep_weights.txt")


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


@functools.cache
def aitk_timestep_weights() -> tuple[float, ...]:
    """ai-toolkit's ``weighted`` curve: entry i weighs t = 1000 - i (toolkit/aitk_timestep_weights.txt)."""
    lines = WEIGHTS_PATH.read_text(encoding="utf-8").splitlines()
    return tuple(float(v) for line in lines if not line.startswith("#") for v in line.split())


def _position(content_or_style: str, n: int, generator: torch.Generator) -> torch.Tensor:
    """Where in ai-toolkit's high-to-low-noise timestep list a draw lands, as a fraction in [0, 1)."""
    u = _uniform(n, generator)
    if content_or_style == "content":
        return u**3
    if content_or_style == "style":
        return 1 - u**3
    return u


def _position_probabilities(content_or_style: str, n: int) -> torch.Tensor:
    """P(position falls in slot i of n) for :func:`_position`: (n,) float64."""
    edges = torch.arange(n + 1, dtype=torch.float64) / n
    if content_or_style == "content":  # P(u^3 < e) = e^(1/3)
        cdf = edges ** (1 / 3)
    elif content_or_style == "style":  # P(1 - u^3 < e) = 1 - (1 - e)^(1/3)
        cdf = 1 - (1 - edges) ** (1 / 3)
    else:
        cdf = edges
    return cdf[1:] - cdf[:-1]


def _weighted(content_or_style: str, n: int, generator: torch.Generator) -> torch.Tensor:
    """s with probability proportional to P(slot) * ai-toolkit's weight of that slot, uniform within it."""
    weights = torch.tensor(aitk_timestep_weights(), dtype=torch.float64)
    probs = _position_probabilities(content_or_style, len(weights)) * weights
    slots = torch.multinomial(probs.to(generator.device), n, replacement=True, generator=generator)
    return 1 - (slots + _uniform(n, generator)) / len(weights)


def _lognorm_blend_list(generator: torch.Generator) -> torch.Tensor:
    """ai-toolkit's lognorm_blend list of 1000 noise levels, high to low: 750 log-normal, 250 even."""
    count = round(_LIST_SIZE * LOGNORM_BLEND_FRACTION)
    x = torch.exp(_LOGNORM_SCALE * torch.randn(count, generator=generator, device=generator.device))
    even = torch.linspace(1.0, 1 / _LIST_SIZE, _LIST_SIZE - count, device=generator.device)
    return torch.sort(torch.cat([1 - x / x.max(), even]), descending=True).values


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
    content_or_style: ``balanced``, ``content`` or ``style``: where in the type's schedule (module docstring).
    Raises ValueError for an unknown kind or content_or_style, or ``shift`` without mu or image_seq_len.
    """
    if kind not in TIMESTEP_TYPES:
        raise ValueError(f"unknown timestep type '{kind}'; expected one of {', '.join(TIMESTEP_TYPES)}")
    if content_or_style not in CONTENT_OR_STYLE:
        choices = ", ".join(CONTENT_OR_STYLE)
        raise ValueError(f"unknown content_or_style '{content_or_style}'; expected one of {choices}")
    if kind == "shift" and mu is None:
        if image_seq_len is None:
            raise ValueError("timestep type 'shift' needs mu or image_seq_len")
        mu = flux2_mu(image_seq_len, num_steps)
    if kind == "weighted":
        s = _weighted(content_or_style, batch_size, generator)
    elif kind == "lognorm_blend":
        schedule = _lognorm_blend_list(generator)
        slots = (_position(content_or_style, batch_size, generator) * _LIST_SIZE).long().clamp(max=_LIST_SIZE - 1)
        s = schedule[slots]
    else:
        p = (1 - _position(content_or_style, batch_size, generator)).clamp(_EDGE, 1 - _EDGE)  # quantile level
        if kind == "sigmoid":
            s = torch.sigmoid(torch.special.ndtri(p))
        elif kind == "shift":
            s = time_shift(mu, p)
        else:  # linear
            s = p
    s = s.to(torch.float32).clamp(_EDGE, 1 - _EDGE)
    return to_device(s * NUM_TRAIN_TIMESTEPS, device)


def sample_noise(
    shape: tuple[int, ...],
    generator: torch.Generator,
    *,
    noise_offset: float = 0.0,
    dtype: torch.dtype = torch.float32,
    device: torch.device | str = "cpu",
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
