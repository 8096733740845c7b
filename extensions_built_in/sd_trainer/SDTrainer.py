"""The flow-matching LoRA recipe: the loss of one batch.

    x_t = (1 - s) x0 + s noise,  s = t / 1000 drawn by `train.timestep_type`
    loss = mse(model(x_t, t, text, references), model.get_loss_target(noise, x0, t))   # target tokens only
"""

from __future__ import annotations

import torch

from jobs.process.BaseSDTrainProcess import BaseSDTrainProcess
from toolkit.train_math import add_noise, sample_noise, sample_timesteps


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
        noise = sample_noise((size, *latents.shape[1:]), self.generator, noise_offset=train.noise_offset,
                             dtype=latents.dtype, device=latents.device)[cut]
        timesteps = sample_timesteps(
            self.timestep_type, size, self.generator, mu=model.shift_mu(latents),
            content_or_style=train.content_or_style, device=latents.device,
        )[cut]
        embeds = self.batch_prompt_embeds(batch.captions)
        references = self.batch_references(batch)
        if references is not None:
            references = [ref.to(latents.dtype) for ref in references]
        noisy = add_noise(latents, noise, timesteps)
        with self.autocast():
            prediction = model.get_noise_prediction(noisy, timesteps, embeds, references=references)
        target = model.get_loss_target(noise, latents, timesteps)
        if train.loss_type == "mae":
            loss = torch.nn.functional.l1_loss(prediction.float(), target.float())
        else:
            loss = torch.nn.functional.mse_loss(prediction.float(), target.float())
        return loss * 0 if empty else loss

    def autocast(self):
        from toolkit.models.base_model import DTYPES

        dtype = DTYPES[self.config.train.dtype]
        enabled = dtype != torch.float32
        return torch.autocast(device_type=self.device.type, dtype=dtype, enabled=enabled)
