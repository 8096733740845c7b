"""FLUX.2 family: dev (Mistral3 text encoder, guidance-distilled) and klein-base 4B / 9B
(Qwen3 text encoder, no guidance embedding, real CFG at sampling), on diffusers' Flux2 classes.

The variants differ only in data (their declarations in `arch.py`); the maths is the pipeline's own
static functions (patchify, batch-norm normalisation, packing, position ids), so
training sees latents and text embeddings exactly as inference produces them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from extensions_built_in.diffusion_models.flux2.arch import FLUX2_DEV, FLUX2_KLEIN_4B, FLUX2_KLEIN_9B
from toolkit.models.base_model import BaseModel, ImageRequest, PromptEmbeds
from toolkit.models.loading import (
    check_single_file,
    load_component,
    load_converted,
    load_single_file_transformer,
    read_json,
    subfolder_or_self,
)
from toolkit.models.weights import WeightsError, resolve_weights

log = logging.getLogger(__name__)


_FLUX2_KEY = "single_stream_modulation.lin.weight"
_GUIDANCE_KEY = "guidance_in.in_layer.weight"


class Flux2Model(BaseModel):
    """FLUX.2-dev. The klein classes below change only their declaration (`spec`) and real CFG.

    Every FLUX.2 model edits from reference images (`reference_training`); limits in `arch.py`.
    """

    spec = FLUX2_DEV

    # ------------------------------------------------------------------ loading
    @classmethod
    def weights_problems(cls, model_config, key: str) -> list[str]:
        from toolkit.models.weights_check import TransformerExpectation, weights_problems

        guidance = cls.spec.guidance_embeds
        expected = TransformerExpectation(
            cls.spec.arch,
            cls.spec.transformer_class,
            guidance,
            (_FLUX2_KEY,) + ((_GUIDANCE_KEY,) if guidance else ()),
            () if guidance else (_GUIDANCE_KEY,),
        )
        return weights_problems(model_config, key, expected)

    def load_model(self) -> None:
        import diffusers
        from diffusers import FlowMatchEulerDiscreteScheduler

        src = resolve_weights(self.model_config, self.official_repo)
        self.sources = src
        transformer = self._load_transformer(src)
        vae = self._load_vae(src)
        text_encoder, tokenizer = self._load_text_encoder(src)
        scheduler = load_component(FlowMatchEulerDiscreteScheduler, src.base_folder, "scheduler", None, "scheduler")
        pipeline_cls = getattr(diffusers, self.spec.pipeline)
        extra = {}
        if self.spec.pipeline == "Flux2KleinPipeline":
            index = src.base_folder / "model_index.json"
            extra["is_distilled"] = bool(read_json(index).get("is_distilled", False)) if index.is_file() else False
        self.pipeline = pipeline_cls(
            scheduler=scheduler,
            vae=vae,
            text_encoder=text_encoder,
            tokenizer=tokenizer,
            transformer=transformer,
            **extra,
        )
        self.pipeline.set_progress_bar_config(disable=True)
        if self.options.adapter_type == "lokr":
            fuse_qkv(transformer)
        self.apply_quantization()
        self.place_on_device()
        if self.model_config.lora_path:
            self.load_lora(self.model_config.lora_path, self.model_config.lora_scale)
        log.info("loaded %s (%s) from %s", self.arch, self.spec.pipeline, self.model_config.name_or_path)

    def _load_transformer(self, src):
        from diffusers import Flux2Transformer2DModel

        if src.transformer_file is not None:
            required = [_FLUX2_KEY] + ([_GUIDANCE_KEY] if self.spec.guidance_embeds else [])
            forbidden = [] if self.spec.guidance_embeds else [_GUIDANCE_KEY]
            check_single_file(src.transformer_file, required, forbidden, f"{self.arch} transformer")
            model = load_single_file_transformer(
                Flux2Transformer2DModel, src.transformer_file, src.base_folder, self.torch_dtype
            )
        else:
            model = load_component(
                Flux2Transformer2DModel, src.base_folder, "transformer", self.torch_dtype, "transformer"
            )
        if bool(model.config.guidance_embeds) != self.spec.guidance_embeds:
            kind = "has" if model.config.guidance_embeds else "has no"
            raise WeightsError(
                f"model.name_or_path: the transformer {kind} guidance embedding, which does not match "
                f"arch '{self.arch}' (FLUX.2-dev has one, klein-base has none). Set model.arch to match the weights"
            )
        return model

    def _load_vae(self, src):
        from diffusers import AutoencoderKLFlux2

        if src.vae is None:
            return load_component(AutoencoderKLFlux2, src.base_folder, "vae", self.torch_dtype, "VAE")
        if src.vae.is_dir():
            folder, sub = subfolder_or_self(src.vae, "vae")
            return load_component(AutoencoderKLFlux2, folder, sub, self.torch_dtype, "VAE")
        return self._load_vae_single_file(src.vae, src.base_folder)

    def _load_vae_single_file(self, path: Path, config_folder: Path):
        """BFL's ae.safetensors: diffusers 0.42 has no single-file loader for this VAE."""
        from diffusers import AutoencoderKLFlux2

        from toolkit.convert.flux_keys import flux2_vae_ldm_to_diffusers

        return load_converted(
            AutoencoderKLFlux2,
            config_folder,
            "vae",
            path,
            lambda state, vae: flux2_vae_ldm_to_diffusers(state, dict(vae.config)),
            self.torch_dtype,
            f"model.vae_path: '{path}' is not a FLUX.2 VAE (ae.safetensors) matching",
        )

    def _load_text_encoder(self, src):
        import transformers

        te_cls = getattr(transformers, self.spec.text_encoder)
        tok_cls = getattr(transformers, self.spec.tokenizer)
        if src.text_encoder is not None:
            folder, sub = subfolder_or_self(src.text_encoder, "text_encoder")
        else:
            folder, sub = src.base_folder, "text_encoder"
        text_encoder = load_component(te_cls, folder, sub, self.torch_dtype, "text encoder")
        try:
            tokenizer = load_component(tok_cls, src.base_folder, "tokenizer", None, "tokenizer")
        except ImportError as exc:
            if "torchvision" not in str(exc).lower():
                raise
            # The FLUX.2-dev release ships its tokenizer as a PixtralProcessor, a class transformers
            # only builds with torchvision present (even though text encoding never touches images).
            raise WeightsError(
                f"model.name_or_path: the tokenizer in '{src.base_folder / 'tokenizer'}' is a PixtralProcessor, which "
                "needs torchvision. Install the torchvision build matching your torch (CUDA: pip install torchvision; "
                "CPU: pip install torch==2.14.1 torchvision==0.29.1)"
            ) from exc
        return text_encoder, tokenizer

    # ------------------------------------------------------------------ hooks
    def encode_prompt(self, prompts: list[str]) -> PromptEmbeds:
        """-> prompt_embeds (B, 512, 3*hidden), text_ids (B, 512, 4) int64."""
        embeds, text_ids = self.pipeline.encode_prompt(
            prompt=list(prompts),
            device=self.text_encoder_device(),
            text_encoder_out_layers=self.spec.hidden_state_layers,
        )
        return PromptEmbeds({"prompt_embeds": embeds, "text_ids": text_ids}).to(self.device)

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> (B, 128, H/16, W/16): patchified, batch-norm normalised."""
        images = images.to(self.vae.device, self.vae.dtype)
        return self.pipeline._encode_vae_image(images, generator=None)

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        vae = self.vae
        mean = vae.bn.running_mean.view(1, -1, 1, 1).to(latents.device, latents.dtype)
        std = torch.sqrt(vae.bn.running_var.view(1, -1, 1, 1) + vae.config.batch_norm_eps).to(
            latents.device, latents.dtype
        )
        latents = self.pipeline._unpatchify_latents(latents * std + mean)
        return vae.decode(latents.to(vae.dtype), return_dict=False)[0]

    def get_noise_prediction(self, noisy_latents, timesteps, prompt_embeds, guidance_scale=1.0, references=None):
        """noisy_latents (B, 128, h, w); timesteps (B,) in [0, 1000] -> prediction (B, 128, h, w).

        references: None, or the reference images' latents (`encode_images` layout), one (B, 128, h_i, w_i)
        tensor per reference. As in Flux2Pipeline / Flux2KleinPipeline.__call__, they are packed and appended
        after the target tokens with `_prepare_image_ids`' position ids (time coordinate 10 + 10 i for
        reference i, rows and columns from 0), and the prediction is sliced back to the target tokens.
        """
        pipe = self.pipeline
        b, c, h, w = noisy_latents.shape
        hidden = pipe._pack_latents(noisy_latents)
        img_ids = pipe._prepare_latent_ids(noisy_latents).to(noisy_latents.device)
        if references:
            if any(ref.shape[0] != b for ref in references):
                raise ValueError(
                    f"references must have the batch size {b} of the latents, got "
                    f"{[tuple(ref.shape) for ref in references]}"
                )
            ref_ids = pipe._prepare_image_ids([ref[:1] for ref in references]).to(img_ids.device)
            packed = [pipe._pack_latents(ref).to(hidden.device, hidden.dtype) for ref in references]
            hidden = torch.cat([hidden, *packed], dim=1)
            img_ids = torch.cat([img_ids, ref_ids.expand(b, -1, -1)], dim=1)
        guidance = None
        if self.spec.guidance_embeds:
            guidance = torch.full((b,), float(guidance_scale), device=noisy_latents.device, dtype=torch.float32)
        pred = self.transformer(
            hidden_states=hidden.to(self.transformer.dtype),
            timestep=(timesteps / 1000).to(hidden.dtype),
            guidance=guidance,
            encoder_hidden_states=prompt_embeds["prompt_embeds"],
            txt_ids=prompt_embeds["text_ids"],
            img_ids=img_ids,
            return_dict=False,
        )[0]
        return pred[:, : h * w].permute(0, 2, 1).reshape(b, c, h, w)

    def guidance_embedder(self):
        """dev's guidance embedder; klein (not guidance-distilled) has none."""
        return self.transformer.time_guidance_embed.guidance_embedder

    def shift_mu(self, latents: torch.Tensor) -> float:
        """Flux2Pipeline's empirical mu for this many image tokens (at its default 50 steps)."""
        from diffusers.pipelines.flux2.pipeline_flux2 import compute_empirical_mu

        return compute_empirical_mu(latents.shape[-2] * latents.shape[-1], 50)

    def pipeline_call_kwargs(self, request: ImageRequest) -> dict:
        kwargs = {
            "prompt_embeds": self.prompt_embeds(request.prompt)["prompt_embeds"],
            "guidance_scale": request.guidance_scale,
        }
        if request.ctrl_img:
            kwargs["image"] = self.reference_images(request)
        return kwargs

    def lora_targets(self) -> list[str]:
        """Every Linear inside the double and single blocks (not embedders, modulation, final layer)."""
        return [
            name
            for name, module in self.transformer.named_modules()
            if isinstance(module, torch.nn.Linear)
            and name.startswith(("transformer_blocks.", "single_transformer_blocks."))
        ]


def fuse_qkv(transformer) -> None:
    """Fuse the double blocks' q/k/v projections (as BFL stores them) and drop the unfused copies.

    LoKr trains on the fused projections (see toolkit/lokr_format.py); diffusers keeps the old
    to_q/to_k/to_v for `unfuse_qkv_projections`, which training never needs, so they are freed.
    """
    transformer.fuse_qkv_projections()
    for block in transformer.transformer_blocks:
        for name in ("to_q", "to_k", "to_v", "add_q_proj", "add_k_proj", "add_v_proj"):
            if hasattr(block.attn, name):
                delattr(block.attn, name)


class Flux2Klein4BModel(Flux2Model):
    spec = FLUX2_KLEIN_4B

    def pipeline_call_kwargs(self, request: ImageRequest) -> dict:
        kwargs = super().pipeline_call_kwargs(request)
        if request.guidance_scale > 1:
            # The pipeline's own negative is "" (encoded on the fly); ours may be cached or a user's `neg`.
            kwargs["negative_prompt_embeds"] = self.prompt_embeds(request.neg)["prompt_embeds"]
        return kwargs


class Flux2Klein9BModel(Flux2Klein4BModel):
    spec = FLUX2_KLEIN_9B
