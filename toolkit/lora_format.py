"""LoRA state dicts: PEFT (what we train) <-> the files we save (ComfyUI/BFL names, or diffusers names).

Pure functions on ``dict[str, Tensor]``; no I/O. Training puts PEFT LoRA layers on the diffusers transformer,
so a trained LoRA is ``{module}.lora_A.weight`` (r, in) and ``{module}.lora_B.weight`` (out, r) per diffusers
module, with the forward ``W x + (alpha / r) * B A x``.

**comfy** (``save.format: comfy``, the default) is what ComfyUI loads and what diffusers'
``pipe.load_lora_weights`` reads back: Black Forest Labs module names behind a ``diffusion_model.`` prefix.

* FLUX.2 keys: ``diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight`` / ``.lora_B.weight``.
* FLUX.1 keys: ``diffusion_model.double_blocks.0.img_attn.qkv.lora_down.weight`` / ``.lora_up.weight``.
  diffusers 0.42 reads a FLUX.1 ``diffusion_model.*`` file only in this kohya spelling; with ``lora_A``/``lora_B``
  it loads nothing and only logs "No LoRA keys associated to FluxTransformer2DModel". ComfyUI reads both.
* No ``.alpha`` keys: the scale ``alpha / r`` is folded into the weights. diffusers' FLUX.2 reader raises on a
  ``diffusion_model.*`` file with ``.alpha`` keys, and both readers take a missing alpha as ``alpha = r``
  (scale 1). The scale is split between A and B as evenly as powers of two allow (:func:`fold_factors`):
  multiplying by a power of two is exact in binary floating point, so the usual alphas (``alpha = r``, ``r/2``,
  ``1`` with ``r = 16``...) fold and unfold bit for bit, and neither factor pushes small fp16 weights into
  subnormals the way putting all of ``1/16`` on B would.
* BFL fuses modules that diffusers splits: q/k/v (``img_attn.qkv``, ``txt_attn.qkv``) and, in FLUX.1 single
  blocks, ``linear1`` = [to_q, to_k, to_v, proj_mlp]. Parts ``i = 0..n-1`` with LoRAs ``(A_i, B_i)`` of rank r
  become one LoRA of rank n*r: ``A = cat(A_i)`` (n*r, in) and ``B = block_diag(B_i)`` (sum out_i, n*r), so
  ``B A = cat(B_i A_i)`` exactly. A part without a LoRA gets zero blocks in both A and B. FLUX.2 single blocks
  are already fused in diffusers (``attn.to_qkv_mlp_proj`` = ``linear1``), and FLUX.2's ``ff.linear_in`` is
  ``img_mlp.0`` row for row: diffusers' checkpoint converter does not reorder the SwiGLU halves (both gate with
  the first half), so B rows keep their order.
* Modules the file cannot carry faithfully for diffusers 0.42 are refused (:class:`LoraFormatError`):
  FLUX.2 ``norm_out.linear`` (BFL ``final_layer.adaLN_modulation.1``: BFL orders its output halves
  (shift, scale), diffusers (scale, shift), and diffusers' FLUX.2 LoRA reader does not swap B's rows, so one
  file cannot be right for both readers), and FLUX.1 modules outside the blocks (diffusers' FLUX.1 reader drops
  their keys without a warning). The default LoRA targets are inside the blocks; ``save.format: diffusers``
  carries any module.

diffusers loads a fused q/k/v LoRA as three LoRAs of rank 3r sharing A (FLUX.2) or, recognising the block
diagonal, as three of rank r (FLUX.1): the same function either way.

**diffusers** (``save.format: diffusers``): ``transformer.{module}.lora_A.weight`` as
``pipe.save_lora_weights`` names them, the scale folded the same way so that no adapter metadata is needed.

Reading back (resume): :func:`comfy_to_peft` and :func:`diffusers_to_peft` invert the above exactly for files
we wrote. The file does not store alpha; pass the run's ``alpha`` (kept in the safetensors header) to unfold
it and get the trained parameters back, or leave it out to get an equivalent LoRA with ``alpha = r``.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from typing import TYPE_CHECKING, Callable

from toolkit.convert.flux_keys import flux2_diffusers_module_to_bfl, flux_diffusers_module_to_bfl
from toolkit.errors import ToolkitError

if TYPE_CHECKING:
    from torch import Tensor

StateDict = dict[str, "Tensor"]

__all__ = [
    "LoraFormatError",
    "COMFY_PREFIX",
    "DIFFUSERS_PREFIX",
    "fold_factors",
    "peft_to_comfy",
    "comfy_to_peft",
    "peft_to_diffusers",
    "diffusers_to_peft",
    "to_peft",
    "bfl_module_name",
]

COMFY_PREFIX = "diffusion_model."
DIFFUSERS_PREFIX = "transformer."
_PEFT_KEY = re.compile(r"^(.+)\.(lora_A|lora_B)\.weight$")
_COMFY_KEY = re.compile(r"^(.+)\.(lora_A|lora_B|lora_down|lora_up)\.weight$")
_BLOCK = re.compile(r"^(double_blocks|single_blocks|transformer_blocks|single_transformer_blocks)\.(\d+)\.(.+)$")


class LoraFormatError(ToolkitError):
    """A LoRA state dict that cannot be converted as asked; the message says which key and why."""


@dataclasses.dataclass(frozen=True)
class _Family:
    """What differs between FLUX.1 and FLUX.2 LoRA files: data, not branches."""

    name: str
    to_bfl: Callable  # diffusers module -> BflTarget (toolkit.convert.flux_keys)
    model_class: str  # diffusers transformer class, to enumerate real module names
    down_up: tuple[str, str]  # how the comfy file spells A and B
    # BFL fused module (inside a block) -> widths of its parts as multiples of in_features
    fused_widths: dict[str, tuple[int, ...]]
    refuse: Callable[[str], str | None]  # diffusers module -> why it cannot be written, or None


def _flux2_refuse(module: str) -> str | None:
    if module == "norm_out.linear":
        return (
            "BFL orders final_layer.adaLN_modulation.1's output halves (shift, scale) and diffusers (scale, shift); "
            "diffusers 0.42's FLUX.2 LoRA reader does not swap them, so no comfy file is right for both readers"
        )
    return None


def _flux_refuse(module: str) -> str | None:
    if not _BLOCK.match(module):
        return "diffusers 0.42's FLUX.1 reader silently drops comfy-file LoRA keys outside the blocks"
    return None


_FAMILIES = {
    "flux2": _Family(
        "flux2",
        flux2_diffusers_module_to_bfl,
        "Flux2Transformer2DModel",
        ("lora_A", "lora_B"),
        {"img_attn.qkv": (1, 1, 1), "txt_attn.qkv": (1, 1, 1)},
        _flux2_refuse,
    ),
    "flux": _Family(
        "flux",
        flux_diffusers_module_to_bfl,
        "FluxTransformer2DModel",
        ("lora_down", "lora_up"),
        # FLUX.1 single blocks: q, k, v of width dim, then the MLP (mlp_ratio 4, fixed in diffusers)
        {"img_attn.qkv": (1, 1, 1), "txt_attn.qkv": (1, 1, 1), "linear1": (1, 1, 1, 4)},
        _flux_refuse,
    ),
}


def _family(arch_family: str) -> _Family:
    """A key family (``'flux2'``: FLUX.2 dev/klein, ``'flux'``: FLUX.1), or any declared arch, whose
    `ArchSpec.lora_family` names its family."""
    from toolkit.arch_registry import UnknownArchError, get_arch

    if arch_family in _FAMILIES:
        return _FAMILIES[arch_family]
    try:
        return _FAMILIES[get_arch(arch_family).lora_family]
    except (UnknownArchError, KeyError):
        raise ValueError(
            f"unknown arch family '{arch_family}'; expected one of {', '.join(_FAMILIES)} or a declared arch"
        ) from None


def bfl_module_name(arch_family: str, module: str) -> str | None:
    """The BFL module holding diffusers ``module`` (``transformer_blocks.0.attn.to_q`` -> ``double_blocks.0.img_attn.qkv``),
    or None when it has none."""
    try:
        return _family(arch_family).to_bfl(module).module
    except KeyError:
        return None


def fold_factors(alpha: float, rank: int) -> tuple[float, float]:
    """``(a, b)`` with ``a * b == alpha / rank``: the factors folded into A and into B.

    ``b`` is the power of two nearest ``sqrt(alpha / rank)``; powers of two multiply exactly, so when the
    scale is a power of two (``alpha = rank``, ``rank / 4``...) both factors are and folding is lossless.
    """
    if alpha <= 0 or rank <= 0:
        raise ValueError(f"alpha and rank must be positive, got alpha={alpha}, rank={rank}")
    scale = alpha / rank
    b = 2.0 ** round(math.log2(scale) / 2)
    return scale / b, b


# ------------------------------------------------------------------------------------------ parsing


def _pairs(state_dict: StateDict, pattern: re.Pattern, what: str, hint: str) -> dict[str, dict[str, "Tensor"]]:
    """``{module: {"lora_A": A, "lora_B": B}}`` (kohya's down/up read as A/B); every key must match."""
    pairs: dict[str, dict[str, Tensor]] = {}
    for key, tensor in state_dict.items():
        match = pattern.match(key)
        if match is None:
            raise LoraFormatError(f"'{key}' is not a {what} LoRA key; {hint}")
        module, kind = match.groups()
        kind = {"lora_down": "lora_A", "lora_up": "lora_B"}.get(kind, kind)
        if tensor.ndim != 2:
            raise LoraFormatError(f"'{key}' has shape {tuple(tensor.shape)}; a linear LoRA weight is 2-D")
        pairs.setdefault(module, {})[kind] = tensor
    for module, pair in pairs.items():
        if len(pair) != 2:
            missing = "lora_B" if "lora_A" in pair else "lora_A"
            raise LoraFormatError(f"'{module}' has no {missing} weight")
        a, b = pair["lora_A"], pair["lora_B"]
        if a.shape[0] != b.shape[1]:
            raise LoraFormatError(f"'{module}': lora_A {tuple(a.shape)} and lora_B {tuple(b.shape)} disagree on rank")
    return pairs


def _peft_pairs(state_dict: StateDict, rank: int) -> dict[str, dict[str, "Tensor"]]:
    pairs = _pairs(
        state_dict,
        _PEFT_KEY,
        "PEFT",
        "expected '<module>.lora_A.weight' / '.lora_B.weight' relative to the transformer, as "
        "peft.get_peft_model_state_dict(transformer) returns them (no adapter name, no bias, no DoRA)",
    )
    for module, pair in pairs.items():
        if pair["lora_A"].shape[0] != rank:
            raise LoraFormatError(f"'{module}' has rank {pair['lora_A'].shape[0]}, expected rank {rank}")
    return pairs


def _strip_prefix(state_dict: StateDict, prefix: str, what: str) -> StateDict:
    wrong = [k for k in state_dict if not k.startswith(prefix)]
    if wrong:
        raise LoraFormatError(f"not a {what} LoRA: key '{wrong[0]}' does not start with '{prefix}'")
    return {k[len(prefix) :]: v for k, v in state_dict.items()}


def _fold(pair: dict[str, "Tensor"], factors: tuple[float, float], dtype) -> tuple["Tensor", "Tensor"]:
    """Scaled copies (never views of the live parameters), cast to ``dtype`` after scaling."""
    a, b = (pair["lora_A"].detach() * factors[0], pair["lora_B"].detach() * factors[1])
    return (a.to(dtype), b.to(dtype)) if dtype is not None else (a, b)


# ---------------------------------------------------------------------------------- name tables


@functools.lru_cache(maxsize=None)
def _bfl_parts(family_name: str) -> dict[str, tuple[tuple[int | None, str], ...]]:
    """BFL module (block index written as ``{}``) -> ``((slice index, diffusers module), ...)``.

    Derived from flux_keys' diffusers -> BFL mapping over the Linear modules of a one-block transformer built
    on the meta device, so the inverse always agrees with the forward names.
    """
    import diffusers
    import torch

    family = _FAMILIES[family_name]
    with torch.device("meta"):
        model = getattr(diffusers, family.model_class)(
            num_layers=1,
            num_single_layers=1,
            attention_head_dim=16,
            num_attention_heads=1,
            guidance_embeds=True,
        )
    table: dict[str, list[tuple[int | None, str]]] = {}
    for name, module in model.named_modules():
        if not isinstance(module, torch.nn.Linear):
            continue
        try:
            target = family.to_bfl(name)
        except KeyError:
            continue  # peft_to_comfy refuses such a module too
        table.setdefault(_any_block(target.module), []).append((target.index, _any_block(name)))
    return {bfl: tuple(sorted(parts, key=lambda p: -1 if p[0] is None else p[0])) for bfl, parts in table.items()}


def _any_block(name: str) -> str:
    """``double_blocks.0.img_attn.qkv`` -> ``double_blocks.{}.img_attn.qkv``; other names unchanged."""
    return re.sub(r"^(\w+)\.0\.", r"\1.{}.", name)


def _generic(bfl_module: str) -> tuple[str, str | None]:
    """``double_blocks.7.img_attn.qkv`` -> (``double_blocks.{}.img_attn.qkv``, ``'7'``)."""
    match = _BLOCK.match(bfl_module)
    if match is None:
        return bfl_module, None
    kind, idx, inner = match.groups()
    return f"{kind}.{{}}.{inner}", idx


def _inner(bfl_module: str) -> str:
    match = _BLOCK.match(bfl_module)
    return match.group(3) if match else bfl_module


# ------------------------------------------------------------------------------------------ comfy


def peft_to_comfy(state_dict: StateDict, alpha: float, rank: int, arch_family: str, *, dtype=None) -> StateDict:
    """PEFT LoRA of the diffusers transformer -> the comfy file's state dict (see module docstring).

    state_dict: ``{module}.lora_A.weight`` (rank, in) and ``{module}.lora_B.weight`` (out, rank), module names
        relative to the transformer (``transformer_blocks.0.attn.to_q``).
    alpha, rank: the LoRA's ``lora_alpha`` and ``r``; ``alpha / rank`` is folded into the weights.
    arch_family: ``'flux2'`` (dev, klein) or ``'flux'`` (FLUX.1), or an arch name of either family.
    dtype: cast the result to this dtype after folding (None keeps the input dtype).

    Returns ``diffusion_model.{bfl module}.{A}.weight`` (R, in) / ``.{B}.weight`` (out, R) with R = rank, or
    n * rank for a module BFL fuses from n diffusers modules. Raises :class:`LoraFormatError` for keys that are
    not PEFT LoRA keys, a rank other than ``rank``, or a module the file cannot carry (module docstring).
    """
    import torch

    family = _family(arch_family)
    factors = fold_factors(alpha, rank)
    fused: dict[str, dict[int, tuple[Tensor, Tensor]]] = {}
    out: StateDict = {}
    down, up = family.down_up
    for module, pair in _peft_pairs(state_dict, rank).items():
        try:
            target = family.to_bfl(module)
        except KeyError:
            raise LoraFormatError(f"'{module}' is not a {family.name} transformer module with a BFL name") from None
        why = family.refuse(module)
        if why is not None:
            raise LoraFormatError(
                f"cannot save a LoRA on '{module}' in the comfy format: {why}. Remove it from the LoRA targets "
                "or set save.format: diffusers"
            )
        a, b = _fold(pair, factors, dtype)
        if target.index is None:
            out[f"{COMFY_PREFIX}{target.module}.{down}.weight"] = a
            out[f"{COMFY_PREFIX}{target.module}.{up}.weight"] = b
        else:
            fused.setdefault(target.module, {})[target.index] = (a, b)

    for bfl_module, parts in fused.items():
        widths = _part_widths(family, bfl_module, parts)
        like = next(iter(parts.values()))[0]
        a_blocks = [parts[i][0] if i in parts else like.new_zeros((rank, like.shape[1])) for i in range(len(widths))]
        b_fused = like.new_zeros((sum(widths), rank * len(widths)))
        row = 0
        for i, width in enumerate(widths):
            if i in parts:
                b_fused[row : row + width, i * rank : (i + 1) * rank] = parts[i][1]
            row += width
        out[f"{COMFY_PREFIX}{bfl_module}.{down}.weight"] = torch.cat(a_blocks, dim=0)
        out[f"{COMFY_PREFIX}{bfl_module}.{up}.weight"] = b_fused
    return out


def _part_widths(family: _Family, bfl_module: str, parts: dict[int, tuple["Tensor", "Tensor"]]) -> list[int]:
    """Output widths of the diffusers parts of a fused BFL module; checked against the parts we have."""
    in_features = next(iter(parts.values()))[0].shape[1]
    widths = [ratio * in_features for ratio in family.fused_widths[_inner(bfl_module)]]
    for i, (_, b) in parts.items():
        if b.shape[0] != widths[i]:
            raise LoraFormatError(
                f"part {i} of '{bfl_module}' has {b.shape[0]} output rows; a {family.name} transformer has {widths[i]}"
            )
    return widths


def comfy_to_peft(
    state_dict: StateDict, arch_family: str, *, alpha: float | None = None
) -> tuple[StateDict, int, float]:
    """The comfy file's state dict -> ``(peft_state_dict, rank, alpha)``; the inverse of :func:`peft_to_comfy`.

    Reads ``lora_A``/``lora_B`` and ``lora_down``/``lora_up`` spellings. A fused module is split back along its
    block diagonal; a part whose A and B blocks are both zero had no LoRA and is left out. Raises
    :class:`LoraFormatError` when a fused module is not block diagonal (a LoRA trained on the fused BFL module,
    not by this toolkit: usable for sampling through diffusers, not for resuming), when ranks differ, or on keys
    that are not LoRA weights (``.alpha`` keys included: we never write them).

    alpha: the alpha the LoRA was trained with (from the file's header): the folded scale is divided out and
        ``alpha`` returned, giving the trained parameters back. None: weights stay folded and
        ``alpha = rank`` is returned, an equivalent LoRA (scale 1).
    """
    family = _family(arch_family)
    pairs = _pairs(
        _strip_prefix(state_dict, COMFY_PREFIX, "comfy"),
        _COMFY_KEY,
        "comfy",
        "expected 'diffusion_model.<BFL module>.lora_A.weight' (or lora_down) and '.lora_B.weight' (or lora_up)",
    )
    table = _bfl_parts(family.name)
    split: dict[str, tuple[Tensor, Tensor]] = {}
    ranks: set[int] = set()
    for bfl_module, pair in pairs.items():
        generic, idx = _generic(bfl_module)
        if generic not in table:
            raise LoraFormatError(f"'{bfl_module}' is not a {family.name} transformer module")
        targets = table[generic]
        why = family.refuse(targets[0][1].format(idx))
        if why is not None:
            raise LoraFormatError(f"'{bfl_module}' cannot be read back: {why}")
        a, b = pair["lora_A"], pair["lora_B"]
        if targets[0][0] is None:
            split[targets[0][1].format(idx)] = (a.clone(), b.clone())
            ranks.add(a.shape[0])
            continue
        for i, (part_a, part_b) in _unfuse(family, bfl_module, a, b).items():
            split[targets[i][1].format(idx)] = (part_a, part_b)
            ranks.add(part_a.shape[0])
    if len(ranks) != 1:
        raise LoraFormatError(f"the LoRA mixes ranks {sorted(ranks)}; this toolkit trains one rank for all modules")
    rank = ranks.pop()
    factors = fold_factors(alpha, rank) if alpha is not None else (1.0, 1.0)
    out: StateDict = {}
    for module, (a, b) in split.items():
        out[f"{module}.lora_A.weight"] = a / factors[0]
        out[f"{module}.lora_B.weight"] = b / factors[1]
    return out, rank, float(rank if alpha is None else alpha)


def _unfuse(family: _Family, bfl_module: str, a: "Tensor", b: "Tensor") -> dict[int, tuple["Tensor", "Tensor"]]:
    """Fused (n*r, in), (sum out_i, n*r) -> ``{i: (A_i, B_i)}`` for the parts that carry a LoRA."""
    ratios = family.fused_widths[_inner(bfl_module)]
    n = len(ratios)
    widths = [ratio * a.shape[1] for ratio in ratios]
    if a.shape[0] % n or b.shape[0] != sum(widths):
        raise LoraFormatError(
            f"'{bfl_module}': lora_A {tuple(a.shape)} / lora_B {tuple(b.shape)} do not split into {n} parts "
            f"of output widths {widths}"
        )
    r = a.shape[0] // n
    parts = {}
    row = 0
    for i, width in enumerate(widths):
        rows = slice(row, row + width)
        off_diagonal = b[rows].clone()
        off_diagonal[:, i * r : (i + 1) * r] = 0
        if off_diagonal.any():
            raise LoraFormatError(
                f"'{bfl_module}' is not block diagonal (part {i} reads other parts' rank slices): it was not "
                "written by this toolkit and cannot be split back into per-module LoRAs to resume training"
            )
        part_a = a[i * r : (i + 1) * r]
        part_b = b[rows, i * r : (i + 1) * r]
        if part_a.any() or part_b.any():
            parts[i] = (part_a.clone(), part_b.clone())
        row += width
    return parts


# ---------------------------------------------------------------------------------------- diffusers


def peft_to_diffusers(state_dict: StateDict, alpha: float, rank: int, *, dtype=None) -> StateDict:
    """PEFT LoRA -> ``transformer.{module}.lora_A.weight`` / ``.lora_B.weight`` (``save.format: diffusers``).

    The names ``pipe.save_lora_weights`` writes; ``alpha / rank`` folded as in :func:`peft_to_comfy`, so the file
    loads at the right strength without adapter metadata. Any transformer module is allowed.
    """
    factors = fold_factors(alpha, rank)
    out: StateDict = {}
    for module, pair in _peft_pairs(state_dict, rank).items():
        a, b = _fold(pair, factors, dtype)
        out[f"{DIFFUSERS_PREFIX}{module}.lora_A.weight"] = a
        out[f"{DIFFUSERS_PREFIX}{module}.lora_B.weight"] = b
    return out


def diffusers_to_peft(state_dict: StateDict, *, alpha: float | None = None) -> tuple[StateDict, int, float]:
    """Inverse of :func:`peft_to_diffusers` -> ``(peft_state_dict, rank, alpha)``.

    alpha: as in :func:`comfy_to_peft` (None keeps the scale folded and returns ``alpha = rank``).
    """
    pairs = _pairs(
        _strip_prefix(state_dict, DIFFUSERS_PREFIX, "diffusers"),
        _PEFT_KEY,
        "diffusers",
        "expected 'transformer.<module>.lora_A.weight' / '.lora_B.weight'",
    )
    ranks = {pair["lora_A"].shape[0] for pair in pairs.values()}
    if len(ranks) != 1:
        raise LoraFormatError(f"the LoRA mixes ranks {sorted(ranks)}; this toolkit trains one rank for all modules")
    rank = ranks.pop()
    factors = fold_factors(alpha, rank) if alpha is not None else (1.0, 1.0)
    out: StateDict = {}
    for module, pair in pairs.items():
        out[f"{module}.lora_A.weight"] = pair["lora_A"] / factors[0]
        out[f"{module}.lora_B.weight"] = pair["lora_B"] / factors[1]
    return out, rank, float(rank if alpha is None else alpha)


def to_peft(state_dict: StateDict, arch_family: str, *, alpha: float | None = None) -> tuple[StateDict, int, float]:
    """Either saved format -> ``(peft_state_dict, rank, alpha)``, told apart by the key prefix (for resume)."""
    if state_dict and all(k.startswith(COMFY_PREFIX) for k in state_dict):
        return comfy_to_peft(state_dict, arch_family, alpha=alpha)
    if state_dict and all(k.startswith(DIFFUSERS_PREFIX) for k in state_dict):
        return diffusers_to_peft(state_dict, alpha=alpha)
    first = next(iter(state_dict), None)
    raise LoraFormatError(
        f"not a LoRA saved by this toolkit: keys must all start with '{COMFY_PREFIX}' (comfy) or "
        f"'{DIFFUSERS_PREFIX}' (diffusers); found '{first}'"
    )
