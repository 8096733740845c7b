"""Text conditioning as the models return it and the caches store it: shared by toolkit/models and
toolkit/data, so it lives below both."""

from __future__ import annotations

import dataclasses

import torch


@dataclasses.dataclass
class PromptEmbeds:
    """Text conditioning: named tensors sharing the batch dimension."""

    tensors: dict[str, torch.Tensor]

    def to(self, device=None, dtype=None) -> "PromptEmbeds":
        from toolkit.util.transfer import to_device

        out = {}
        for k, v in self.tensors.items():
            cast = dtype if v.is_floating_point() else None
            # Cached embeddings live on the CPU: a pinned, non-blocking copy to a GPU (toolkit/util/transfer.py).
            out[k] = v.to(dtype=cast) if device is None else to_device(v, device, cast)
        return PromptEmbeds(out)

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.tensors[key]

    @staticmethod
    def cat(items: list["PromptEmbeds"]) -> "PromptEmbeds":
        keys = items[0].tensors.keys()
        return PromptEmbeds({k: torch.cat([i.tensors[k] for i in items]) for k in keys})
