"""``model:``: which weights to load and how (:class:`ModelConfig`)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, Field, ValidationError, field_validator

from toolkit.aitk_compat import QTYPE_HELP, aitk_qtype
from toolkit.config_modules.base import (
    _BOOL,
    Dtype,
    Fraction,
    ModelArch,
    QType,
    _arch_ids,
    _both_given,
    _family,
    _LocProblem,
    _Section,
)


class ModelKwargs(_Section):
    """``model.model_kwargs``: ai-toolkit's per-architecture options. FLUX.2 takes ``match_target_res``."""

    match_target_res: bool | None = Field(
        default=None,
        description="FLUX.2 edit: resize reference images to the target's bucket (sets every "
        "dataset's match_target_res that does not set its own).",
    )

    _hints: ClassVar[dict[str, str]] = {
        **{
            key: "a Wan 2.2 option of ai-toolkit; FLUX has one transformer, remove it"
            for key in ("train_high_noise", "train_low_noise")
        },
        **{
            key: "a Flex.2 option of ai-toolkit; not used by FLUX.1 / FLUX.2, remove it"
            for key in (
                "invert_inpaint_mask_chance",
                "inpaint_dropout",
                "control_dropout",
                "inpaint_random_chance",
                "do_random_inpainting",
                "random_blur_mask",
                "random_dialate_mask",
            )
        },
        "kv_cache": "an option of another model family in ai-toolkit; not used by FLUX, remove it",
    }


class ModelConfig(_Section):
    """``model:``: which weights to load and how to fit them in memory.

    ``arch`` is always set after validation. Legacy ``is_flux: true`` means
    ``arch: flux`` and ``is_flux2: true`` means ``arch: flux2``; they are accepted
    as input only (``false`` asserts nothing) and never stored, so ``model_dump()``
    carries ``arch`` alone. :attr:`is_flux` / :attr:`is_flux2` derive from ``arch``.
    """

    name_or_path: str = Field(
        description="Hub repo id, local diffusers folder, or a single .safetensors transformer file."
    )
    arch: ModelArch | None = Field(
        default=None, description="Model architecture. Required unless the legacy is_flux / is_flux2 flag is set."
    )
    extras_name_or_path: str | None = Field(
        default=None,
        description="Where text encoder, tokenizer, scheduler and configs come from when name_or_path is a "
        "single file; None = the arch's official repo.",
    )
    vae_path: str | None = None
    text_encoder_path: str | None = Field(
        default=None, validation_alias=AliasChoices("text_encoder_path", "te_name_or_path")
    )
    dtype: Dtype = Field(
        default="bf16", description="Weights dtype. In a training job, when absent, train.dtype (as ai-toolkit)."
    )
    quantize: bool = Field(default=False, description="Quantize the transformer with optimum-quanto.")
    qtype: QType = Field(default="qfloat8", description=QTYPE_HELP)
    quantize_te: bool = Field(
        default=False,
        description="Quantize the text encoder with optimum-quanto. When absent, follows quantize (as ai-toolkit).",
    )
    qtype_te: QType = Field(default="qfloat8", description=QTYPE_HELP)
    low_vram: bool = False
    layer_offloading: bool | Literal["auto"] = Field(
        default=False, validation_alias=AliasChoices("layer_offloading", "auto_memory")
    )
    layer_offloading_transformer_percent: Fraction = 1.0
    layer_offloading_text_encoder_percent: Fraction = 1.0
    vram_budget_gb: float | None = Field(default=None, gt=0)
    lora_path: str | None = Field(default=None, description="A LoRA to apply when generating.")
    lora_scale: float = 1.0
    assistant_lora_path: str | None = Field(
        default=None,
        description="Training adapter merged while training and removed for sampling "
        "(ai-toolkit's FLUX.1-schnell recipe: ostris/FLUX.1-schnell-training-adapter).",
    )
    revision: str | None = None
    model_kwargs: ModelKwargs = Field(default_factory=lambda: ModelKwargs())
    # Speed (toolkit/models/compile.py, toolkit/models/fp8.py). ai-toolkit's compile keys keep their meaning,
    # except that compile: true always compiles block by block here (its block_compile: true).
    compile: bool = Field(
        default=False,
        description="torch.compile each transformer block (regional: one graph "
        "per block kind, reused by every block of that kind). The first step compiles (minutes).",
    )
    block_compile: bool = Field(
        default=False,
        description="ai-toolkit's per-block compile switch; compile: true "
        "always compiles per block here, so this only needs compile: true beside it.",
    )
    compile_mode: Literal["default", "max-autotune-no-cudagraphs", "reduce-overhead", "max-autotune"] = "default"
    compile_dynamic: bool | None = Field(
        default=None,
        description="None = PyTorch's automatic dynamic shapes (static first, one recompile with "
        "symbolic sizes at the first new bucket); true = symbolic from the start; false = a graph per shape.",
    )
    compile_fullgraph: bool = False
    cache_size_limit: int | None = Field(default=None, ge=1, description="torch._dynamo's graphs per block kind.")
    fp8_compute: bool = Field(
        default=False,
        description="Run the transformer blocks' frozen linear layers as fp8 matmuls with dynamic "
        "scaling (torchao float8 training; LoRA stays in bf16/fp32). NVIDIA GPUs of compute capability 8.9+ "
        "(Ada, Hopper, Blackwell). Weight storage is qtype's business: not with quantize: true.",
    )

    _legacy_keys: ClassVar[tuple[str, ...]] = ("is_flux", "is_flux2")
    _aitk_section: ClassVar[str | None] = "model"

    @field_validator("qtype", "qtype_te", mode="before")
    @classmethod
    def _aitk_qtype(cls, value: Any) -> Any:
        return aitk_qtype(value)

    @property
    def is_flux(self) -> bool:
        """FLUX.1 (dev or schnell): the ``flux`` family of the declarations."""
        return self.arch in _family("flux")

    @property
    def is_flux2(self) -> bool:
        """Any of the FLUX.2 family (dev, klein 4B, klein 9B, and extension archs declared in it)."""
        return self.arch in _family("flux2")

    @classmethod
    def _check(cls, data: dict[str, Any]) -> list[_LocProblem]:
        problems: list[_LocProblem] = []
        problems += _both_given(data, "text_encoder_path", "te_name_or_path")
        problems += _both_given(data, "layer_offloading", "auto_memory")
        if "quantize" in data and "quantize_te" not in data:
            data["quantize_te"] = data["quantize"]  # ai-toolkit: quantize_te defaults to quantize
        flags = {}
        for flag in cls._legacy_keys:
            if flag not in data:
                continue
            value = data.pop(flag)
            try:
                flags[flag] = _BOOL.validate_python(value)
            except ValidationError:
                problems.append(((flag,), f"expected true or false, got {value!r}; better, replace it with arch"))
        arch = data.get("arch")
        if flags.get("is_flux") and flags.get("is_flux2"):
            problems.append((("is_flux2",), "is_flux: true and is_flux2: true conflict; remove both and set arch"))
        elif flags.get("is_flux"):
            if arch is None:
                data["arch"] = "flux"
            elif arch != "flux":
                problems.append((("is_flux",), f"is_flux: true (FLUX.1) conflicts with arch: {arch!r}; remove is_flux"))
        elif flags.get("is_flux2"):
            if arch is None:
                data["arch"] = "flux2"
            elif arch not in _family("flux2"):
                problems.append(
                    (("is_flux2",), f"is_flux2: true (FLUX.2 family) conflicts with arch: {arch!r}; remove is_flux2")
                )
        if data.get("arch") is None and not problems:
            choices = ", ".join(repr(a) for a in _arch_ids())
            problems.append((("arch",), f"is required: one of {choices}"))
        return problems + cls._speed_problems(data)

    @staticmethod
    def _speed_problems(data: dict[str, Any]) -> list[_LocProblem]:
        problems: list[_LocProblem] = []
        if data.get("block_compile") is True and data.get("compile") is not True:
            problems.append(
                (
                    ("block_compile",),
                    "does nothing without compile: true (in ai-toolkit too); set "
                    "compile: true (blocks are always compiled one by one here) or remove block_compile",
                )
            )
        if data.get("compile_mode") in ("reduce-overhead", "max-autotune"):
            problems.append(
                (
                    ("compile_mode",),
                    f"{data['compile_mode']} captures CUDA graphs, which replay fixed "
                    "memory addresses that layer offloading and training re-allocate; use "
                    "max-autotune-no-cudagraphs (or default)",
                )
            )
        if data.get("fp8_compute") is True and data.get("quantize") is True:
            problems.append(
                (
                    ("fp8_compute",),
                    "fp8 compute needs the transformer's bf16 weights, and quantize: true "
                    "stores them quantized (qtype); set quantize: false to compute in fp8, or remove "
                    "fp8_compute",
                )
            )
        return problems
