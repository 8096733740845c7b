"""What a training job writes besides its LoRA's training state: checkpoints (``save:``) and logs
(``logging:``)."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from toolkit.config_modules.base import Dtype, _LocProblem, _Section


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
