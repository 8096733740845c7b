"""LoRA on the diffusers transformer, through PEFT.

The model chooses the default targets (`model.lora_targets()`); `network_kwargs`
filters them the same way for every architecture. A filter that leaves nothing is
an error, not an empty LoRA.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

from toolkit.errors import ToolkitError

ADAPTER = "default"


class NetworkError(ToolkitError):
    pass


def module_spellings(name: str, bfl_name: str | None = None) -> list[str]:
    """The names a `network_kwargs` filter may use for module `name` (ours: `single_transformer_blocks.0.attn.to_out`).

    ai-toolkit matches its filters as substrings of the module's dotted name with a `transformer.` (PEFT) or
    `lora_transformer.` prefix, or of its underscored form (`lora_transformer_single_transformer_blocks_0_...`);
    its FLUX.2 model uses Black Forest Labs names (`single_blocks.0.linear2`), given here as `bfl_name`.
    """
    spellings = []
    for base in [name] + ([bfl_name] if bfl_name else []):
        spellings += [f"{prefix}{base}" for prefix in ("", "transformer.", "lora_transformer.", "diffusion_model.")]
        spellings += [f"{prefix}{base.replace('.', '_')}" for prefix in ("lora_transformer_", "lora_unet_")]
    return spellings


def select_targets(
    candidates: list[str],
    only_if_contains: list[str],
    ignore_if_contains: list[str],
    key: str,
    bfl_name: Callable[[str], str | None] | None = None,
) -> list[str]:
    """Filter module names by substring, in any spelling of :func:`module_spellings`; pure, so every
    architecture filters alike. `bfl_name` maps a module to its BFL name (None: no BFL spelling)."""
    spellings = {name: module_spellings(name, bfl_name(name) if bfl_name else None) for name in candidates}

    def hit(needle: str, name: str) -> bool:
        return any(needle in spelling for spelling in spellings[name])

    unmatched = [s for s in only_if_contains if not any(hit(s, name) for name in candidates)]
    if unmatched:
        raise NetworkError(
            f"{key}.network_kwargs.only_if_contains: {unmatched} match no module the model offers for training "
            f"(e.g. {candidates[:3]}); check the module names"
        )
    selected = [
        name
        for name in candidates
        if (not only_if_contains or any(hit(s, name) for s in only_if_contains))
        and not any(hit(s, name) for s in ignore_if_contains)
    ]
    if not selected:
        raise NetworkError(
            f"{key}.network_kwargs: only_if_contains={only_if_contains} / ignore_if_contains={ignore_if_contains} "
            f"leave no module to train (of {len(candidates)}, e.g. {candidates[:3]})"
        )
    return selected


def attach_lora(
    transformer: torch.nn.Module,
    targets: list[str],
    rank: int,
    alpha: float,
    network_type: str = "lora",
    lokr_factor: int = -1,
) -> list[torch.nn.Parameter]:
    """Add a PEFT LoRA (or LoKr) adapter on exactly `targets`; returns the trainable parameters (fp32).

    LoKr: `rank` is PEFT's `r` (the rank of decomposed Kronecker factors; a rank at least half the larger
    factor's side keeps that factor full, which is how `network.lokr_full_rank` gets full-rank factors, as in
    ai-toolkit), `lokr_factor` its `decompose_factor` (-1: the most square factorisation).
    """
    from peft import LoKrConfig, LoraConfig

    transformer.requires_grad_(False)
    if network_type == "lokr":
        config = LoKrConfig(r=rank, alpha=alpha, decompose_factor=lokr_factor, target_modules=targets)
    else:
        config = LoraConfig(r=rank, lora_alpha=alpha, target_modules=targets)
    transformer.add_adapter(config, adapter_name=ADAPTER)
    params = []
    for name, param in transformer.named_parameters():
        if ".lora_" in name or ".lokr_" in name:
            param.data = param.data.float()
            param.requires_grad_(True)
            params.append(param)
    return params


def lora_state_dict(transformer: torch.nn.Module) -> dict[str, torch.Tensor]:
    """PEFT keys without the adapter name: `transformer_blocks.0.attn.to_q.lora_A.weight`."""
    from peft.utils import get_peft_model_state_dict

    state = get_peft_model_state_dict(transformer, adapter_name=ADAPTER)
    return {k: v.detach().clone() for k, v in state.items()}


def load_lora_state_dict(transformer: torch.nn.Module, state: dict[str, torch.Tensor]) -> None:
    from peft.utils import set_peft_model_state_dict

    result = set_peft_model_state_dict(transformer, state, adapter_name=ADAPTER)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise NetworkError(f"the LoRA to resume has keys this model lacks: {unexpected[:5]}")


class ItemMultiplier:
    """Per-item LoRA strength while training (ai-toolkit's ``datasets[].network_weight``).

    Scales each batch item's adapter output (LoRA: the ``lora_B`` output; LoKr: its delta activations) by that
    item's weight. The weights stay set from the forward through the backward (with gradient checkpointing the
    backward re-runs the forward, which must see the same weights) until :meth:`clear`. Every adapter input in
    the FLUX transformers is batch-first, which :meth:`_scale` checks.
    """

    def __init__(self, transformer: torch.nn.Module):
        self.weights: torch.Tensor | None = None
        self.handles = []
        for module in transformer.modules():
            lora_b = getattr(module, "lora_B", None)
            if isinstance(lora_b, torch.nn.ModuleDict) and ADAPTER in lora_b:
                self.handles.append(lora_b[ADAPTER].register_forward_hook(lambda m, args, out: self._scale(out)))
            elif hasattr(module, "_get_delta_activations") and ADAPTER in getattr(module, "_available_adapters", ()):
                self._wrap_delta(module)

    def _wrap_delta(self, module) -> None:
        original = module._get_delta_activations

        def scaled(adapter_name, x, *args, **kwargs):
            return self._scale(original(adapter_name, x, *args, **kwargs))

        module._get_delta_activations = scaled  # the instance's own method: PEFT calls it from forward

    def _scale(self, out: torch.Tensor) -> torch.Tensor:
        if self.weights is None:
            return out
        if out.shape[0] != self.weights.shape[0]:
            raise RuntimeError(
                f"network_weight: an adapter saw a batch of {out.shape[0]}, the data one of {self.weights.shape[0]}"
            )
        return out * self.weights.to(out.device, out.dtype).view(-1, *([1] * (out.ndim - 1)))

    def set(self, weights: torch.Tensor | None) -> None:
        """(B,) weights of the coming forward; None (or all ones) = full strength, no cost."""
        self.weights = None if weights is None or bool((weights == 1).all()) else weights.detach().float()

    def clear(self) -> None:
        self.weights = None
