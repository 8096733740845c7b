"""Output preservation losses: ai-toolkit's ``diff_output_preservation`` (DOP) and ``blank_prompt_preservation``.

Both keep the LoRA from changing what the base model does on prompts it should leave alone. On the same noisy
latents and timesteps as the training loss:

    prior     = base model (LoRA off, no gradient) on the preservation prompt
    preserved = model with the LoRA on the preservation prompt
    loss     += multiplier * mse(preserved, prior)          (mean over every element)

The preservation prompt is, for DOP, each item's caption with its trigger word replaced by
``diff_output_preservation_class`` ("photo of sks woman" -> "photo of woman", the trigger of the item's dataset,
else the process's); for blank prompt preservation, the empty prompt. The two are exclusive (a config error).
The training loss itself is unchanged; masks and ``loss_multiplier`` weight only it, as in ai-toolkit.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F


class Preservation:
    """The preservation loss a ``train:`` section asks for (``kind`` None: none)."""

    def __init__(self, train):
        self.kind = None
        if train.diff_output_preservation:
            self.kind, self.multiplier = "dop", train.diff_output_preservation_multiplier
        elif train.blank_prompt_preservation:
            self.kind, self.multiplier = "blank", train.blank_prompt_preservation_multiplier
        self.class_word = train.diff_output_preservation_class

    def __bool__(self) -> bool:
        return self.kind is not None

    def texts(self, captions: Sequence[str], triggers: Sequence[str | None]) -> list[str]:
        """The preservation prompt of each item."""
        if self.kind == "blank":
            return [""] * len(captions)
        return [c.replace(t, self.class_word) if t else c for c, t in zip(captions, triggers)]

    def cache_texts(self, items) -> list[str]:
        """Every preservation prompt the items can draw (for the text-embedding cache)."""
        from toolkit.data.dataset import caption_variants

        if not self:
            return []
        if self.kind == "blank":
            return [""]
        by_trigger: dict[str | None, list] = {}
        for item in items:
            by_trigger.setdefault(item.trigger_word, []).append(item)
        texts = []
        for trigger, group in by_trigger.items():
            variants = caption_variants(group)
            texts += self.texts(variants, [trigger] * len(variants))
        return list(dict.fromkeys(texts))

    def loss(
        self,
        predict: Callable[..., torch.Tensor],
        transformer,
        embeds,
        noisy: torch.Tensor,
        timesteps: torch.Tensor,
        references=None,
    ) -> torch.Tensor:
        """``multiplier * mse(LoRA-on prediction, LoRA-off prediction)`` on ``embeds`` (the preservation prompts).

        predict(noisy, timesteps, embeds, references) -> prediction; ``transformer`` carries the PEFT adapter that
        is switched off for the prior.
        """
        with torch.no_grad():
            transformer.disable_adapters()
            try:
                prior = predict(noisy, timesteps, embeds, references)
            finally:
                transformer.enable_adapters()
        preserved = predict(noisy, timesteps, embeds, references)
        return F.mse_loss(preserved.float(), prior.float()) * self.multiplier
