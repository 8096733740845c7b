"""The loss of one batch: per-element loss (``train.loss_type``), loss masks, per-item weights.

Pure functions on tensors, following ai-toolkit's ``calculate_loss`` for the keys it shares with us:

    loss_i  = mean over (C, h, w) of  elementwise(prediction, target) * mask_weight        (per item i)
    loss    = mean over i of  loss_i * loss_multiplier_i

``mask_weight`` is the loss mask averaged down to the prediction's resolution and divided by its mean over
the batch, so masking moves the loss to the masked pixels without changing its scale (ai-toolkit: same
normalisation). Loss types:

* ``mse``, ``mae``: squared / absolute error against the flow-matching target.
* ``pseudo_huber``: ``sqrt(d^2 + c^2) - c`` with ``c = 0.01`` (ai-toolkit's constant).
* ``wavelet``: ai-toolkit's wavelet loss: the squared error between one-level Haar subbands (LL, LH, HL, HH,
  stacked on the channel axis) of the predicted clean latents ``noise - prediction`` and of the latents. The
  orthonormal Haar transform keeps squared errors, so for even latent sizes its mean equals the mse's; it
  differs where odd sizes are zero-padded and where a mask weights it (the mask is averaged to the subbands'
  resolution).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

LOSS_TYPES = ("mse", "mae", "pseudo_huber", "wavelet")
PSEUDO_HUBER_C = 0.01


def haar_subbands(x: torch.Tensor) -> torch.Tensor:
    """(B, C, h, w) -> (B, 4C, ceil(h/2), ceil(w/2)): orthonormal one-level Haar transform (odd sides are
    zero-padded), subbands LL, LH, HL, HH stacked in that order on the channel axis."""
    h, w = x.shape[-2:]
    x = F.pad(x, (0, w % 2, 0, h % 2))
    a, b = x[..., 0::2, 0::2], x[..., 0::2, 1::2]
    c, d = x[..., 1::2, 0::2], x[..., 1::2, 1::2]
    return torch.cat([(a + b + c + d) / 2, (a + b - c - d) / 2, (a - b + c - d) / 2, (a - b - c + d) / 2], dim=1)


def elementwise_loss(
    kind: str,
    prediction: torch.Tensor,
    target: torch.Tensor,
    *,
    noise: torch.Tensor | None = None,
    latents: torch.Tensor | None = None,
) -> torch.Tensor:
    """Per-element float32 loss of ``prediction`` against ``target`` (both (B, C, h, w)).

    ``wavelet`` needs ``noise`` and ``latents`` (it compares predicted clean latents) and returns
    (B, 4C, ceil(h/2), ceil(w/2)); every other kind returns the input's shape.
    """
    prediction, target = prediction.float(), target.float()
    if kind == "mse":
        return F.mse_loss(prediction, target, reduction="none")
    if kind == "mae":
        return F.l1_loss(prediction, target, reduction="none")
    if kind == "pseudo_huber":
        return torch.sqrt((prediction - target) ** 2 + PSEUDO_HUBER_C**2) - PSEUDO_HUBER_C
    if kind == "wavelet":
        if noise is None or latents is None:
            raise ValueError("the wavelet loss needs noise and latents")
        predicted_x0 = noise.float() - prediction
        return F.mse_loss(haar_subbands(predicted_x0), haar_subbands(latents.float()), reduction="none")
    raise ValueError(f"unknown loss_type '{kind}'; expected one of {', '.join(LOSS_TYPES)}")


def mask_weights(masks: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B, 1, H, W) pixel masks -> (B, 1, h, w) float32 weights at ``size``, each cell the mean of the pixels it
    covers, divided by the batch mean (so the weights average 1). An all-zero batch of masks weights nothing."""
    weights = F.adaptive_avg_pool2d(masks.float(), size)
    mean = weights.mean()
    return weights / mean if mean > 0 else weights


def batch_loss(
    elementwise: torch.Tensor, masks: torch.Tensor | None = None, item_weights: torch.Tensor | None = None
) -> torch.Tensor:
    """Scalar loss from a per-element loss (B, C, h, w), optional pixel masks (B, 1, H, W) and per-item weights
    (B,) (see the module docstring)."""
    if masks is not None:
        elementwise = elementwise * mask_weights(masks.to(elementwise.device), tuple(elementwise.shape[-2:]))
    per_item = elementwise.mean(dim=tuple(range(1, elementwise.ndim)))
    if item_weights is not None:
        per_item = per_item * item_weights.to(per_item.device, per_item.dtype)
    return per_item.mean()
