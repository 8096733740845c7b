"""``network:``: the adapter trained (LoRA or LoKr) and which modules it adapts."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import AliasChoices, Field, field_validator

from toolkit.config_modules.base import _both_given, _LocProblem, _lowercase, _Section


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
