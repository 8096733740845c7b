"""Architectures as data: one frozen `ArchSpec` per `arch`, declared next to its model class.

Everything that differs between architectures and is not code lives here: ids, classes, repos,
hidden-state layers, guidance, capabilities, sampling defaults, the LoRA key family, the shapes of
the tiny test models and of the benchmark, the block lists that quantization and layer offloading
walk. The config validator, the tiny-model builder, the benchmark, the LoRA converter, quantization,
offloading, the UIs and the README's tables read these declarations; the model class adds only
behaviour (hooks).

The registry (toolkit/arch_registry.py) is open: the built-in declarations plus every
``AI_TOOLKIT_ARCHS`` list an extension package exports (``extensions_built_in/``, ``extensions/``).
This module imports no torch: the declarations are plain data and the model class is named by a
dotted path, imported only when a model is built (`arch_registry.model_class`).
"""

from __future__ import annotations

import dataclasses

from toolkit.errors import ToolkitError


class UnknownArchError(ToolkitError, ValueError):
    pass


@dataclasses.dataclass(frozen=True)
class ModelCapabilities:
    """What an architecture supports; read by shared code and by config guards.

    bucket_divisibility: image sides must be multiples of this (VAE factor x patch).
    guidance_distilled: the transformer takes an embedded guidance value (no real CFG).
    real_cfg: sampling runs a second, negative pass (guidance_scale > 1).
    max_reference_images: reference (edit) images the model conditions on; 0 = none. A config asking for
        more (``datasets[i].control_path`` folders, ``ctrl_img`` paths) is an error.
    reference_training: edit training with reference images (``control_path``) and sampling with them
        (``ctrl_img``): ``get_noise_prediction`` takes ``references``, the pipeline takes ``image=[...]``.
    reference_max_pixels: a reference image larger than this many pixels is resized (Lanczos, aspect kept)
        to this area before its sides are cropped to multiples of ``bucket_divisibility``: the rule the
        architecture's pipeline applies at inference, so training sees references at the same size.
    default_timestep_type: ``train.timestep_type`` when the config leaves it unset.
    """

    bucket_divisibility: int = 16
    guidance_distilled: bool = False
    real_cfg: bool = False
    max_reference_images: int = 0
    reference_training: bool = False
    reference_max_pixels: int = 1024 * 1024
    text_encoder_trainable: bool = False
    lokr: bool = False
    conv_lora: bool = False
    default_timestep_type: str = "sigmoid"


@dataclasses.dataclass(frozen=True)
class SamplingDefaults:
    """What sampling uses when neither the prompt's flags nor the config set it."""

    guidance_scale: float
    sample_steps: int


@dataclasses.dataclass(frozen=True)
class Release:
    """One published set of weights of an architecture (FLUX.1-dev and -schnell share ``arch: flux``).

    The loaded transformer tells releases apart by its guidance embedding (`ArchSpec.release_for`).
    ``scheduler`` is the release's ``scheduler/scheduler_config.json`` (the tiny models write it).
    """

    name: str
    official_repo: str
    single_file_name: str
    guidance_embeds: bool
    sampling: SamplingDefaults
    scheduler: dict = dataclasses.field(default_factory=dict, hash=False, compare=False)


@dataclasses.dataclass(frozen=True)
class TinyShape:
    """Sizes of the tiny random model (`toolkit/tiny/`) of an architecture.

    builder: which tiny pipeline builder makes it (``"flux2"``: Mistral3 or Qwen3 text encoder;
    ``"flux"``: CLIP + T5); text_encoder: ``"mistral3"``, ``"qwen3"`` or ``"clip_t5"``;
    text_hidden: hidden size of the (main) text encoder; heads: transformer heads of 16 dims.
    model_index_names: ``model_index.json`` entries the real release spells differently from what
    ``save_pretrained`` writes.
    """

    builder: str
    text_encoder: str
    text_hidden: int
    heads: int
    model_index_names: dict = dataclasses.field(default_factory=dict, hash=False, compare=False)


@dataclasses.dataclass(frozen=True)
class BenchShape:
    """The real transformer's configuration, for the benchmark and the memory planner on the meta device.

    latent_channels / latent_factor: the latents `get_noise_prediction` takes, (B, C, H/f, W/f);
    pooled_dim: a pooled text embedding (FLUX.1's CLIP), 0 for none.
    """

    transformer_config: dict = dataclasses.field(hash=False, compare=False)
    latent_channels: int = 128
    latent_factor: int = 16
    pooled_dim: int = 0


@dataclasses.dataclass(frozen=True)
class ArchSpec:
    """One architecture, declared once.

    family: the model family (``"flux2"``: the FLUX.2 family, ``"flux"``: FLUX.1); `ModelConfig.is_flux2` /
    `is_flux` derive from it.
    model_class: ``"package.module:ClassName"``, imported only when a model is built.
    pipeline / transformer_class: diffusers class names; text_encoder / tokenizer: transformers class
    names of the main text encoder. releases: the first is the default (its repo is the official one).
    lora_family: the key layout of saved LoRA files (`toolkit/lora_format.py`): ``"flux2"`` or ``"flux"``.
    transformer_blocks: attribute names of the transformer's block lists, in execution order
    (quantization and layer offloading walk them). text_encoder_layers: pipeline component -> the
    dotted paths where its repeated layers may live (the first that exists is taken).
    """

    arch: str
    label: str
    family: str
    model_class: str
    pipeline: str
    transformer_class: str
    text_encoder: str
    tokenizer: str
    hidden_state_layers: tuple[int, ...]
    releases: tuple[Release, ...]
    capabilities: ModelCapabilities
    lora_family: str
    transformer_blocks: tuple[str, ...]
    text_encoder_layers: tuple[tuple[str, tuple[str, ...]], ...]
    text_encoder_label: str = ""
    size_label: str = ""
    tiny: TinyShape | None = None
    bench: BenchShape | None = None

    @property
    def official_repo(self) -> str:
        return self.releases[0].official_repo

    @property
    def single_file_name(self) -> str:
        return self.releases[0].single_file_name

    @property
    def guidance_embeds(self) -> bool:
        return self.releases[0].guidance_embeds

    @property
    def sampling(self) -> SamplingDefaults:
        return self.releases[0].sampling

    @property
    def text_encoder_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.text_encoder_layers)

    def release_for(self, guidance_embeds: bool) -> Release:
        """The release whose transformer has (or lacks) a guidance embedding; the default one if none."""
        return next((r for r in self.releases if r.guidance_embeds == guidance_embeds), self.releases[0])

    def release_named(self, name: str) -> Release:
        for release in self.releases:
            if release.name == name:
                return release
        raise UnknownArchError(
            f"arch '{self.arch}' has no release '{name}'; known: {', '.join(r.name for r in self.releases)}"
        )

    def tiny_ids(self) -> list[tuple[str, Release]]:
        """``tiny:<id>`` names of this architecture's tiny models: ``<arch>`` (default release) and
        ``<arch>-<release>`` for the others (``flux-schnell``)."""
        if self.tiny is None:
            return []
        return [(self.arch if i == 0 else f"{self.arch}-{r.name}", r) for i, r in enumerate(self.releases)]
