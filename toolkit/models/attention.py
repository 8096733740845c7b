"""Which attention kernel the transformer runs, through diffusers' attention dispatcher.

diffusers' FLUX attention processors call `dispatch_attention_fn` with the backend that
`ModelMixin.set_attention_backend` set. The choice, logged once at load:

1. `DIFFUSERS_ATTN_BACKEND` (diffusers' own environment variable), when set: the user's choice.
2. On CUDA with the `flash-attn` package installed: `flash` (FlashAttention-2, forward and backward kernels).
3. Otherwise `native`: torch's `scaled_dot_product_attention`, which picks per call among its fused kernels
   (FlashAttention-2, memory-efficient, cuDNN) for the dtype, head size and GPU, and falls back to the math
   kernel on the CPU. No package to install, and on Hopper its flash kernel is what `flash` would run.

Backends that need the Hugging Face kernel hub (`*_hub`) are never chosen: they download code at run time.
"""

from __future__ import annotations

import importlib.util
import logging
import os

import torch

log = logging.getLogger(__name__)

ENV = "DIFFUSERS_ATTN_BACKEND"


def choose_backend(device: torch.device, flash_attn_installed: bool, env: str | None = None) -> tuple[str, str]:
    """(diffusers backend name, why) for `device`."""
    if env:
        return env, f"set by {ENV}"
    if device.type == "cuda" and flash_attn_installed:
        return "flash", "FlashAttention-2 (flash-attn package)"
    if device.type == "cuda":
        return "native", "torch SDPA: flash / memory-efficient / cuDNN kernel chosen per call"
    return "native", f"torch SDPA on {device.type}"


def set_attention_backend(transformer: torch.nn.Module, device: torch.device) -> str:
    """Set the transformer's attention backend for `device` and log it; returns the backend's name."""
    device = torch.device(device)
    installed = importlib.util.find_spec("flash_attn") is not None
    name, why = choose_backend(device, installed, os.environ.get(ENV))
    setter = getattr(transformer, "set_attention_backend", None)
    if setter is None:
        log.info("attention: %s has no attention dispatcher; its own attention runs", type(transformer).__name__)
        return "own"
    setter(name)
    log.info("attention: diffusers backend '%s' (%s)", name, why)
    return name
