"""Typed, validated job configs with ai-toolkit's key names.

Every section is a pydantic model with ``extra="forbid"``: an unknown key is an
error, never silently ignored. Each default is written once, here; the UIs read
:func:`json_schema` instead of copying them.

Checks that need several keys at once (legacy ``is_flux`` flags against ``arch``,
``prompts`` against ``prompt_file``...) run in :meth:`_Section._check`, on the raw
mapping, *alongside* field validation, so one pass reports every problem in the
file. Known ai-toolkit keys this toolkit does not support are listed in a
section's ``_hints`` and fail with what to write instead.

No torch, diffusers or transformers import here: validating a config must stay
cheap (a test checks ``sys.modules``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import (
    AfterValidator,
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    TypeAdapter,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

from toolkit import aitk_keys
from toolkit.aitk_compat import AITK_TIMESTEP_TYPES, QTYPE_HELP, aitk_qtype, number_if_numeric
from toolkit.errors import ConfigError
from toolkit.names import name_problem

__all__ = [
    "ConfigError",
    "ModelArch",
    "Dtype",
    "QType",
    "canonical_dtype",
    "ModelConfig",
    "SampleItem",
    "SampleConfig",
    "GenerateConfig",
    "EMAConfig",
    "ValidationItem",
    "ValidationConfig",
    "TrainConfig",
    "NetworkKwargs",
    "NetworkConfig",
    "SaveConfig",
    "DatasetConfig",
    "LoggingConfig",
    "TrainProcessConfig",
    "GenerateProcessConfig",
    "ProcessConfig",
    "PROCESS_TYPES",
    "JobSection",
    "JobConfig",
    "json_schema",
]


def _arch_ids() -> list[str]:
    # Imported here, not at the top: the registry (toolkit/arch_registry.py) imports the extension packages,
    # which must happen when a job is validated (a broken one is then a problem of that job), not whenever
    # this module is imported. It reads only declarations, never model classes: no torch.
    from toolkit.arch_registry import arch_ids

    return arch_ids()


def _family(family: str) -> frozenset[str]:
    from toolkit.arch_registry import family_archs  # see _arch_ids

    return family_archs(family)


def __getattr__(name: str):
    # Computed on use, not at import: the registry discovers extensions (a broken one is an error that
    # must surface as a problem of the job being validated, not as a failure to import this module).
    if name == "MODEL_ARCHS":
        return tuple(_arch_ids())
    if name == "FLUX2_ARCHS":
        return _family("flux2")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _check_arch(value: str) -> str:
    import difflib

    known = _arch_ids()
    if value in known:
        return value
    close = [k for k in known if k.lower() == value.lower()] or difflib.get_close_matches(value, known, n=1, cutoff=0.6)
    hint = f"; did you mean '{close[0]}'?" if close else ""
    choices = ", ".join(repr(a) for a in known)
    raise PydanticCustomError(
        CONFIG_ERROR_TYPE,
        "{message}",
        {"message": f"must be one of {choices} (the built-in and extension architectures), got {value!r}{hint}"},
    )


class _ArchJsonSchema:
    """The JSON schema of ``arch`` lists the registered archs (the UIs offer them)."""

    def __get_pydantic_json_schema__(self, core_schema, handler):
        schema = handler(core_schema)
        schema["enum"] = _arch_ids()
        return schema


ModelArch = Annotated[str, AfterValidator(_check_arch), _ArchJsonSchema()]
"""An architecture id declared in the registry (toolkit/arch_registry.py): built-ins (``flux``, ``flux2``,
``flux2_klein_4b``, ``flux2_klein_9b``) and the archs extensions in ``extensions/`` declare."""

Dtype = Literal["bf16", "fp16", "fp32", "float32", "bfloat16", "float16"]
QType = Literal["qfloat8", "qint8", "qint4", "qint2"]

_CANONICAL_DTYPES = {
    "bf16": "bfloat16",
    "bfloat16": "bfloat16",
    "fp16": "float16",
    "float16": "float16",
    "fp32": "float32",
    "float32": "float32",
}


def canonical_dtype(dtype: str) -> str:
    """``'bf16'`` -> ``'bfloat16'`` etc.: the torch attribute name, without importing torch."""
    return _CANONICAL_DTYPES[dtype]


CONFIG_ERROR_TYPE = "config_error"
"""pydantic error type of the problems raised by :meth:`_Section._check`."""

_LocProblem = tuple[tuple[str | int, ...], str]


def _as_init_error(error: dict) -> InitErrorDetails:
    # Re-raise an error pydantic already produced, keeping its type, loc, input and ctx.
    # The rendered message travels in ctx so no template re-formatting can alter it.
    ctx = {**(error.get("ctx") or {}), "message": error["msg"]}
    return InitErrorDetails(
        type=PydanticCustomError(error["type"], "{message}", ctx), loc=error["loc"], input=error.get("input")
    )


class _Section(BaseModel):
    """Base of every config section: unknown keys are errors, cross-key checks gather."""

    model_config = ConfigDict(extra="forbid", coerce_numbers_to_str=True)

    _hints: ClassVar[dict[str, str]] = {}
    """ai-toolkit keys this toolkit does not take -> what to write instead."""
    _legacy_keys: ClassVar[tuple[str, ...]] = ()
    """Keys accepted as input for compatibility that are not fields (offered as did-you-mean)."""
    _aitk_section: ClassVar[str | None] = None
    """This section's name in toolkit/aitk_keys.yaml: its ai-toolkit no-op and refused keys."""
    _ignored_keys: list[tuple[str, str]] = PrivateAttr(default_factory=list)
    """(key, why) of the ai-toolkit keys accepted as no-ops (toolkit.aitk_keys.ignored_keys collects them)."""

    @classmethod
    def accepted_keys(cls) -> list[str]:
        keys = list(cls._legacy_keys)
        for name, field in cls.model_fields.items():
            keys.append(name)
            alias = field.validation_alias
            if isinstance(alias, AliasChoices):
                keys += [choice for choice in alias.choices if isinstance(choice, str)]
            elif isinstance(alias, str):
                keys.append(alias)
        return list(dict.fromkeys(keys))

    @classmethod
    def _check(cls, data: dict[str, Any]) -> list[_LocProblem]:
        """Cross-key checks and legacy rewrites on the raw mapping (may edit ``data``)."""
        return []

    @model_validator(mode="wrap")
    @classmethod
    def _validate_gathering_problems(cls, data: Any, handler):
        if not isinstance(data, dict):
            return handler(data)
        original, data = data, dict(data)
        problems: list[_LocProblem] = []
        for key in [k for k in data if k in cls._hints and k not in cls.model_fields]:
            data.pop(key)
            problems.append(((key,), cls._hints[key]))
        ignored, refused = aitk_keys.apply(cls._aitk_section, data, set(cls.accepted_keys()))
        problems += [((key,), message) for key, message in refused]
        problems += cls._check(data)
        if not problems:
            result = handler(data)
            result._ignored_keys = ignored
            return result
        errors: list[InitErrorDetails] = []
        try:
            handler(data)
        except ValidationError as exc:
            errors += [_as_init_error(e) for e in exc.errors()]
        for loc, message in problems:
            head = loc[0] if loc else None
            errors.append(
                InitErrorDetails(
                    type=PydanticCustomError(CONFIG_ERROR_TYPE, "{message}", {"message": message}),
                    loc=loc,
                    input=original.get(head) if isinstance(head, str) else original,
                )
            )
        raise ValidationError.from_exception_data(cls.__name__, errors)


def _both_given(data: dict, key: str, alias: str) -> list[_LocProblem]:
    if key in data and alias in data:
        data.pop(alias)  # reported here, not again as an unknown key
        return [((alias,), f"'{alias}' is another name for '{key}'; give only one of them")]
    return []


def _lowercase(value: Any) -> Any:
    return value.lower() if isinstance(value, str) else value


def _none_if_empty(value: Any) -> Any:
    # ai-toolkit's UI writes "" (or an empty list) for "no reference images".
    return None if value in ("", []) else value


def _as_list(value: str | list[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def _numbered_into_list(data: dict[str, Any], base: str, numbered: str) -> list[_LocProblem]:
    """ai-toolkit's ``{base}_1``, ``{base}_2``... (e.g. ``ctrl_img_1``) -> ``data[base]`` as a list, in number
    order; empty slots ("" or null, as its UI writes them) are skipped. Both forms at once is a problem."""
    pattern = re.compile(rf"^{re.escape(numbered)}_([1-9][0-9]*)$")
    found = sorted((int(m.group(1)), key) for key in data if isinstance(key, str) and (m := pattern.match(key)))
    if not found:
        return []
    values = [data.pop(key) for _, key in found]
    paths = [v for v in values if v not in (None, "")]
    if data.get(base) not in (None, "", []):
        return [((found[0][1],), f"give {base} or {numbered}_1..N, not both ({base} takes a list)")]
    if paths:
        data[base] = paths
    return []


# A path or a list of paths; "" or [] (ai-toolkit's UI) means none.
Paths = Annotated[str | list[str] | None, AfterValidator(_none_if_empty)]

_BOOL = TypeAdapter(bool)
Fraction = Annotated[float, Field(ge=0.0, le=1.0)]
Size = Annotated[int, Field(ge=16)]

# --------------------------------------------------------------------------- model


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


# -------------------------------------------------------------------------- sample


class _ReferenceImages(_Section):
    """A section with ``ctrl_img``: the reference image(s) an edit model edits from.

    ai-toolkit's ``ctrl_img_1``, ``ctrl_img_2``... are read as ``ctrl_img: [first, second, ...]``.
    """

    _legacy_keys: ClassVar[tuple[str, ...]] = ("ctrl_img_1", "ctrl_img_2", "ctrl_img_3")

    @classmethod
    def _check(cls, data: dict[str, Any]) -> list[_LocProblem]:
        return _numbered_into_list(data, "ctrl_img", "ctrl_img")

    @property
    def ctrl_imgs(self) -> list[str]:
        """``ctrl_img`` as a list (empty without references)."""
        return _as_list(self.ctrl_img)


class SampleItem(_ReferenceImages):
    """One entry of ``sample.samples``; a missing field takes the ``sample:`` section's value."""

    prompt: str
    width: Size | None = None
    height: Size | None = None
    seed: int | None = None
    guidance_scale: float | None = Field(default=None, ge=0)
    sample_steps: int | None = Field(default=None, ge=1)
    neg: str | None = None
    ctrl_img: Paths = Field(
        default=None, description="Reference image(s) for edit models: a path or a list of paths (FLUX.2)."
    )
    network_multiplier: float | None = None

    _aitk_section: ClassVar[str | None] = "sample_item"


class SampleConfig(_ReferenceImages):
    """``sample:``: images rendered during training to watch the LoRA learn.

    Give prompts as ``prompts: [str]`` or as ``samples: [{prompt, width, ...}]``
    (ai-toolkit's newer form), not both. :meth:`sample_items` resolves either into
    complete items.
    """

    sampler: Literal["flowmatch"] = "flowmatch"
    sample_every: int = Field(default=250, ge=1)
    sample_start_step: int = Field(default=0, ge=0, description="No samples before this step.")
    width: Size = 1024
    height: Size = 1024
    prompts: list[str] = []
    samples: list[SampleItem] | None = None
    neg: str = ""
    seed: int = 42
    walk_seed: bool = Field(default=True, description="Prompt i uses seed + i (unless it sets its own seed).")
    guidance_scale: float | None = Field(
        default=None, ge=0, description="None = the architecture's default (its declaration's sampling defaults)."
    )
    sample_steps: int | None = Field(default=None, ge=1, description="None = the architecture's default.")
    network_multiplier: float = 1.0
    format: Literal["jpg", "png", "webp"] = "jpg"
    ctrl_img: Paths = Field(
        default=None,
        description="Reference image(s) every sample is edited from (FLUX.2): a path or a list of "
        "paths; a sample's own ctrl_img replaces it.",
    )

    _aitk_section: ClassVar[str | None] = "sample"
    _hints: ClassVar[dict[str, str]] = {
        "ext": "use format: jpg / png / webp",
    }

    @classmethod
    def _check(cls, data: dict[str, Any]) -> list[_LocProblem]:
        problems = super()._check(data)
        if data.get("prompts") and data.get("samples"):
            problems.append((("samples",), "give prompts or samples, not both"))
        return problems

    def sample_items(self) -> list[SampleItem]:
        """Every sample with its fields filled from this section (seed: its own, else ``seed`` + index when
        ``walk_seed``); guidance_scale / sample_steps stay None when neither sets them, and the model's
        ``sample_defaults()`` fill them."""
        items = self.samples if self.samples is not None else [SampleItem(prompt=p) for p in self.prompts]
        resolved = []
        for i, item in enumerate(items):
            own = item.model_dump(exclude_none=True)
            seed = self.seed + i if self.walk_seed else self.seed
            defaults = {
                "width": self.width,
                "height": self.height,
                "seed": seed,
                "guidance_scale": self.guidance_scale,
                "sample_steps": self.sample_steps,
                "neg": self.neg,
                "ctrl_img": self.ctrl_img,
                "network_multiplier": self.network_multiplier,
            }
            resolved.append(SampleItem(**{**defaults, **own}))
        return resolved


class GenerateConfig(_ReferenceImages):
    """``generate:`` of a ``to_folder`` process. Prompts come from ``prompts`` or ``prompt_file``, exactly one.

    ai-toolkit compatibility: ``prompts: "path.txt"`` (a string) is read as a prompt
    file, and ``prompt_file: false`` (ai-toolkit: "do not write a .txt beside each
    image") means no prompt file.
    """

    sampler: Literal["flowmatch"] = "flowmatch"
    width: Size = 1024
    height: Size = 1024
    neg: str = ""
    seed: int = Field(default=-1, ge=-1, description="-1 = a new random seed per image.")
    guidance_scale: float | None = Field(default=None, ge=0, description="None = the architecture's default.")
    sample_steps: int | None = Field(default=None, ge=1, description="None = the architecture's default.")
    ext: Literal[".png", ".jpg", ".jpeg", ".webp", "png", "jpg", "jpeg", "webp"] = ".png"
    prompts: list[str] = []
    prompt_file: str | None = Field(default=None, description="A text file with one prompt per line.")
    ctrl_img: Paths = Field(
        default=None,
        description="Reference image(s) every prompt edits from (FLUX.2 edit LoRAs): a path or a "
        "list of paths, in the order the model sees them.",
    )

    _hints: ClassVar[dict[str, str]] = {
        "size_list": "not supported; set width/height, or --w/--h flags in a prompt",
        "compile": "set compile: true in the model: section (it compiles the transformer's blocks)",
    }

    @property
    def suffix(self) -> str:
        """The file suffix with its dot: ``'.png'``."""
        return self.ext if self.ext.startswith(".") else f".{self.ext}"

    @classmethod
    def _check(cls, data: dict[str, Any]) -> list[_LocProblem]:
        numbered = super()._check(data)
        if numbered:
            return numbered
        if data.get("prompt_file") is False:
            data.pop("prompt_file")
        elif data.get("prompt_file") is True:
            return [
                (
                    ("prompt_file",),
                    "ai-toolkit's 'write a .txt per image' switch is not supported here; "
                    "prompt_file is the path of a text file with one prompt per line",
                )
            ]
        if isinstance(data.get("prompts"), str):
            if data.get("prompt_file") is not None:
                return [(("prompts",), "a string prompts means a prompt file; give it or prompt_file, not both")]
            data["prompt_file"] = data.pop("prompts")
        has_prompts = bool(data.get("prompts"))
        has_file = data.get("prompt_file") not in (None, "")
        if has_prompts and has_file:
            return [(("prompt_file",), "give prompts or prompt_file, not both")]
        if not has_prompts and not has_file:
            return [(("prompts",), "no prompt: give prompts (a list) or prompt_file (a text file, one per line)")]
        return []


# --------------------------------------------------------------------------- train


class EMAConfig(_Section):
    use_ema: bool = False
    ema_decay: float = Field(default=0.99, gt=0, lt=1)

    _aitk_section: ClassVar[str | None] = "ema"


class ValidationItem(_Section):
    """One held-out image of ``train.validation_config`` and its caption."""

    image_path: str = Field(description="The held-out image (not a training image).")
    prompt: str = Field(default="", description="Its caption; [trigger] is replaced as in training captions.")


class ValidationConfig(_Section):
    """``train.validation_config``: a validation loss on held-out images, at fixed noise and sigmas, so its curve
    moves only with the LoRA (ai-toolkit's keys)."""

    validation_items: list[ValidationItem] = Field(min_length=1)
    resolution: Size = Field(default=512, description="Bucket resolution of the held-out images.")
    validate_every_n_steps: int = Field(default=10, ge=1)
    validation_sigmas: list[Fraction] = Field(
        default=[1.0, 0.75, 0.5, 0.25], min_length=1, description="Noise levels s the loss is averaged over."
    )


class TrainConfig(_Section):
    """``train:``: the optimisation loop."""

    batch_size: int = Field(default=1, ge=1)
    steps: int = Field(default=1000, ge=1)
    gradient_accumulation_steps: int = Field(
        default=1, ge=1, validation_alias=AliasChoices("gradient_accumulation_steps", "gradient_accumulation")
    )
    train_unet: bool = True
    train_text_encoder: bool = False
    gradient_checkpointing: bool = True
    noise_scheduler: Literal["flowmatch"] = "flowmatch"
    timestep_type: Literal["sigmoid", "linear", "shift", "weighted", "lognorm_blend"] | None = Field(
        default=None, description="None = the architecture's default (FLUX.2: shift, FLUX.1: sigmoid)."
    )
    optimizer: Literal["adamw", "adamw8bit", "prodigy", "adafactor"] = "adamw8bit"
    lr: float = Field(default=1e-4, gt=0, allow_inf_nan=False)
    optimizer_params: dict[str, Any] = {}
    lr_scheduler: Literal["constant", "cosine", "linear"] = "constant"
    lr_scheduler_params: dict[str, Any] = Field(
        default={},
        description="Scheduler options, as ai-toolkit: total_iters (default steps), eta_min (cosine), "
        "start_factor / end_factor (linear).",
    )
    lr_warmup_steps: int = Field(default=0, ge=0)
    max_grad_norm: float = Field(default=1.0, ge=0, description="0 disables clipping.")
    dtype: Dtype = "bf16"
    ema_config: EMAConfig = Field(default_factory=EMAConfig)
    skip_first_sample: bool = False
    force_first_sample: bool = Field(
        default=False,
        description="Sample before the first step also when resuming (skip_first_sample wins, as ai-toolkit).",
    )
    disable_sampling: bool = False
    unload_text_encoder: bool = False
    cache_text_embeddings: bool = False
    seed: int = 42
    content_or_style: Literal["balanced", "content", "style"] = "balanced"
    noise_offset: float = Field(
        default=0.0,
        ge=0,
        description="Adds noise_offset * N(0, 1) per sample and latent channel, constant over "
        "the image, to the training noise (learns overall brightness shifts).",
    )
    loss_type: Literal["mse", "mae", "pseudo_huber", "wavelet"] = Field(
        default="mse",
        description="Per-element loss against the flow-matching target: mse, mae, pseudo_huber "
        "(sqrt(d^2 + 0.01^2) - 0.01) or wavelet (mse of one-level Haar subbands of the predicted x0; ai-toolkit's).",
    )
    bypass_guidance_embedding: bool = Field(
        default=False,
        description="Train without the guidance embedding (its output is left out of the time "
        "conditioning of training predictions; sampling keeps it). Nothing to bypass on models without one (klein).",
    )
    reg_weight: float = Field(
        default=1.0, ge=0, description="Loss multiplier of batches from regularisation datasets (datasets[].is_reg)."
    )
    diff_output_preservation: bool = Field(
        default=False,
        description="DOP: the LoRA's prediction on the caption with the trigger word replaced by "
        "diff_output_preservation_class is pulled towards the base model's (LoRA off) prediction on it.",
    )
    diff_output_preservation_multiplier: float = Field(default=1.0, ge=0, description="Weight of the DOP loss.")
    diff_output_preservation_class: str = Field(
        default="", description="The class word that replaces the trigger word in DOP captions (e.g. 'woman')."
    )
    blank_prompt_preservation: bool = Field(
        default=False,
        description="Like DOP, on the empty prompt: the LoRA's prediction with an empty caption is "
        "pulled towards the base model's.",
    )
    blank_prompt_preservation_multiplier: float = Field(default=1.0, ge=0, description="Weight of that loss.")
    validation_config: ValidationConfig | None = Field(
        default=None,
        description="Held-out images whose loss at fixed noise and sigmas is logged as a validation "
        "curve (progress.jsonl, loss_log.csv, loss.png).",
    )

    _aitk_section: ClassVar[str | None] = "train"

    @field_validator("timestep_type", mode="before")
    @classmethod
    def _known_timestep_type(cls, value: Any) -> Any:
        if value in AITK_TIMESTEP_TYPES:
            raise ValueError(
                f"ai-toolkit's timestep_type {value!r} is not supported here: {AITK_TIMESTEP_TYPES[value]}"
            )
        return value

    @field_validator("optimizer_params", "lr_scheduler_params", mode="before")
    @classmethod
    def _numbers_in_params(cls, value: Any) -> Any:
        # Free-form keyword arguments get no field types: "1e-4" (a quoted number, or ${ENV} text) is a number.
        if not isinstance(value, dict):
            return value
        return {key: number_if_numeric(item) for key, item in value.items()}

    @field_validator("optimizer", mode="before")
    @classmethod
    def _lower_optimizer(cls, value: Any) -> Any:
        return _lowercase(value)  # ai-toolkit matched optimizer names case-insensitively

    @classmethod
    def _check(cls, data: dict[str, Any]) -> list[_LocProblem]:
        problems = _both_given(data, "gradient_accumulation_steps", "gradient_accumulation")
        warmup, steps = data.get("lr_warmup_steps"), data.get("steps", cls.model_fields["steps"].default)
        if isinstance(warmup, int) and isinstance(steps, int) and not isinstance(warmup, bool) and warmup > steps:
            problems.append(
                (
                    ("lr_warmup_steps",),
                    f"{warmup} warm-up steps exceed train.steps ({steps}); the "
                    "learning rate would never reach train.lr. Lower it",
                )
            )
        if data.get("loss_type") == "stepped":
            data.pop("loss_type")
            message = (
                "ai-toolkit's 'stepped' loss steps its own training scheduler's sigma table 50 entries ahead, "
                "which this trainer does not have; use mse (or mae, pseudo_huber, wavelet)"
            )
            problems.append((("loss_type",), message))
        if data.get("diff_output_preservation") is True and data.get("blank_prompt_preservation") is True:
            message = (
                "diff_output_preservation and blank_prompt_preservation each add a preservation loss; turn "
                "one of them off"
            )
            problems.append((("blank_prompt_preservation",), message))
        if data.get("diff_output_preservation") is True and not data.get("diff_output_preservation_class"):
            message = (
                "diff_output_preservation needs the class word that replaces the trigger word (e.g. "
                "diff_output_preservation_class: woman)"
            )
            problems.append((("diff_output_preservation_class",), message))
        return problems


class NetworkKwargs(_Section):
    """Module-name filters, in our diffusers names (``single_transformer_blocks.0``) or ai-toolkit's spellings
    (``transformer.single_transformer_blocks.0``, BFL names such as ``single_blocks.0``): see toolkit/network.py."""

    only_if_contains: list[str] = Field(
        default=[], description="Only modules whose name contains one of these (empty = all)."
    )
    ignore_if_contains: list[str] = []

    _aitk_section: ClassVar[str | None] = "network_kwargs"


LOKR_FULL_RANK = 9_999_999_999
"""ai-toolkit's rank for ``lokr_full_rank``: no LoKr factor is rank-decomposed."""


class NetworkConfig(_Section):
    """``network:``: the adapter trained. ``rank`` and ``alpha`` are ai-toolkit's older names."""

    type: Literal["lora", "lokr"] = "lora"
    linear: int = Field(default=16, ge=1, validation_alias=AliasChoices("linear", "rank"))
    linear_alpha: float = Field(default=16, gt=0, validation_alias=AliasChoices("linear_alpha", "alpha"))
    network_kwargs: NetworkKwargs = Field(default_factory=NetworkKwargs)
    lokr_full_rank: bool = Field(
        default=True,
        description="LoKr: full-rank Kronecker factors (linear / linear_alpha are then not used), "
        "ai-toolkit's default. false: the larger factor is decomposed at rank linear, scaled by linear_alpha / linear.",
    )
    lokr_factor: int = Field(default=-1, description="-1 picks the most square factorisation automatically.")
    transformer_only: bool = Field(default=True, description="LoRA on the transformer blocks only (false is refused).")

    _aitk_section: ClassVar[str | None] = "network"

    @property
    def adapter_rank(self) -> int:
        """The rank PEFT gets: ``linear``, or for full-rank LoKr one large enough that no factor is decomposed
        (as ai-toolkit, which sets it to 9999999999)."""
        return LOKR_FULL_RANK if self.type == "lokr" and self.lokr_full_rank else self.linear

    @property
    def adapter_alpha(self) -> float:
        """The alpha PEFT gets: ``linear_alpha``; full-rank LoKr uses alpha = rank (scale 1), as ai-toolkit."""
        return float(LOKR_FULL_RANK) if self.type == "lokr" and self.lokr_full_rank else self.linear_alpha

    @field_validator("type", mode="before")
    @classmethod
    def _normalize_type(cls, value: Any) -> Any:
        value = _lowercase(value)  # ai-toolkit matched network types case-insensitively
        # ai-toolkit's LoCon is LoRA plus conv layers; the FLUX transformers have none, so it is LoRA.
        return "lora" if value == "locon" else value

    @classmethod
    def _check(cls, data: dict[str, Any]) -> list[_LocProblem]:
        problems = _both_given(data, "linear", "rank") + _both_given(data, "linear_alpha", "alpha")
        if data.get("transformer_only") is False:
            message = (
                "false (ai-toolkit: also adapt the layers outside the transformer blocks) is not supported; "
                "LoRA trains the blocks. Remove it"
            )
            problems.append((("transformer_only",), message))
        return problems


class SaveConfig(_Section):
    """``save:``: checkpoints. ``format: comfy`` writes BFL module names ComfyUI and diffusers load."""

    dtype: Dtype = "float16"
    save_every: int = Field(default=250, ge=1)
    max_step_saves_to_keep: int = Field(default=4, ge=0)
    push_to_hub: bool = Field(
        default=False,
        description="At the end of training, upload the job folder's LoRA files, config and samples "
        "to the Hugging Face hub repo hf_repo_id (needs HF_TOKEN or a huggingface-cli login).",
    )
    hf_repo_id: str | None = Field(default=None, description="your-username/your-model")
    hf_private: bool = Field(default=False, description="Create the hub repo private.")
    format: Literal["comfy", "diffusers"] = "comfy"

    _aitk_section: ClassVar[str | None] = "save"

    @classmethod
    def _check(cls, data: dict[str, Any]) -> list[_LocProblem]:
        if data.get("push_to_hub") is True and not data.get("hf_repo_id"):
            return [(("hf_repo_id",), "push_to_hub: true needs hf_repo_id (your-username/your-model)")]
        return []


class DatasetConfig(_Section):
    """One entry of ``datasets:``: a folder of images with same-named caption files.

    ``caption_ext`` is stored without its leading dot (``txt``).

    Edit training: ``control_path`` names one reference folder, or a list of them (ai-toolkit's
    multi control paths); each target trains with the same-named image of every folder, in
    order (reference i gets FLUX.2's time coordinate 10 + 10 i). References keep the size the
    diffusers FLUX.2 pipelines give them at inference; ``match_target_res: true`` resizes them to
    the target's bucket instead (fewer tokens at low training resolutions, but then the LoRA sees
    references at another size than diffusers feeds it).
    """

    folder_path: str
    caption_ext: str = Field(default="txt", validation_alias=AliasChoices("caption_ext", "caption_type"))
    default_caption: str | None = None
    caption_dropout_rate: Fraction = 0.05
    shuffle_tokens: bool = False
    token_dropout_rate: Fraction = 0.0
    keep_tokens: int = Field(default=0, ge=0)
    num_repeats: int = Field(default=1, ge=1)
    cache_latents: bool = False
    cache_latents_to_disk: bool = False
    resolution: Size | Annotated[list[Size], Field(min_length=1)] = [512, 768, 1024]
    flip_x: bool = False
    flip_y: bool = False
    control_path: Paths = Field(
        default=None,
        description="Reference (control) image folder(s) for edit training: each target image trains with the "
        "same-named image (any of jpg/jpeg/png/webp) of every folder, in order; a target missing one is skipped.",
    )
    match_target_res: bool = Field(
        default=False,
        description="Resize reference images to the target's bucket instead of the size the diffusers FLUX.2 "
        "pipelines give them at inference (their own size, capped at 1024x1024 pixels, sides multiples of 16).",
    )
    is_reg: bool = Field(
        default=False,
        description="Regularisation images: drawn on every other step (not on steps that save or "
        "sample), without the trigger word, their loss weighted by train.reg_weight.",
    )
    trigger_word: str | None = Field(
        default=None, description="This dataset's trigger word (replaces the process trigger_word for its captions)."
    )
    mask_path: str | None = Field(
        default=None,
        description="Folder of loss masks named like the images (any image extension): white trains "
        "fully, black not at all; the loss is weighted per latent pixel.",
    )
    alpha_mask: bool = Field(default=False, description="Use each image's alpha channel as its loss mask.")
    invert_mask: bool = Field(default=False, description="Invert the masks (black trains, white not).")
    mask_min_value: Fraction = Field(
        default=0.0, description="Masks are mapped from [0, 1] to [mask_min_value, 1]: the least weight a pixel gets."
    )
    network_weight: float = Field(
        default=1.0, description="LoRA multiplier for this dataset's items while training (1 = full strength)."
    )
    loss_multiplier: float = Field(default=1.0, ge=0, description="Multiplies the loss of this dataset's items.")
    cache_text_embeddings: bool = Field(
        default=False,
        description="Cache caption embeddings (as train.cache_text_embeddings); as in ai-toolkit, "
        "all datasets or none.",
    )
    num_workers: int = Field(
        default=0,
        ge=0,
        description="DataLoader worker processes loading images (the first dataset's value "
        "counts, as in ai-toolkit; ai-toolkit defaults to 2, here 0 = load in the training process).",
    )
    prefetch_factor: int = Field(default=2, ge=1, description="Batches each worker loads ahead (num_workers > 0).")

    _aitk_section: ClassVar[str | None] = "dataset"
    _legacy_keys: ClassVar[tuple[str, ...]] = ("control_path_1", "control_path_2", "control_path_3")

    @classmethod
    def _check(cls, data: dict[str, Any]) -> list[_LocProblem]:
        return _both_given(data, "caption_ext", "caption_type") + _numbered_into_list(
            data, "control_path", "control_path"
        )

    @field_validator("caption_ext")
    @classmethod
    def _strip_dot(cls, value: str) -> str:
        return value.lstrip(".")

    @property
    def resolutions(self) -> list[int]:
        return [self.resolution] if isinstance(self.resolution, int) else list(self.resolution)

    @property
    def control_paths(self) -> list[str]:
        """``control_path`` as a list: reference folder i gives every target its reference image i."""
        return _as_list(self.control_path)


class LoggingConfig(_Section):
    log_every: int = Field(default=1, ge=1)
    use_wandb: bool = Field(
        default=False,
        description="Log losses, learning rate, timings and samples to Weights & Biases (the wandb "
        "client; WANDB_MODE=offline writes the run locally).",
    )
    project_name: str = Field(default="ai-toolkit", description="wandb project.")
    run_name: str | None = Field(default=None, description="wandb run name; None = the job name.")
    verbose: bool = False

    _aitk_section: ClassVar[str | None] = "logging"


# ------------------------------------------------------------------------ processes

_EMPTY_IS_DEFAULT = ("network", "save", "train", "sample", "logging")


ADAPTER_TYPES = (
    "ip",
    "ip+",
    "t2i",
    "control_net",
    "controlnet",
    "control_lora",
    "clip",
    "llm_adapter",
    "vd_adapter",
    "subpixel",
    "mean_flow",
    "redux",
    "te_augmenter",
    "lora",
)


class AdapterConfig(BaseModel):
    """ai-toolkit's ``adapter:`` section (IP adapter, ControlNet, ...). Its ``type`` is checked here;
    whether the architecture supports it is checked before loading (toolkit/features.py). The other
    keys are ai-toolkit's per-adapter options, kept as given."""

    model_config = ConfigDict(extra="allow")

    type: Literal[ADAPTER_TYPES]  # type: ignore[valid-type]
    name_or_path: str | None = None


class TrainProcessConfig(_Section):
    """``type: sd_trainer``: train a LoRA. An empty section (``sample:`` with all keys
    commented out) takes the defaults."""

    type: Literal["sd_trainer"]
    training_folder: str = "output"
    device: str = "cuda:0"
    trigger_word: str | None = None
    performance_log_every: int = Field(
        default=0,
        ge=0,
        description="Every N steps, log where the time went since the last report (data, forward, "
        "backward, optimizer, sampling, saving) and write it to progress.jsonl; 0 = off.",
    )
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    save: SaveConfig = Field(default_factory=SaveConfig)
    datasets: list[DatasetConfig] = Field(min_length=1)
    train: TrainConfig = Field(default_factory=TrainConfig)
    model: ModelConfig
    sample: SampleConfig = Field(default_factory=SampleConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    adapter: AdapterConfig | None = None

    _aitk_section: ClassVar[str | None] = "process"
    _legacy_keys: ClassVar[tuple[str, ...]] = ("training_seed",)

    @classmethod
    def _check(cls, data: dict[str, Any]) -> list[_LocProblem]:
        for key in _EMPTY_IS_DEFAULT:
            if key in data and data[key] is None:
                del data[key]
        if "training_seed" in data:  # ai-toolkit's process-level seed is train.seed here
            seed = data.pop("training_seed")
            train = data.get("train")
            if not isinstance(train, dict):
                train = {}
            if "seed" in train:
                return [(("training_seed",), "another name for train.seed; give only one of them")]
            data["train"] = {**train, "seed": seed}
        datasets = data.get("datasets") if isinstance(data.get("datasets"), list) else []
        caching = [isinstance(d, dict) and d.get("cache_text_embeddings") is True for d in datasets]
        problems = _sampling_without_prompts(data)
        if any(caching) and not all(caching):
            problems.append(
                (
                    ("datasets", caching.index(False), "cache_text_embeddings"),
                    "text embeddings are "
                    "cached for all datasets or none (as in ai-toolkit); set cache_text_embeddings: true on "
                    "every dataset, or train.cache_text_embeddings: true",
                )
            )
        return problems

    @model_validator(mode="after")
    def _aitk_derived(self) -> TrainProcessConfig:
        # ai-toolkit's trainer copies train.dtype into the model config before loading: the weights' dtype.
        if "dtype" not in self.model.model_fields_set:
            self.model.dtype = self.train.dtype
        match_target_res = self.model.model_kwargs.match_target_res
        if match_target_res is not None:
            for dataset in self.datasets:
                if "match_target_res" not in dataset.model_fields_set:
                    dataset.match_target_res = match_target_res
        return self

    @property
    def caches_text_embeddings(self) -> bool:
        """``train.cache_text_embeddings``, or ai-toolkit's per-dataset spelling of it."""
        return self.train.cache_text_embeddings or any(d.cache_text_embeddings for d in self.datasets)


def _sampling_without_prompts(process: dict[str, Any]) -> list[_LocProblem]:
    """``sample_every`` given, sampling on, and nothing to sample: an error, not a silent no-op."""
    sample, train = process.get("sample"), process.get("train")
    disabled = isinstance(train, dict) and train.get("disable_sampling") is True
    if not isinstance(sample, dict) or "sample_every" not in sample or disabled:
        return []
    if sample.get("prompts") or sample.get("samples"):
        return []
    return [
        (
            ("sample", "prompts"),
            "sample.sample_every is set but there is no prompt to sample: add prompts "
            "(or samples), or set train.disable_sampling: true",
        )
    ]


class GenerateProcessConfig(_Section):
    """``type: to_folder``: generate images into ``output_folder``."""

    type: Literal["to_folder"]
    output_folder: str
    device: str = "cuda:0"
    generate: GenerateConfig
    model: ModelConfig


ProcessConfig = Annotated[Union[TrainProcessConfig, GenerateProcessConfig], Field(discriminator="type")]
PROCESS_TYPES: dict[str, type[_Section]] = {"sd_trainer": TrainProcessConfig, "to_folder": GenerateProcessConfig}
JOB_PROCESS_TYPES: dict[str, str] = {"extension": "sd_trainer", "generate": "to_folder"}

PROCESS_TYPE_ALIASES: dict[str, str] = {"diffusion_trainer": "sd_trainer", "ui_trainer": "sd_trainer"}
"""ai-toolkit's web UI process types: the same trainer (read as type: sd_trainer)."""
PROCESS_TYPE_HINTS: dict[str, str] = {}
"""Unknown process types -> what to write instead (config.py adds them to the error)."""


def _alias_process_types(section: Any) -> Any:
    """``config:`` with ai-toolkit's process type aliases rewritten (copies; the input is not changed)."""
    if not isinstance(section, dict) or not isinstance(section.get("process"), list):
        return section
    processes = [
        {**p, "type": PROCESS_TYPE_ALIASES[p["type"]]}
        if isinstance(p, dict) and isinstance(p.get("type"), str) and p["type"] in PROCESS_TYPE_ALIASES
        else p
        for p in section["process"]
    ]
    return {**section, "process": processes}


class JobSection(_Section):
    """``config:``: the job's name (its output folder and file names) and processes."""

    name: str = Field(min_length=1)
    process: list[ProcessConfig] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        problem = name_problem(value)  # the name becomes <training_folder>/<name>/: never a path
        if problem:
            raise ValueError(problem)
        return value


class JobConfig(_Section):
    """A whole job file: ``job``, ``config``, ``meta``."""

    job: Literal["extension", "generate"]
    config: JobSection
    meta: dict[str, Any] = {}

    @classmethod
    def _check(cls, data: dict[str, Any]) -> list[_LocProblem]:
        job = data.get("job")
        if "config" in data:
            data["config"] = _alias_process_types(data["config"])
        section = data.get("config")
        if job not in JOB_PROCESS_TYPES or not isinstance(section, dict):
            return []
        processes = section.get("process")
        wanted = JOB_PROCESS_TYPES[job]
        other_job = {v: k for k, v in JOB_PROCESS_TYPES.items()}
        problems = []
        for i, process in enumerate(processes if isinstance(processes, list) else []):
            kind = process.get("type") if isinstance(process, dict) else None
            if kind in PROCESS_TYPES and kind != wanted:
                problems.append(
                    (
                        ("job",),
                        f"'{job}' runs only type: {wanted} processes, but config.process[{i}] "
                        f"is type: {kind}; use job: {other_job[kind]} for it",
                    )
                )
        return problems


def json_schema() -> dict:
    """JSON schema of a job file, for the UIs (defaults, enums, descriptions)."""
    return JobConfig.model_json_schema()
