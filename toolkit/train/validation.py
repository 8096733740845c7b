"""``train.validation_config``: a validation loss on held-out images (ai-toolkit's meaning).

Each held-out image is resized and centre-cropped to its bucket at ``resolution`` (the training buckets' rule),
encoded once, and given fixed noise (seed 42 + its index, as ai-toolkit). Every ``validate_every_n_steps`` steps
(and after the run's first step) the LoRA at full strength predicts every image at every ``validation_sigmas``
noise level, without gradients; the loss is the mse against the flow-matching target, averaged over sigmas and
then images. Noise, sigmas and images never change, so the curve moves only with the LoRA: a rising curve
while the training loss falls is overfitting.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F

log = logging.getLogger(__name__)

NOISE_SEED = 42


class ValidationLoss:
    def __init__(self, config, trigger_word: str | None):
        from toolkit.prompt import apply_trigger

        self.config = config
        self.prompts = [apply_trigger(item.prompt, trigger_word) for item in config.validation_items]
        self.latents: list[torch.Tensor] = []
        self.noise: list[torch.Tensor] = []

    def prepare(self, model, divisibility: int) -> None:
        """Encode the held-out images with ``model.encode_images`` and draw their fixed noise (CPU, fp32)."""
        from toolkit.data.buckets import make_bucket
        from toolkit.data.dataset import image_to_tensor, open_rgb, resize_and_crop

        for i, item in enumerate(self.config.validation_items):
            img = open_rgb(Path(item.image_path).expanduser())
            bucket = make_bucket(img.width, img.height, self.config.resolution, divisibility)
            pixels = image_to_tensor(resize_and_crop(img, bucket)).unsqueeze(0)
            with torch.no_grad():
                latents = model.encode_images(pixels.to(model.device)).float().cpu()
            generator = torch.Generator("cpu").manual_seed(NOISE_SEED + i)
            self.latents.append(latents)
            self.noise.append(torch.randn(latents.shape, generator=generator))
        log.info(
            "validation: %d held-out image(s) at sigmas %s, every %d steps",
            len(self.latents),
            self.config.validation_sigmas,
            self.config.validate_every_n_steps,
        )

    def due(self, step: int, first_step: int) -> bool:
        return step == first_step or step % self.config.validate_every_n_steps == 0

    @torch.no_grad()
    def __call__(self, predict, embed, get_target, device, dtype) -> float:
        """predict(noisy, timesteps, embeds) -> prediction; embed(list of prompts) -> embeddings;
        get_target(noise, latents, timesteps) -> the regression target."""
        from toolkit.train_math import add_noise

        sigmas = self.config.validation_sigmas
        timesteps = torch.tensor([s * 1000.0 for s in sigmas], device=device)
        losses = []
        for latents, noise, prompt in zip(self.latents, self.noise, self.prompts):
            n = len(sigmas)
            latents = latents.to(device, dtype).expand(n, *latents.shape[1:])
            noise = noise.to(device, dtype).expand(n, *noise.shape[1:])
            noisy = add_noise(latents, noise, timesteps)
            prediction = predict(noisy, timesteps, embed([prompt] * n))
            losses.append(F.mse_loss(prediction.float(), get_target(noise, latents, timesteps).float()))
        return torch.stack(losses).mean().item()
