"""BaseModel: the one interface the trainer and the generate job talk to.

Every architecture is a subclass that fills the hooks below. Shared code asks
the model (hooks, `capabilities`) and never checks its name; `is_flux` /
`is_flux2` exist for config, metadata, guards and logs.

Tensor conventions (B = batch):
- images: (B, 3, H, W) float in [-1, 1]
- latents: whatever the architecture's transformer consumes *before packing*,
  normalised exactly as its diffusers pipeline does (FLUX.2: (B, 128, H/16, W/16)
  after patchify + batch-norm; FLUX.1: (B, 16, H/8, W/8) after scale/shift)
- PromptEmbeds (toolkit/prompt_embeds.py): a dict of tensors, batch-first, as `encode_prompt` returns them
"""

from __future__ import annotations

import dataclasses
import logging
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import torch

from toolkit.arch import ArchSpec, ModelCapabilities
from toolkit.data.images import open_rgb
from toolkit.prompt_embeds import PromptEmbeds
from toolkit.prompt import PromptSpec

if TYPE_CHECKING:
    from PIL import Image

    from toolkit.models.offload_plan import TrainingShape

log = logging.getLogger(__name__)

DTYPES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
}


@dataclasses.dataclass(frozen=True)
class ImageRequest:
    """One image to generate, with every setting resolved."""

    prompt: str
    neg: str
    width: int
    height: int
    seed: int
    guidance_scale: float
    sample_steps: int
    network_multiplier: float = 1.0
    ctrl_img: tuple[str, ...] = ()  # reference image paths (edit models), in order

    @classmethod
    def from_spec(cls, spec: PromptSpec, defaults: dict) -> "ImageRequest":
        values = dict(defaults)
        values.update({k: v for k, v in dataclasses.asdict(spec).items() if v is not None})
        # Fields with a default (ctrl_img) may be left out of `defaults`.
        return cls(**{f.name: values[f.name] for f in dataclasses.fields(cls) if f.name in values})


@dataclasses.dataclass(frozen=True)
class LoadOptions:
    """How the caller will use the model, given at construction (never set afterwards).

    adapter_type: the adapter trained on it (``network.type``): LoKr trains on fused q/k/v projections.
    shard_transformer: FSDP shards the transformer, so it stays on the CPU until the trainer shards it.
    training_shape: resolution, batch, rank... of the run (`offload_plan.TrainingShape`): sizes the offload
        plan of ``layer_offloading: auto`` / ``vram_budget_gb``; None = the planner's defaults.
    """

    adapter_type: str = "lora"
    shard_transformer: bool = False
    training_shape: TrainingShape | None = None


class BaseModel:
    """Abstract model. Subclasses set `spec` (their architecture's declaration) and fill the hooks;
    `arch`, `capabilities` and `official_repo` are read from the spec."""

    spec: ClassVar[ArchSpec | None] = None
    arch: ClassVar[str] = ""
    capabilities: ClassVar[ModelCapabilities] = ModelCapabilities()
    official_repo: ClassVar[str] = ""

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if cls.spec is not None:
            cls.arch, cls.capabilities, cls.official_repo = cls.spec.arch, cls.spec.capabilities, cls.spec.official_repo

    def __init__(
        self,
        model_config,
        device: str | torch.device = "cpu",
        dtype: str | None = None,
        options: LoadOptions | None = None,
    ):
        self.model_config = model_config
        self.device = torch.device(device)
        self.torch_dtype = DTYPES[dtype or model_config.dtype]
        self.options = options or LoadOptions()
        self.pipeline = None  # the diffusers pipeline, built by load_model()
        self.sources = None  # the resolved weights layout (toolkit.models.weights.WeightSources), by load_model()
        # Prompt text -> embeddings, filled before the text encoder leaves the device.
        self.prompt_cache: dict[str, PromptEmbeds] = {}
        # Component name -> its block streamer (layer offloading), filled by place_on_device(). Weak: a component
        # the trainer drops (unload_text_encoder) must free its memory with it.
        self.block_streamers: weakref.WeakValueDictionary = weakref.WeakValueDictionary()
        self._lora_scale = 1.0  # the LoRA scale the pipeline's adapter is set to
        self.compiled = None  # toolkit.models.compile.CompiledBlocks once `model.compile` compiled the blocks
        if getattr(model_config, "fp8_compute", False):
            from toolkit.models.fp8 import check_fp8_device

            check_fp8_device(self.device)  # before any weight loads

    # --- identity, derived from the config (never stored separately) ---
    @property
    def is_flux(self) -> bool:
        return self.model_config.is_flux

    @property
    def is_flux2(self) -> bool:
        return self.model_config.is_flux2

    # --- components (owned by the pipeline so generation and training share them) ---
    @property
    def transformer(self):
        return self.pipeline.transformer

    @property
    def vae(self):
        return self.pipeline.vae

    # --- hooks ---
    @classmethod
    def weights_problems(cls, model_config, key: str) -> list[str]:
        """Before loading: why the local weights ``model_config.name_or_path`` are not this architecture's
        (see toolkit/models/weights_check.py); [] when they are, or cannot be told without loading."""
        return []

    def load_model(self) -> None:
        """Resolve the weights layout, load every component, build `self.pipeline`."""
        raise NotImplementedError

    def encode_prompt(self, prompts: list[str]) -> PromptEmbeds:
        """Text conditioning exactly as the pipeline computes it at inference."""
        raise NotImplementedError

    def encode_images(self, images: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) in [-1, 1] -> normalised latents (see module docstring)."""
        raise NotImplementedError

    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """Normalised latents -> (B, 3, H, W) in [-1, 1]."""
        raise NotImplementedError

    def get_noise_prediction(
        self,
        noisy_latents: torch.Tensor,
        timesteps: torch.Tensor,
        prompt_embeds: PromptEmbeds,
        guidance_scale: float = 1.0,
        references: list[torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Transformer output for `noisy_latents` (same layout); timesteps in [0, 1000].

        references: with `capabilities.reference_training`, the reference images' latents (`encode_images`
        layout), one (B, C, h_i, w_i) tensor per reference in order; the output covers the targets only.
        """
        raise NotImplementedError

    def get_loss_target(self, noise: torch.Tensor, latents: torch.Tensor, timesteps: torch.Tensor) -> torch.Tensor:
        """Flow matching: the model predicts the velocity noise - x0."""
        return noise - latents

    def lora_targets(self) -> list[str]:
        """Module names (relative to the transformer) that get a LoRA by default."""
        raise NotImplementedError

    def shift_mu(self, latents: torch.Tensor) -> float:
        """mu of the resolution-dependent timestep shift, as the pipeline computes it for `latents`."""
        raise NotImplementedError

    def text_encoder_names(self) -> list[str]:
        """Pipeline attribute names of the text encoders."""
        return list(self.spec.text_encoder_names)

    def guidance_embedder(self) -> torch.nn.Module | None:
        """The transformer module that embeds the guidance value, whose output is added to the timestep
        embedding (``train.bypass_guidance_embedding`` zeroes it); None when the model has none."""
        return None

    def pipeline_call_kwargs(self, request: ImageRequest) -> dict:
        """Pipeline keyword arguments for `request`: embeddings (from `prompt_embeds`) and guidance."""
        raise NotImplementedError

    # --- shared behaviour ---
    def release(self):
        """The release (`toolkit.arch.Release`) the loaded weights are: told apart by the guidance embedding
        (FLUX.1-dev has one, -schnell none); the declaration's default before loading."""
        if self.pipeline is None:
            return self.spec.releases[0]
        return self.spec.release_for(bool(self.transformer.config.get("guidance_embeds", False)))

    def sample_defaults(self) -> dict:
        """guidance_scale and sample_steps for a sample or image that does not set them."""
        return dataclasses.asdict(self.release().sampling)

    def sampling_texts(self, request: ImageRequest) -> list[str]:
        """Texts whose embeddings sampling `request` needs (the negative only with real CFG)."""
        texts = [request.prompt]
        if self.capabilities.real_cfg and request.guidance_scale > 1:
            texts.append(request.neg)
        return texts

    def prompt_embeds(self, text: str) -> PromptEmbeds:
        """Embeddings of one text: from `prompt_cache`, else from the text encoder."""
        if text in self.prompt_cache:
            return self.prompt_cache[text].to(self.device)
        if not self.text_encoders_loaded:
            raise RuntimeError(f"prompt {text!r} was not cached before the text encoder was unloaded")
        return self.encode_prompt([text])

    @torch.no_grad()
    def cache_prompts(self, texts: list[str]) -> None:
        """Encode `texts` once into `prompt_cache` (CPU) so the text encoder can leave."""
        for text in dict.fromkeys(texts):
            if text not in self.prompt_cache:
                self.prompt_cache[text] = self.encode_prompt([text]).to("cpu")

    @property
    def text_encoders_loaded(self) -> bool:
        return all(getattr(self.pipeline, name, None) is not None for name in self.text_encoder_names())

    def unload_text_encoders(self, keep_on_cpu: bool) -> None:
        """Free the device from the text encoders: to CPU (`keep_on_cpu`) or dropped entirely."""
        for name in self.text_encoder_names():
            module = getattr(self.pipeline, name, None)
            if module is None:
                continue
            if keep_on_cpu:
                module.to("cpu")
            else:
                setattr(self.pipeline, name, None)
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def vae_id(self) -> str:
        """Fingerprint of the VAE and the latent normalisation, for the latent cache key."""
        import hashlib
        import json

        vae = self.vae
        digest = hashlib.sha256()
        digest.update(
            f"{self.arch}:{type(vae).__name__}:{json.dumps(dict(vae.config), sort_keys=True, default=str)}".encode()
        )
        for name, tensor in sorted(vae.state_dict().items())[:4] + sorted(vae.state_dict().items())[-4:]:
            digest.update(name.encode())
            digest.update(tensor.detach().float().cpu().numpy().tobytes()[:4096])
        return digest.hexdigest()[:32]

    @torch.no_grad()
    def generate_images(self, requests: list[ImageRequest]) -> list["Image.Image"]:
        """One PIL image per request, made by the architecture's diffusers pipeline."""
        images = []
        for req in requests:
            if req.ctrl_img and not self.capabilities.reference_training:
                raise ValueError(f"{self.arch} does not take reference images; remove ctrl_img")
            generator = torch.Generator(device="cpu").manual_seed(req.seed)
            self._set_lora_scale(req.network_multiplier)
            out = self.pipeline(
                height=req.height,
                width=req.width,
                num_inference_steps=req.sample_steps,
                generator=generator,
                **self.pipeline_call_kwargs(req),
            )
            images.append(out.images[0])
        return images

    @staticmethod
    def reference_images(request: ImageRequest) -> list["Image.Image"]:
        """The request's ctrl_img files as RGB PIL images, oriented and composited over white exactly as the
        training references are (toolkit.data.images.open_rgb); the pipeline resizes them itself."""
        return [open_rgb(Path(path).expanduser()) for path in request.ctrl_img]

    def load_lora(self, path: str | Path, scale: float = 1.0) -> None:
        """Apply a LoRA file for generation through diffusers' loader."""
        self.pipeline.load_lora_weights(str(path), adapter_name="default")
        self.pipeline.set_adapters(["default"], [scale])

    def _set_lora_scale(self, multiplier: float) -> None:
        scale = multiplier * self.model_config.lora_scale
        if getattr(self.transformer, "peft_config", None) and "default" in self.transformer.peft_config:
            if scale != 1.0 or self._lora_scale != 1.0:
                self.pipeline.set_adapters(["default"], [scale])
                self._lora_scale = scale

    def apply_quantization(self) -> None:
        """Quantize what the config asks for; called by load_model before the move to the device."""
        from toolkit.models.quantize import quantize_text_encoder, quantize_transformer

        from toolkit.models.quanto_kernels import ensure_kernels

        cfg = self.model_config
        qtypes = {
            **({"model.qtype": cfg.qtype} if cfg.quantize else {}),
            **({"model.qtype_te": cfg.qtype_te} if cfg.quantize_te else {}),
        }
        if qtypes:
            # optimum-quanto compiles kernels the first time an op needs them: a visible step here instead
            # of a silent pause (or a compiler error) in the middle of loading.
            ensure_kernels(qtypes, next(self.transformer.parameters()).device, self.device)
        if cfg.quantize:
            quantize_transformer(self.transformer, cfg.qtype, self.spec.transformer_blocks)
        if cfg.fp8_compute:
            from toolkit.models.fp8 import convert_to_fp8

            convert_to_fp8(self.offload_blocks("transformer"))
        if cfg.quantize_te:
            for name, paths in self.spec.text_encoder_layers:
                quantize_text_encoder(getattr(self.pipeline, name), cfg.qtype_te, paths)

    def place_on_device(self) -> None:
        """Move the pipeline to the device; with `low_vram` the text encoders stay on the CPU.

        With `layer_offloading` (or `vram_budget_gb`) the last blocks of the transformer and of the text
        encoders on the device are streamed from host memory instead (toolkit/models/offload.py): the
        plan is logged, and `self.block_streamers` maps each streamed component to its streamer.
        """
        from toolkit.models.offload import stream_blocks
        from toolkit.models.offload_plan import plan_model_offload

        on_cpu = set(self.text_encoder_names()) if self.model_config.low_vram else set()
        if self.options.shard_transformer:
            on_cpu.add("transformer")
        modules = {
            name: module
            for name, module in self.pipeline.components.items()
            if isinstance(module, torch.nn.Module) and name not in on_cpu
        }
        plan = plan_model_offload(self, list(modules))
        self.block_streamers.clear()
        for name, module in modules.items():
            count = plan.offloaded.get(name, 0) if plan is not None else 0
            if count:
                self.block_streamers[name] = stream_blocks(module, self.offload_blocks(name), count, self.device)
            else:
                module.to(self.device)
        from toolkit.models.attention import set_attention_backend

        set_attention_backend(self.transformer, self.device)
        if self.model_config.compile:
            self.compile_transformer()

    def compile_transformer(self, backend: str = "inductor") -> None:
        """Regional torch.compile of the transformer's blocks (`model.compile`; toolkit/models/compile.py).
        Lazy: the first forward compiles, whatever is attached to the blocks by then (LoRA, hooks)."""
        import dataclasses

        from toolkit.models.compile import CompileOptions, compile_blocks

        options = dataclasses.replace(CompileOptions.from_model_config(self.model_config), backend=backend)
        self.compiled = compile_blocks(self.offload_blocks("transformer"), options)

    def report_compile(self) -> None:
        """Log what torch.compile compiled since the last call (once, then only recompilations); cheap."""
        if self.compiled is not None:
            self.compiled.report()

    def offload_blocks(self, component: str) -> list[torch.nn.Module]:
        """The blocks of a pipeline component that layer offloading may stream, in execution order ([]: none)."""
        from toolkit.models.quantize import text_encoder_layers, transformer_blocks

        if component == "transformer":
            return transformer_blocks(self.transformer, self.spec.transformer_blocks)
        paths = dict(self.spec.text_encoder_layers).get(component)
        if paths is not None:
            return text_encoder_layers(getattr(self.pipeline, component), paths)
        return []

    def text_encoder_device(self) -> torch.device:
        """Where the text encoders run (the CPU under `low_vram`)."""
        return torch.device("cpu") if self.model_config.low_vram else self.device
