"""``train:``: the optimisation loop (:class:`TrainConfig`), with its EMA and validation-loss sections."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, Field, field_validator

from toolkit.aitk_compat import AITK_TIMESTEP_TYPES, number_if_numeric
from toolkit.config_modules.base import Dtype, Fraction, Size, _both_given, _LocProblem, _lowercase, _Section


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
