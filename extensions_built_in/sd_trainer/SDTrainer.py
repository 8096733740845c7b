"""The flow-matching LoRA recipe: the loss of one batch.

    x_t = (1 - s) x0 + s noise,  s = t / 1000 drawn by `train.timestep_type`
    loss = loss_type(model(x_t, t, text, references), model.get_loss_target(noise, x0, t))   # target tokens only
           weighted by the items' masks and loss_multiplier (toolkit/train/losses.py)
         + the preservation loss, when DOP / blank prompt preservation is on (toolkit/train/preservation.py)
    x reg_weight on a batch of regularisation images

The LoRA runs at each item's `network_weight` (toolkit.network.ItemMultiplier).
"""

from __future__ import annotations

import contextlib
import logging

import torch

from jobs.process.BaseSDTrainProcess import BaseSDTrainProcess
from toolkit.train.losses import batch_loss, elementwise_loss
from toolkit.train_math import add_noise, sample_noise, sample_timesteps

log = logging.getLogger(__name__)


class SDTrainer(BaseSDTrainProcess):
    def compute_loss(self, batch, lo: int, hi: int, size: int) -> torch.Tensor:
        """batch: this process's items [lo, hi) of a global batch of `size` (latents (n, C, h, w) or
        images (n, 3, H, W), plus reference latents for edit training) -> scalar fp32 mean loss over
        them (0 when the shard is empty). The loss covers the target tokens only: references condition."""
        train, model = self.config.train, self.model
        latents = self.batch_latents(batch).to(model.transformer.dtype)
        # An empty shard (a short last batch) still runs the model on its stand-in item, weighted 0: a
        # sharded (FSDP) transformer needs every process in each forward and backward.
        empty = hi == lo
        # Drawn for the whole global batch, then sliced: the same numbers whatever the process count.
        cut = slice(0, 1) if empty else slice(lo, hi)
        noise = sample_noise(
            (size, *latents.shape[1:]),
            self.generator,
            noise_offset=train.noise_offset,
            dtype=latents.dtype,
            device=latents.device,
        )[cut]
        timesteps = sample_timesteps(
            self.timestep_type,
            size,
            self.generator,
            mu=model.shift_mu(latents),
            content_or_style=train.content_or_style,
            device=latents.device,
        )[cut]
        embeds = self.batch_prompt_embeds(batch.captions)
        references = self.batch_references(batch)
        if references is not None:
            references = [ref.to(latents.dtype) for ref in references]
        noisy = add_noise(latents, noise, timesteps)
        if self.item_multiplier is not None:
            self.item_multiplier.set(batch.network_weights)  # stays set through the backward
        prediction = self.predict(noisy, timesteps, embeds, references)
        target = model.get_loss_target(noise, latents, timesteps)
        elementwise = elementwise_loss(train.loss_type, prediction, target, noise=noise, latents=latents)
        loss = batch_loss(elementwise, batch.masks, batch.loss_multipliers)
        if self.preservation:
            texts = self.preservation.texts(batch.captions, batch.triggers or [None] * len(batch.captions))
            loss = loss + self.preservation.loss(
                self.predict, model.transformer, self.batch_prompt_embeds(texts), noisy, timesteps, references
            )
        if self.reg_loader is not None:  # a host-side fact: no device read inside the step
            # ai-toolkit: the whole loss times the batch mean of (reg_weight for reg items, 1 otherwise)
            loss = loss * torch.where(batch.is_reg, train.reg_weight, 1.0).float().mean().to(loss.device)
        return loss * 0 if empty else loss

    def _prepare_data(self) -> None:
        validation = self.config.train.validation_config
        self.validation = None
        if validation is not None:  # encoded first, while the VAE is still on the device
            from toolkit.train.validation import ValidationLoss

            self.validation = ValidationLoss(validation, self.config.trigger_word)
            self.validation.prepare(self.model, self.model_cls.capabilities.bucket_divisibility)
        super()._prepare_data()
        if self.config.train.bypass_guidance_embedding and self.model.guidance_embedder() is None:
            log.info(
                "train.bypass_guidance_embedding: %s has no guidance embedding; there is nothing to bypass",
                self.model.arch,
            )

    def extra_captions(self) -> list[str]:
        return self.validation.prompts if self.validation is not None else []

    def after_step(self, first_step: int) -> None:
        if self.validation is None or not self.validation.due(self.step, first_step):
            return
        model = self.model
        loss = self.validation(
            self.predict, self.batch_prompt_embeds, model.get_loss_target, self.device, model.transformer.dtype
        )
        self.reporter.validation(self.step, loss)

    def predict(self, noisy, timesteps, embeds, references=None) -> torch.Tensor:
        """The transformer's training prediction (autocast; the guidance embedding bypassed when asked)."""
        with self.autocast(), self._guidance_bypass():
            return self.model.get_noise_prediction(noisy, timesteps, embeds, references=references)

    def _guidance_bypass(self):
        embedder = self.model.guidance_embedder() if self.config.train.bypass_guidance_embedding else None
        if embedder is None:
            return contextlib.nullcontext()
        from toolkit.train.guidance import bypass_guidance

        return bypass_guidance(embedder)

    def autocast(self):
        from toolkit.models.base_model import DTYPES

        dtype = DTYPES[self.config.train.dtype]
        enabled = dtype != torch.float32
        return torch.autocast(device_type=self.device.type, dtype=dtype, enabled=enabled)
