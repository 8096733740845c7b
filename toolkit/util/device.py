"""Device checks done once, before any weights load."""

from __future__ import annotations

import torch

from toolkit.errors import ToolkitError


class DeviceError(ToolkitError, ValueError):
    pass


def resolve_device(value: str, key: str) -> torch.device:
    """`value` from the YAML (`cpu`, `cuda`, `cuda:1`, `mps`) -> torch.device, or a clear error."""
    try:
        device = torch.device(value)
    except RuntimeError:
        raise DeviceError(f"{key}: '{value}' is not a device; use cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"{key} is '{value}' but CUDA is not available on this machine; set {key}: cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"{key} is '{value}' but only {torch.cuda.device_count()} CUDA device(s) exist")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise DeviceError(f"{key} is '{value}' but MPS is not available; set {key}: cpu")
    return device
