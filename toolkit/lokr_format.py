"""PEFT LoKr on FLUX.2 -> the files ComfyUI and diffusers load (`network.type: lokr`).

A Kronecker-product delta over a fused projection cannot be split exactly into separate
q/k/v factors (unlike a LoRA, whose fused form is block-diagonal), so LoKr trains on the
transformer with its q/k/v projections fused (`to_qkv`, `to_added_qkv`), which map 1:1 onto
Black Forest Labs' `img_attn.qkv` / `txt_attn.qkv`. diffusers' Flux2 loader fuses the
pipeline's projections itself when a LoKr file targets them; ComfyUI works on the BFL names.

PEFT scales the delta by `alpha / r` whether or not a factor is rank-decomposed; LyCORIS
readers (ComfyUI, diffusers) apply `alpha / rank` only to decomposed factors and no scale
without an `.alpha` key. So the scale is folded into `lokr_w1` (or `lokr_w1_a`) and no
`.alpha` key is written: every reader then applies exactly the trained delta.
"""

from __future__ import annotations

import re

import torch

from toolkit.errors import ToolkitError

COMFY_PREFIX = "diffusion_model."
DIFFUSERS_PREFIX = "transformer."
_KEY = re.compile(r"^(.+)\.(lokr_w1|lokr_w1_a|lokr_w1_b|lokr_w2|lokr_w2_a|lokr_w2_b)$")
_DOUBLE = {
    "attn.to_qkv": "img_attn.qkv",
    "attn.to_added_qkv": "txt_attn.qkv",
    "attn.to_out.0": "img_attn.proj",
    "attn.to_add_out": "txt_attn.proj",
    "ff.linear_in": "img_mlp.0",
    "ff.linear_out": "img_mlp.2",
    "ff_context.linear_in": "txt_mlp.0",
    "ff_context.linear_out": "txt_mlp.2",
}
_SINGLE = {"attn.to_qkv_mlp_proj": "linear1", "attn.to_out": "linear2"}
_BLOCK = re.compile(r"^(transformer_blocks|single_transformer_blocks)\.(\d+)\.(.+)$")


class LokrFormatError(ToolkitError):
    pass


def flux2_module_to_bfl(module: str) -> str:
    """`transformer_blocks.0.attn.to_qkv` -> `double_blocks.0.img_attn.qkv` (fused FLUX.2 transformer)."""
    match = _BLOCK.match(module)
    table = _DOUBLE if match and match.group(1) == "transformer_blocks" else _SINGLE
    if not match or match.group(3) not in table:
        raise LokrFormatError(
            f"LoKr on '{module}' has no Black Forest Labs name; LoKr trains the double/single blocks' fused "
            "projections, attention outputs and MLPs (use save.format: diffusers for other modules)"
        )
    prefix = "double_blocks" if match.group(1) == "transformer_blocks" else "single_blocks"
    return f"{prefix}.{match.group(2)}.{table[match.group(3)]}"


def _folded(state_dict: dict[str, torch.Tensor], scale: float, dtype) -> dict[str, dict[str, torch.Tensor]]:
    modules: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in state_dict.items():
        match = _KEY.match(key)
        if not match:
            raise LokrFormatError(f"'{key}' is not a PEFT LoKr key")
        modules.setdefault(match.group(1), {})[match.group(2)] = tensor
    out = {}
    for module, parts in modules.items():
        parts = dict(parts)
        first = "lokr_w1" if "lokr_w1" in parts else "lokr_w1_a"
        parts[first] = parts[first] * scale
        out[module] = {name: (t.to(dtype) if dtype is not None else t) for name, t in parts.items()}
    return out


def lokr_peft_to_comfy(state_dict: dict[str, torch.Tensor], alpha: float, rank: int, *, dtype=None):
    """PEFT LoKr keys (`transformer_blocks.0.attn.to_qkv.lokr_w1`) -> `diffusion_model.double_blocks.0.img_attn.qkv.lokr_w1`."""
    out = {}
    for module, parts in _folded(state_dict, alpha / rank, dtype).items():
        name = flux2_module_to_bfl(module)
        for part, tensor in parts.items():
            out[f"{COMFY_PREFIX}{name}.{part}"] = tensor
    return out


def lokr_peft_to_diffusers(state_dict: dict[str, torch.Tensor], alpha: float, rank: int, *, dtype=None):
    """PEFT LoKr keys -> `transformer.{module}.lokr_*` (diffusers names), scale folded."""
    return {
        f"{DIFFUSERS_PREFIX}{module}.{part}": tensor
        for module, parts in _folded(state_dict, alpha / rank, dtype).items()
        for part, tensor in parts.items()
    }
