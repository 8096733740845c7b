"""``train.bypass_guidance_embedding``: train without the guidance embedding (ai-toolkit's meaning).

A guidance-distilled FLUX transformer adds an embedding of the guidance value to its timestep embedding.
ai-toolkit's bypass computes the time conditioning without that term in training predictions (for
de-distilled checkpoints that should learn without a guidance value); sampling keeps it. The embedder's output
is summed into the conditioning, so replacing it by zeros is exactly that bypass, for every architecture that
exposes its embedder (``model.guidance_embedder()``).
"""

from __future__ import annotations

import contextlib

import torch


@contextlib.contextmanager
def bypass_guidance(embedder: torch.nn.Module):
    """Within the block, ``embedder`` outputs zeros (so adds nothing to the time embedding)."""
    handle = embedder.register_forward_hook(lambda module, args, out: torch.zeros_like(out))
    try:
        yield
    finally:
        handle.remove()
