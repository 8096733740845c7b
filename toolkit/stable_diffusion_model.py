"""StableDiffusion: FLUX.1 dev and schnell (`arch: flux`) on diffusers' FluxPipeline.

ai-toolkit's name is kept because it is API; it is one BaseModel subclass, not a
second class tree. dev and schnell share the architecture; the weights tell them
apart (schnell has no guidance embedding).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from toolkit.models.base_model import BaseModel, PromptEmbeds
from toolkit.models.loading import (
    check_single_file,
    load_component,
    load_converted,
    subfolder_or_self,
)
from toolkit.models.weights import resolve_weights, safetensors_keys, strip_prefix
from toolkit.stable_diffusion_arch import FLUX1

log = logging.getLogger(__name__)

_GUIDANCE_KEY = "guidance_in.in_layer.weight"
_FLUX1_KEY = "double_blocks.0.img_mod.lin.weight"


class StableDiffusion(BaseModel):
    spec = FLUX1

    @property
    def is_schnell(self) -> bool:
        return not self.transformer.config.guidance_embeds

    # ------------------------------------------------------------------ loading
    @classmethod
    def weights_problems(cls, model_config, key: str) -> list[str]:
        from toolkit.models.weights_check import TransformerExpectation, weights_problems

        # dev has a guidance embedding and schnell none: both are arch 'flux'.
        expected = TransformerExpectation(cls.arch, cls.spec.transformer_class, None, (_FLUX1_KEY,))
        return weights_problems(model_config, key, expected)

    def load_model(self) -> None:
        from diffusers import (
            AutoencoderKL,
            FlowMatchEulerDiscreteScheduler,
            FluxPipeline,
            FluxTransformer2DModel,
        )
        from transformers import CLIPTextModel, CLIPTokenizer, T5EncoderModel, T5TokenizerFast

        default_extras = self.spec.official_repo
        name = self.model_config.name_or_path
        if Path(name).is_file():
            keys = set(strip_prefix(safetensors_keys(Path(name))))
            default_extras = self.spec.release_for(_GUIDANCE_KEY in keys).official_repo
        src = resolve_weights(self.model_config, default_extras)
        self.sources = src
        dtype = self.torch_dtype
        if src.transformer_file is not None:
            check_single_file(src.transformer_file, [_FLUX1_KEY], [], "FLUX.1 transformer")
            transformer = self._load_single_file_transformer(src)
        else:
            transformer = load_component(FluxTransformer2DModel, src.base_folder, "transformer", dtype, "transformer")
        if src.vae is None:
            vae = load_component(AutoencoderKL, src.base_folder, "vae", dtype, "VAE")
        elif src.vae.is_dir():
            folder, sub = subfolder_or_self(src.vae, "vae")
            vae = load_component(AutoencoderKL, folder, sub, dtype, "VAE")
        else:
            vae = AutoencoderKL.from_single_file(
                str(src.vae), config=str(src.base_folder), subfolder="vae", torch_dtype=dtype
            )
        # text_encoder_path overrides T5 (the large one users swap); CLIP stays with the base.
        if src.text_encoder is not None:
            t5_folder, t5_sub = subfolder_or_self(src.text_encoder, "text_encoder_2")
        else:
            t5_folder, t5_sub = src.base_folder, "text_encoder_2"
        self.pipeline = FluxPipeline(
            scheduler=load_component(FlowMatchEulerDiscreteScheduler, src.base_folder, "scheduler", None, "scheduler"),
            vae=vae,
            text_encoder=load_component(CLIPTextModel, src.base_folder, "text_encoder", dtype, "CLIP text encoder"),
            tokenizer=load_component(CLIPTokenizer, src.base_folder, "tokenizer", None, "CLIP tokenizer"),
            text_encoder_2=load_component(T5EncoderModel, t5_folder, t5_sub, dtype, "T5 text encoder"),
            tokenizer_2=load_component(T5TokenizerFast, src.base_folder, "tokenizer_2", None, "T5 tokenizer"),
            transformer=transformer,
        )
        self.pipeline.set_progress_bar_config(disable=True)
        self.apply_quantization()
        self.place_on_device()
        if self.model_config.lora_path:
            self.load_lora(self.model_config.lora_path, self.model_config.lora_scale)
        log.info("loaded FLUX.1 %s from %s", "schnell" if self.is_schnell else "dev", name)

    def _load_single_file_transformer(self, src):
        """BFL flux1-*.safetensors through diffusers' own key converter (any model width)."""
        from diffusers import FluxTransformer2DModel

        from toolkit.convert.flux_keys import flux_transformer_bfl_to_diffusers

        return load_converted(
            FluxTransformer2DModel,
            src.base_folder,
            "transformer",
            src.transformer_file,
            lambda state, model: flux_transformer_bfl_to_diffusers(state),
            self.torch_dtype,
            f"model.name_or_path: '{src.transformer_file}' does not match the FLUX.1 transformer config in",
        )

    # ------------------------------------------------------------------ hooks
    def encode_prompt(self, prompts: list[str]) -> PromptEmbeds:
        """-> prompt_embeds (B, 512, 4096) T5, pooled_prompt_embeds (B, 768) CLIP.

        The pipeline's text_ids are all zeros of shape (512, 3), not batch-first, so they are
        rebuilt at prediction time instead of being cached per caption.
        """
        embeds, pooled, _ = self.pipeline.encode_prompt(
            prompt=list(prompts), prompt_2=None, device=self.text_encoder_device()
        )
        return PromptEmbeds({"prompt_embeds": embeds, "pooled_prompt_embeds": pooled}).to(self.device)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, 16, H/8, W/8) scaled and shifted as FluxPipeline expects."""
        vae = self.vae
        latents = vae.encode(images.to(vae.device, vae.dtype)).latent_dist.mode()
        return (latents - vae.config.shift_factor) * vae.config.scaling_factor

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        vae = self.vae
        latents = latents / vae.config.scaling_factor + vae.config.shift_factor
        return vae.decode(latents.to(vae.dtype), return_dict=False)[0]

    def get_noise_prediction(self, noisy_latents, timesteps, prompt_embeds, guidance_scale=1.0, references=None):
        """noisy_latents (B, 16, h, w); timesteps (B,) in [0, 1000] -> prediction (B, 16, h, w).

        FLUX.1 takes no reference images (capabilities.reference_training is False)."""
        if references:
            raise ValueError("FLUX.1 (arch: flux) takes no reference images; FLUX.2 models do")
        pipe = self.pipeline
        b, c, h, w = noisy_latents.shape
        hidden = pipe._pack_latents(noisy_latents, b, c, h, w)
        img_ids = pipe._prepare_latent_image_ids(b, h // 2, w // 2, noisy_latents.device, hidden.dtype)
        guidance = None
        if self.transformer.config.guidance_embeds:
            guidance = torch.full((b,), float(guidance_scale), device=noisy_latents.device, dtype=torch.float32)
        pred = self.transformer(
            hidden_states=hidden.to(self.transformer.dtype),
            timestep=(timesteps / 1000).to(hidden.dtype),
            guidance=guidance,
            pooled_projections=prompt_embeds["pooled_prompt_embeds"],
            encoder_hidden_states=prompt_embeds["prompt_embeds"],
            txt_ids=torch.zeros(prompt_embeds["prompt_embeds"].shape[1], 3, device=hidden.device, dtype=hidden.dtype),
            img_ids=img_ids,
            return_dict=False,
        )[0]
        scale = pipe.vae_scale_factor
        return pipe._unpack_latents(pred, h * scale, w * scale, scale)

    def shift_mu(self, latents: torch.Tensor) -> float:
        """FluxPipeline's mu: linear in the packed sequence length (h/2 * w/2 tokens)."""
        from diffusers.pipelines.flux.pipeline_flux import calculate_shift

        return calculate_shift(latents.shape[-2] * latents.shape[-1] // 4)

    def guidance_embedder(self):
        """dev's guidance embedder (schnell has none)."""
        return None if self.is_schnell else self.transformer.time_text_embed.guidance_embedder

    def pipeline_call_kwargs(self, request) -> dict:
        embeds = self.prompt_embeds(request.prompt)
        if request.neg:
            log.warning("FLUX.1 is guidance-distilled: the negative prompt %r is ignored", request.neg)
        return {
            "prompt_embeds": embeds["prompt_embeds"],
            "pooled_prompt_embeds": embeds["pooled_prompt_embeds"],
            "guidance_scale": request.guidance_scale,
        }

    def lora_targets(self) -> list[str]:
        """Linears in the double/single blocks except the adaLN modulation (norm*.linear)."""
        return [
            name
            for name, module in self.transformer.named_modules()
            if isinstance(module, torch.nn.Linear)
            and name.startswith(("transformer_blocks.", "single_transformer_blocks."))
            and ".norm" not in name
        ]
