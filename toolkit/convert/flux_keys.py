"""Key conversions between diffusers and Black Forest Labs (BFL) / LDM checkpoint layouts.

Pure functions on state dicts (``dict[str, Tensor] -> dict[str, Tensor]``); no I/O, no model objects
except where a config is needed to know the expected keys.

Direction diffusers -> BFL is what we write (ComfyUI and BFL's own code read BFL names); the direction
BFL -> diffusers is diffusers' own ``diffusers.loaders.single_file_utils`` converters, which we reuse
instead of rewriting. Each ``*_diffusers_to_bfl`` here is the exact inverse of the matching diffusers
converter; ``tests/convert/test_flux_keys.py`` proves the round trip bit for bit.

Transformer modules of block ``N``, diffusers -> BFL (``[i]``: slice i of a weight fused on dim 0):

* ``transformer_blocks.N.attn.to_{q,k,v}`` -> ``double_blocks.N.img_attn.qkv [0..2]``;
  ``attn.add_{q,k,v}_proj`` -> ``txt_attn.qkv [0..2]``; ``attn.to_out.0`` / ``attn.to_add_out`` ->
  ``img_attn.proj`` / ``txt_attn.proj``; ``attn.norm_{q,k}`` / ``attn.norm_added_{q,k}`` ->
  ``{img,txt}_attn.norm.{query,key}_norm`` (``.weight`` -> ``.scale``). Both families.
* FLUX.2: ``ff.linear_in`` / ``ff.linear_out`` (``ff_context.*``) -> ``img_mlp.0`` / ``img_mlp.2``
  (``txt_mlp.*``); ``single_transformer_blocks.N.attn.to_qkv_mlp_proj`` / ``attn.to_out`` ->
  ``single_blocks.N.linear1`` / ``linear2``; modulation is shared: ``double_stream_modulation_{img,txt}.lin``,
  ``single_stream_modulation.lin``.
* FLUX.1: ``ff.net.0.proj`` / ``ff.net.2`` -> ``img_mlp.0`` / ``img_mlp.2``; ``norm1(_context).linear`` ->
  ``{img,txt}_mod.lin``; single blocks: ``attn.to_{q,k,v}`` and ``proj_mlp`` -> ``linear1 [0..3]``,
  ``proj_out`` -> ``linear2``, ``norm.linear`` -> ``modulation.lin``.
* Both: ``norm_out.linear`` -> ``final_layer.adaLN_modulation.1`` with its halves swapped,
  ``proj_out`` -> ``final_layer.linear``, ``x_embedder`` -> ``img_in``, ``context_embedder`` -> ``txt_in``.

``flux2_diffusers_module_to_bfl`` / ``flux_diffusers_module_to_bfl`` return the BFL module, the slice
position and whether the halves are swapped, which is what LoRA conversion needs. RMSNorm weights are
called ``scale`` in BFL files. The final AdaLN projection stores (scale, shift) in diffusers and
(shift, scale) in BFL.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from torch import Tensor

StateDict = dict[str, "Tensor"]


class BflTarget(NamedTuple):
    """Where a diffusers module lives in a BFL checkpoint.

    module: BFL module name without parameter suffix, e.g. ``double_blocks.0.img_attn.qkv``.
    index: position of this module's output rows inside a fused BFL weight (0 for q, 1 for k...),
        ``None`` when the BFL module is not fused.
    count: number of diffusers modules fused into ``module`` (1 when not fused).
    swap_halves: the BFL weight holds this module's output rows with its two halves swapped
        (the final AdaLN projection: diffusers (scale, shift), BFL (shift, scale)); a LoRA B must be too.
    """

    module: str
    index: int | None
    count: int
    swap_halves: bool = False


# (diffusers module inside the block) -> (BFL module inside the block, slice index or None)
_FLUX2_DOUBLE = {
    "attn.to_q": ("img_attn.qkv", 0),
    "attn.to_k": ("img_attn.qkv", 1),
    "attn.to_v": ("img_attn.qkv", 2),
    "attn.add_q_proj": ("txt_attn.qkv", 0),
    "attn.add_k_proj": ("txt_attn.qkv", 1),
    "attn.add_v_proj": ("txt_attn.qkv", 2),
    "attn.to_out.0": ("img_attn.proj", None),
    "attn.to_add_out": ("txt_attn.proj", None),
    "attn.norm_q": ("img_attn.norm.query_norm", None),
    "attn.norm_k": ("img_attn.norm.key_norm", None),
    "attn.norm_added_q": ("txt_attn.norm.query_norm", None),
    "attn.norm_added_k": ("txt_attn.norm.key_norm", None),
    "ff.linear_in": ("img_mlp.0", None),
    "ff.linear_out": ("img_mlp.2", None),
    "ff_context.linear_in": ("txt_mlp.0", None),
    "ff_context.linear_out": ("txt_mlp.2", None),
}
_FLUX2_SINGLE = {
    "attn.to_qkv_mlp_proj": ("linear1", None),
    "attn.to_out": ("linear2", None),
    "attn.norm_q": ("norm.query_norm", None),
    "attn.norm_k": ("norm.key_norm", None),
}
_FLUX2_GLOBAL = {
    "x_embedder": "img_in",
    "context_embedder": "txt_in",
    "time_guidance_embed.timestep_embedder.linear_1": "time_in.in_layer",
    "time_guidance_embed.timestep_embedder.linear_2": "time_in.out_layer",
    "time_guidance_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
    "time_guidance_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
    "double_stream_modulation_img.linear": "double_stream_modulation_img.lin",
    "double_stream_modulation_txt.linear": "double_stream_modulation_txt.lin",
    "single_stream_modulation.linear": "single_stream_modulation.lin",
    "proj_out": "final_layer.linear",
    "norm_out.linear": "final_layer.adaLN_modulation.1",
}

_FLUX_DOUBLE = {
    **{k: v for k, v in _FLUX2_DOUBLE.items() if not k.startswith("ff")},
    "norm1.linear": ("img_mod.lin", None),
    "norm1_context.linear": ("txt_mod.lin", None),
    "ff.net.0.proj": ("img_mlp.0", None),
    "ff.net.2": ("img_mlp.2", None),
    "ff_context.net.0.proj": ("txt_mlp.0", None),
    "ff_context.net.2": ("txt_mlp.2", None),
}
_FLUX_SINGLE = {
    "attn.to_q": ("linear1", 0),
    "attn.to_k": ("linear1", 1),
    "attn.to_v": ("linear1", 2),
    "proj_mlp": ("linear1", 3),
    "proj_out": ("linear2", None),
    "norm.linear": ("modulation.lin", None),
    "attn.norm_q": ("norm.query_norm", None),
    "attn.norm_k": ("norm.key_norm", None),
}
_FLUX_GLOBAL = {
    "x_embedder": "img_in",
    "context_embedder": "txt_in",
    "time_text_embed.timestep_embedder.linear_1": "time_in.in_layer",
    "time_text_embed.timestep_embedder.linear_2": "time_in.out_layer",
    "time_text_embed.guidance_embedder.linear_1": "guidance_in.in_layer",
    "time_text_embed.guidance_embedder.linear_2": "guidance_in.out_layer",
    "time_text_embed.text_embedder.linear_1": "vector_in.in_layer",
    "time_text_embed.text_embedder.linear_2": "vector_in.out_layer",
    "proj_out": "final_layer.linear",
    "norm_out.linear": "final_layer.adaLN_modulation.1",
}

# BFL's final AdaLN projection; its output halves are swapped relative to diffusers.
_SWAPPED_MODULE = "final_layer.adaLN_modulation.1"
_BLOCK_RE = re.compile(r"^(transformer_blocks|single_transformer_blocks)\.(\d+)\.(.+)$")
_BFL_BLOCK = {"transformer_blocks": "double_blocks", "single_transformer_blocks": "single_blocks"}


def _module_to_bfl(name: str, double: dict, single: dict, glob: dict) -> BflTarget:
    match = _BLOCK_RE.match(name)
    if match is None:
        if name not in glob:
            raise KeyError(f"no BFL name for diffusers module '{name}'")
        return BflTarget(glob[name], None, 1, glob[name] == _SWAPPED_MODULE)
    kind, idx, inner = match.groups()
    table = double if kind == "transformer_blocks" else single
    if inner not in table:
        raise KeyError(f"no BFL name for diffusers module '{name}'")
    bfl_inner, index = table[inner]
    count = sum(1 for target, _ in table.values() if target == bfl_inner)
    return BflTarget(f"{_BFL_BLOCK[kind]}.{idx}.{bfl_inner}", index, count)


def flux2_diffusers_module_to_bfl(name: str) -> BflTarget:
    """FLUX.2 diffusers module name -> its BFL module (and slice position if fused).

    ``transformer_blocks.0.attn.to_k`` -> ``BflTarget("double_blocks.0.img_attn.qkv", 1, 3)``.
    Raises KeyError for a name that is not a FLUX.2 transformer module.
    """
    return _module_to_bfl(name, _FLUX2_DOUBLE, _FLUX2_SINGLE, _FLUX2_GLOBAL)


def flux_diffusers_module_to_bfl(name: str) -> BflTarget:
    """FLUX.1 diffusers module name -> its BFL module (and slice position if fused).

    ``single_transformer_blocks.3.proj_mlp`` -> ``BflTarget("single_blocks.3.linear1", 3, 4)``.
    Raises KeyError for a name that is not a FLUX.1 transformer module.
    """
    return _module_to_bfl(name, _FLUX_DOUBLE, _FLUX_SINGLE, _FLUX_GLOBAL)


def _swap_halves(t: Tensor) -> Tensor:
    import torch

    first, second = t.chunk(2, dim=0)
    return torch.cat([second, first], dim=0)


def _transformer_to_bfl(sd: StateDict, module_to_bfl) -> StateDict:
    import torch

    out: StateDict = {}
    fused: dict[str, dict[int, Tensor]] = {}
    fused_count: dict[str, int] = {}
    unknown = []
    for key, tensor in sd.items():
        module, param = key.rsplit(".", 1)
        try:
            target = module_to_bfl(module)
        except KeyError:
            unknown.append(key)
            continue
        # BFL's RMSNorm parameter is called "scale"; every other parameter keeps its name.
        bfl_param = "scale" if param == "weight" and target.module.endswith("_norm") else param
        bfl_key = f"{target.module}.{bfl_param}"
        if target.swap_halves:
            tensor = _swap_halves(tensor)
        if target.index is None:
            out[bfl_key] = tensor
        else:
            fused.setdefault(bfl_key, {})[target.index] = tensor
            fused_count[bfl_key] = target.count
    if unknown:
        raise ValueError(f"not a transformer state dict of this architecture; unknown keys: {sorted(unknown)}")
    for bfl_key, parts in fused.items():
        if sorted(parts) != list(range(fused_count[bfl_key])):
            raise ValueError(f"incomplete fused weight {bfl_key}: have slices {sorted(parts)}")
        out[bfl_key] = torch.cat([parts[i] for i in range(len(parts))], dim=0)
    return out


def flux2_transformer_diffusers_to_bfl(sd: StateDict) -> StateDict:
    """diffusers ``Flux2Transformer2DModel`` state dict -> BFL single-file names (no prefix).

    Exact inverse of ``convert_flux2_transformer_checkpoint_to_diffusers``. ``guidance_in.*`` appears only
    when the model has a guidance embedder (FLUX.2-dev; klein has none). Tensors are not copied except
    where fused or swapped. Raises ValueError on keys that are not FLUX.2 transformer keys.
    """
    return _transformer_to_bfl(sd, flux2_diffusers_module_to_bfl)


def flux_transformer_diffusers_to_bfl(sd: StateDict) -> StateDict:
    """diffusers ``FluxTransformer2DModel`` (FLUX.1) state dict -> BFL single-file names (no prefix).

    Exact inverse of ``convert_flux_transformer_checkpoint_to_diffusers``: q/k/v fused per stream,
    single-block ``linear1`` = [q, k, v, proj_mlp] on dim 0, final AdaLN halves swapped back.
    ``guidance_in.*`` only for dev (schnell has none).
    """
    return _transformer_to_bfl(sd, flux_diffusers_module_to_bfl)


# diffusers hard-codes FLUX.1's real widths when splitting single-block linear1.
_FLUX_REAL_INNER = 3072
_FLUX_REAL_MLP = 4 * _FLUX_REAL_INNER


def flux_transformer_bfl_to_diffusers(sd: StateDict) -> StateDict:
    """BFL FLUX.1 transformer state dict -> diffusers, for any model width.

    Runs diffusers' ``convert_flux_transformer_checkpoint_to_diffusers``. That function splits
    ``single_blocks.N.linear1`` with the real FLUX.1 sizes (3072, 3072, 3072, 12288) written into its
    body, so it fails on narrower models (our tiny test models). For those we place each slice at the
    offset diffusers expects in a zero-padded copy, convert, and crop the results back: the real-size
    path is untouched and the mapping stays diffusers' own. The input dict is not modified.
    """
    from diffusers.loaders.single_file_utils import convert_flux_transformer_checkpoint_to_diffusers

    sd = {k.removeprefix("model.diffusion_model."): v for k, v in sd.items()}
    inner = sd["img_in.weight"].shape[0]
    linear1 = [k for k in sd if re.fullmatch(r"single_blocks\.\d+\.linear1\.(weight|bias)", k)]
    mlp = sd[linear1[0]].shape[0] - 3 * inner if linear1 else _FLUX_REAL_MLP
    if inner == _FLUX_REAL_INNER and mlp == _FLUX_REAL_MLP:
        return convert_flux_transformer_checkpoint_to_diffusers(sd)
    if inner > _FLUX_REAL_INNER or mlp > _FLUX_REAL_MLP:
        raise ValueError(f"FLUX.1 transformer wider than the real model (inner {inner}, mlp {mlp})")

    real_sizes = (_FLUX_REAL_INNER,) * 3 + (_FLUX_REAL_MLP,)
    sizes = (inner,) * 3 + (mlp,)
    for key in linear1:
        tensor = sd[key]
        padded = tensor.new_zeros((sum(real_sizes), *tensor.shape[1:]))
        src = dst = 0
        for size, real in zip(sizes, real_sizes):
            padded[dst : dst + size] = tensor[src : src + size]
            src, dst = src + size, dst + real
        sd[key] = padded
    out = convert_flux_transformer_checkpoint_to_diffusers(sd)
    crop = {"attn.to_q": inner, "attn.to_k": inner, "attn.to_v": inner, "proj_mlp": mlp}
    for key in list(out):
        match = _BLOCK_RE.match(key)
        if match and match.group(1) == "single_transformer_blocks":
            module = match.group(3).rsplit(".", 1)[0]
            if module in crop:
                out[key] = out[key][: crop[module]].clone()
    return out


# ---------------------------------------------------------------------------------------------- VAE

_VAE_RESNET_RE = re.compile(r"^(encoder|decoder)\.(down|up)_blocks\.(\d+)\.resnets\.(\d+)\.(.+)$")
_VAE_SAMPLER_RE = re.compile(r"^(encoder|decoder)\.(down|up)_blocks\.(\d+)\.(down|up)samplers\.0\.conv\.(.+)$")
_VAE_MID_RESNET_RE = re.compile(r"^(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)$")
_VAE_MID_ATTN_RE = re.compile(r"^(encoder|decoder)\.mid_block\.attentions\.0\.([a-z_]+(?:\.0)?)\.(weight|bias)$")
_VAE_ATTN_NAMES = {"group_norm": "norm", "to_q": "q", "to_k": "k", "to_v": "v", "to_out.0": "proj_out"}
_VAE_TOP = {
    "encoder.conv_in": "encoder.conv_in",
    "encoder.conv_out": "encoder.conv_out",
    "encoder.conv_norm_out": "encoder.norm_out",
    "decoder.conv_in": "decoder.conv_in",
    "decoder.conv_out": "decoder.conv_out",
    "decoder.conv_norm_out": "decoder.norm_out",
}


def _vae_key_to_ldm(key: str, tensor: Tensor, num_up: int, flux2: bool) -> tuple[str, Tensor] | None:
    """One diffusers VAE key -> (LDM key, tensor); None for keys LDM files do not store."""
    module, param = key.rsplit(".", 1)
    if module in _VAE_TOP:
        return f"{_VAE_TOP[module]}.{param}", tensor
    if module in ("quant_conv", "post_quant_conv"):
        # BFL's FLUX.2 autoencoder keeps these convs inside encoder/decoder; SD-style LDM at the root.
        where = "encoder" if module == "quant_conv" else "decoder"
        return (f"{where}.{module}.{param}" if flux2 else key), tensor
    if module == "bn":
        return None if param == "num_batches_tracked" else (key, tensor)
    if m := _VAE_RESNET_RE.match(key):
        part, kind, i, j, rest = m.groups()
        i = int(i) if kind == "down" else num_up - 1 - int(i)  # LDM numbers decoder levels bottom-up
        return f"{part}.{kind}.{i}.block.{j}.{rest.replace('conv_shortcut', 'nin_shortcut')}", tensor
    if m := _VAE_SAMPLER_RE.match(key):
        part, kind, i, _, param = m.groups()
        i = int(i) if kind == "down" else num_up - 1 - int(i)
        return f"{part}.{kind}.{i}.{kind}sample.conv.{param}", tensor
    if m := _VAE_MID_RESNET_RE.match(key):
        part, j, rest = m.groups()
        return f"{part}.mid.block_{int(j) + 1}.{rest}", tensor
    if (m := _VAE_MID_ATTN_RE.match(key)) and m.group(2) in _VAE_ATTN_NAMES:
        part, name, param = m.groups()
        if param == "weight" and name != "group_norm":
            tensor = tensor.reshape(*tensor.shape, 1, 1)  # LDM attention uses 1x1 convs
        return f"{part}.mid.attn_1.{_VAE_ATTN_NAMES[name]}.{param}", tensor
    raise ValueError(f"unknown diffusers VAE key '{key}'")


def vae_diffusers_to_ldm(sd: StateDict) -> StateDict:
    """diffusers ``AutoencoderKL`` / ``AutoencoderKLFlux2`` state dict -> LDM/BFL ``ae.safetensors`` names.

    Inverse of diffusers' ``convert_ldm_vae_checkpoint`` (plus, for FLUX.2, of
    ``flux2_vae_ldm_to_diffusers``). A state dict with ``bn.running_mean`` is a FLUX.2 VAE: its
    ``quant_conv``/``post_quant_conv`` become ``encoder.quant_conv``/``decoder.post_quant_conv`` and its
    batch-norm statistics stay ``bn.running_mean``/``bn.running_var`` (``num_batches_tracked`` dropped).
    Mid-block attention linears (out, in) become 1x1 conv weights (out, in, 1, 1).
    """
    flux2 = "bn.running_mean" in sd
    up_levels = {int(m.group(1)) for k in sd if (m := re.match(r"^decoder\.up_blocks\.(\d+)\.", k))}
    num_up = max(up_levels) + 1 if up_levels else 0
    out: StateDict = {}
    for key, tensor in sd.items():
        converted = _vae_key_to_ldm(key, tensor, num_up, flux2)
        if converted is not None:
            out[converted[0]] = converted[1]
    return out


def flux2_vae_ldm_to_diffusers(sd: StateDict, config: dict) -> StateDict:
    """BFL FLUX.2 ``ae.safetensors`` state dict -> diffusers ``AutoencoderKLFlux2`` state dict.

    diffusers 0.42 has no single-file loader for this VAE. We move the FLUX.2-specific keys
    (``encoder.quant_conv`` -> ``quant_conv``, ``decoder.post_quant_conv`` -> ``post_quant_conv``, ``bn.*``)
    and hand the rest to diffusers' ``convert_ldm_vae_checkpoint(checkpoint, config)``.
    ``bn.num_batches_tracked`` (absent from BFL files) is set to 0 as in a fresh model, so the result loads
    with ``strict=True``; it never affects inference (the statistics are frozen).

    config: the diffusers VAE config (``vae/config.json`` as a dict); it fixes the expected key set.
    Raises ValueError naming missing and unexpected keys when ``sd`` is not a FLUX.2 VAE of that config.
    """
    import torch
    from diffusers import AutoencoderKLFlux2
    from diffusers.loaders.single_file_utils import convert_ldm_vae_checkpoint

    moved = {"encoder.quant_conv.": "quant_conv.", "decoder.post_quant_conv.": "post_quant_conv."}
    ldm: StateDict = {}
    extra: StateDict = {}
    for key, tensor in sd.items():
        prefix = next((p for p in moved if key.startswith(p)), None)
        if prefix is not None:
            ldm[moved[prefix] + key[len(prefix) :]] = tensor
        elif key.startswith("bn."):
            extra[key] = tensor
        else:
            ldm[key] = tensor
    out = convert_ldm_vae_checkpoint(ldm, dict(config))
    out.update(extra)
    out.setdefault("bn.num_batches_tracked", torch.tensor(0, dtype=torch.long))

    with torch.device("meta"):
        expected = {k: v.shape for k, v in AutoencoderKLFlux2.from_config(dict(config)).state_dict().items()}
    # convert_ldm_vae_checkpoint silently skips keys it does not know; find them by mapping back.
    known = set(vae_diffusers_to_ldm({k: v for k, v in out.items() if k in expected}))
    unexpected = sorted(set(sd) - known - {"bn.num_batches_tracked"}) + sorted(set(out) - set(expected))
    missing = sorted(set(expected) - set(out))
    wrong = sorted(
        f"{k} {tuple(out[k].shape)} != {tuple(shape)}"
        for k, shape in expected.items()
        if k in out and out[k].shape != shape
    )
    if missing or unexpected or wrong:
        raise ValueError(
            "not a FLUX.2 VAE (ae.safetensors) matching this config: "
            f"missing {len(missing)} keys {missing[:8]}, unexpected {len(unexpected)} keys {unexpected[:8]}, "
            f"wrong shapes {wrong[:8]}"
        )
    return out
