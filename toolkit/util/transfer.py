"""Host -> GPU copies that do not stall the host.

A copy from ordinary (pageable) host memory makes the CUDA driver stage it through a pinned buffer while
the host thread waits; a copy from pinned memory with `non_blocking=True` is queued on the stream and the
host carries on queuing the step's kernels. Per-step tensors (noise drawn on the CPU generator, batches
from the data loader, cached text embeddings) take this path; the data loader pins its batches itself
(`pin_memory=True` on CUDA), so those are copied without the extra pinning copy. PyTorch's pinned-memory
allocator keeps a pinned block until the copies that read it have finished, so a temporary may be
dropped at once.
"""

from __future__ import annotations

import torch


def to_device(tensor: torch.Tensor, device: torch.device | str, dtype: torch.dtype | None = None) -> torch.Tensor:
    """`tensor.to(device, dtype)`; from the CPU to a CUDA device through pinned memory, without blocking."""
    device = torch.device(device)
    if device.type == "cuda" and tensor.device.type == "cpu":
        if not tensor.is_pinned():
            tensor = tensor.pin_memory()
        return tensor.to(device=device, dtype=dtype, non_blocking=True)
    return tensor.to(device=device, dtype=dtype)


def pins_memory(device: torch.device | str) -> bool:
    """Whether batches for `device` should be built in pinned memory (data loader `pin_memory`)."""
    return torch.device(device).type == "cuda"
