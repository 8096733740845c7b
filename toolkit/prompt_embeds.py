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
        out = {}
        for k, v in self.tensors.items():
            floating = v.is_floating_point()
            out[k] = v.to(device=device, dtype=dtype if floating else None)
        return PromptEmbeds(out)

    def __getitem__(self, key: str) -> torch.Tensor:
        return self.tensors[key]

    @staticmethod
    def cat(items: list["PromptEmbeds"]) -> "PromptEmbeds":
        keys = items[0].tensors.keys()
        return PromptEmbeds({k: torch.cat([i.tensors[k] for i in items]) for k in keys})
