"""One entry of ``datasets:`` (:class:`DatasetConfig`)."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar

from pydantic import AliasChoices, Field, field_validator

from toolkit.config_modules.base import (
    Fraction,
    Paths,
    Size,
    _as_list,
    _both_given,
    _LocProblem,
    _numbered_into_list,
    _Section,
)


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
