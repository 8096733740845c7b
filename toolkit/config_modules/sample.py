"""``sample:`` (images rendered while training) and ``generate:`` (a ``to_folder`` process), both with
reference images for edit models."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from toolkit.config_modules.base import Paths, Size, _as_list, _LocProblem, _numbered_into_list, _Section


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
