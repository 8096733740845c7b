"""diffusers <-> BFL/LDM key conversions: exact round trips through diffusers' own converters."""

from __future__ import annotations

import pytest
import torch
from diffusers.loaders.single_file_utils import (
    convert_flux2_transformer_checkpoint_to_diffusers,
    convert_flux_transformer_checkpoint_to_diffusers,
    convert_ldm_vae_checkpoint,
)

from toolkit.convert.flux_keys import (
    BflTarget,
    flux2_diffusers_module_to_bfl,
    flux2_transformer_diffusers_to_bfl,
    flux2_vae_ldm_to_diffusers,
    flux_diffusers_module_to_bfl,
    flux_transformer_bfl_to_diffusers,
    flux_transformer_diffusers_to_bfl,
    vae_diffusers_to_ldm,
)
from toolkit.tiny import build_tiny_pipeline

pytestmark = pytest.mark.slow  # end-to-end: builds / loads tiny models or runs jobs (see pyproject.toml)

FLUX2_ARCHS = ["flux2", "flux2_klein_4b", "flux2_klein_9b"]
FLUX_ARCHS = ["flux", "flux-schnell"]


@pytest.fixture(scope="module")
def pipes():
    cache = {}

    def get(arch):
        if arch not in cache:
            cache[arch] = build_tiny_pipeline(arch, seed=3)
        return cache[arch]

    return get


def assert_same(got: dict, want: dict):
    assert set(got) == set(want), f"missing {sorted(set(want) - set(got))}, extra {sorted(set(got) - set(want))}"
    for key, tensor in want.items():
        assert torch.equal(got[key], tensor), key


# ------------------------------------------------------------------------------------ transformers


@pytest.mark.parametrize("arch", FLUX2_ARCHS)
def test_flux2_transformer_round_trip(pipes, arch):
    sd = pipes(arch).transformer.state_dict()
    bfl = flux2_transformer_diffusers_to_bfl(sd)
    assert ("guidance_in.in_layer.weight" in bfl) == (arch == "flux2")
    q_rows = sd["transformer_blocks.1.attn.to_q.weight"].shape[0]
    assert bfl["double_blocks.1.img_attn.qkv.weight"].shape[0] == 3 * q_rows
    assert "single_blocks.1.norm.key_norm.scale" in bfl
    assert_same(convert_flux2_transformer_checkpoint_to_diffusers(dict(bfl)), sd)


@pytest.mark.parametrize("arch", FLUX_ARCHS)
def test_flux_transformer_round_trip(pipes, arch):
    sd = pipes(arch).transformer.state_dict()
    bfl = flux_transformer_diffusers_to_bfl(sd)
    assert ("guidance_in.in_layer.weight" in bfl) == (arch == "flux")
    assert {
        "vector_in.in_layer.weight",
        "double_blocks.0.img_mod.lin.bias",
        "single_blocks.1.modulation.lin.weight",
    } <= set(bfl)
    snapshot = {k: v.clone() for k, v in bfl.items()}
    assert_same(flux_transformer_bfl_to_diffusers(bfl), sd)
    assert_same(bfl, snapshot)  # the input is left alone


def test_final_layer_halves_are_swapped(pipes):
    for arch, to_bfl in (("flux2", flux2_transformer_diffusers_to_bfl), ("flux", flux_transformer_diffusers_to_bfl)):
        sd = pipes(arch).transformer.state_dict()
        scale, shift = sd["norm_out.linear.weight"].chunk(2)
        assert torch.equal(to_bfl(sd)["final_layer.adaLN_modulation.1.weight"], torch.cat([shift, scale]))


def real_size_state_dict(cls, **config):
    with torch.device("meta"):
        return cls(**config).state_dict()


def shapes(sd):
    return {k: tuple(v.shape) for k, v in sd.items()}


def test_real_sizes_round_trip_on_meta_tensors():
    """Keys and shapes at the released widths (meta tensors: no memory), where diffusers' own split applies."""
    from diffusers import Flux2Transformer2DModel, FluxTransformer2DModel

    flux2 = real_size_state_dict(Flux2Transformer2DModel)  # the defaults are FLUX.2-dev's config
    back = convert_flux2_transformer_checkpoint_to_diffusers(flux2_transformer_diffusers_to_bfl(flux2))
    assert shapes(back) == shapes(flux2)
    flux = real_size_state_dict(
        FluxTransformer2DModel,
        in_channels=64,
        num_layers=19,
        num_single_layers=38,
        attention_head_dim=128,
        num_attention_heads=24,
        joint_attention_dim=4096,
        pooled_projection_dim=768,
        guidance_embeds=True,
        axes_dims_rope=(16, 56, 56),
    )
    bfl = flux_transformer_diffusers_to_bfl(flux)
    assert bfl["single_blocks.0.linear1.weight"].shape == (3 * 3072 + 12288, 3072)
    assert shapes(flux_transformer_bfl_to_diffusers(bfl)) == shapes(flux)
    assert shapes(convert_flux_transformer_checkpoint_to_diffusers(dict(bfl))) == shapes(flux)


def test_diffusers_flux1_converter_only_takes_the_real_width(pipes):
    """Why flux_transformer_bfl_to_diffusers exists: diffusers 0.42 hard-codes FLUX.1's 3072 width.

    If this starts passing through, diffusers handles narrow models itself and the padding shim can go.
    """
    bfl = flux_transformer_diffusers_to_bfl(pipes("flux").transformer.state_dict())
    with pytest.raises(RuntimeError, match="split"):
        convert_flux_transformer_checkpoint_to_diffusers(bfl)


def test_unknown_transformer_key_is_an_error(pipes):
    sd = dict(pipes("flux2").transformer.state_dict())
    sd["transformer_blocks.0.attn.to_q.lora_A.weight"] = torch.zeros(4, 4)
    with pytest.raises(ValueError, match="lora_A"):
        flux2_transformer_diffusers_to_bfl(sd)
    with pytest.raises(ValueError, match="unknown keys"):
        flux_transformer_diffusers_to_bfl(pipes("flux2").transformer.state_dict())


# ------------------------------------------------------------------------------------ module names

F2, F1 = flux2_diffusers_module_to_bfl, flux_diffusers_module_to_bfl
MODULE_EXAMPLES = [
    (F2, "transformer_blocks.0.attn.to_q", ("double_blocks.0.img_attn.qkv", 0, 3)),
    (F2, "transformer_blocks.7.attn.add_v_proj", ("double_blocks.7.txt_attn.qkv", 2, 3)),
    (F2, "transformer_blocks.1.ff_context.linear_out", ("double_blocks.1.txt_mlp.2", None, 1)),
    (F2, "single_transformer_blocks.12.attn.to_qkv_mlp_proj", ("single_blocks.12.linear1", None, 1)),
    (F2, "double_stream_modulation_img.linear", ("double_stream_modulation_img.lin", None, 1)),
    (F2, "norm_out.linear", ("final_layer.adaLN_modulation.1", None, 1, True)),
    (F1, "single_transformer_blocks.3.proj_mlp", ("single_blocks.3.linear1", 3, 4)),
    (F1, "single_transformer_blocks.3.proj_out", ("single_blocks.3.linear2", None, 1)),
    (F1, "transformer_blocks.2.norm1_context.linear", ("double_blocks.2.txt_mod.lin", None, 1)),
    (F1, "proj_out", ("final_layer.linear", None, 1)),
]


@pytest.mark.parametrize("to_bfl, name, want", MODULE_EXAMPLES)
def test_module_name_examples(to_bfl, name, want):
    assert to_bfl(name) == BflTarget(*want)


def test_unknown_module_name_is_a_key_error():
    with pytest.raises(KeyError):
        flux2_diffusers_module_to_bfl("transformer_blocks.0.ff.net.0.proj")  # a FLUX.1 name
    with pytest.raises(KeyError):
        flux_diffusers_module_to_bfl("single_transformer_blocks.0.attn.to_qkv_mlp_proj")  # a FLUX.2 name


@pytest.mark.parametrize(
    "arch, to_bfl, module_to_bfl",
    [
        ("flux2", flux2_transformer_diffusers_to_bfl, flux2_diffusers_module_to_bfl),
        ("flux", flux_transformer_diffusers_to_bfl, flux_diffusers_module_to_bfl),
    ],
)
def test_every_linear_is_its_slice_of_the_bfl_weight(pipes, arch, to_bfl, module_to_bfl):
    """What LoRA conversion relies on: module -> (fused BFL module, position) locates the exact rows."""
    transformer = pipes(arch).transformer
    bfl = to_bfl(transformer.state_dict())
    linears = {n: m for n, m in transformer.named_modules() if isinstance(m, torch.nn.Linear)}
    targets = {n: module_to_bfl(n) for n in linears}
    for name, target in targets.items():
        fused = bfl[f"{target.module}.weight"]
        if target.swap_halves:
            fused = torch.cat(fused.chunk(2)[::-1])
        if target.index is None:
            assert torch.equal(fused, linears[name].weight), name
            continue
        parts = sorted((t.index, linears[n].out_features) for n, t in targets.items() if t.module == target.module)
        assert [i for i, _ in parts] == list(range(target.count)), name
        start = sum(size for i, size in parts if i < target.index)
        assert torch.equal(fused[start : start + linears[name].out_features], linears[name].weight), name


# --------------------------------------------------------------------------------------------- VAE


def test_flux2_vae_round_trip(pipes):
    vae = pipes("flux2").vae
    sd = vae.state_dict()
    ldm = vae_diffusers_to_ldm(sd)
    assert {"encoder.quant_conv.weight", "decoder.post_quant_conv.bias", "bn.running_mean", "bn.running_var"} <= set(
        ldm
    )
    assert not any(k.startswith(("quant_conv", "post_quant_conv")) or "num_batches" in k for k in ldm)
    assert ldm["encoder.mid.attn_1.q.weight"].shape == (*sd["encoder.mid_block.attentions.0.to_q.weight"].shape, 1, 1)
    assert_same(flux2_vae_ldm_to_diffusers(ldm, dict(vae.config)), sd)


def test_vae_decoder_levels_are_reversed(pipes):
    sd = pipes("flux2").vae.state_dict()
    ldm = vae_diffusers_to_ldm(sd)
    last = len(pipes("flux2").vae.config.block_out_channels) - 1
    up_first = sd["decoder.up_blocks.0.upsamplers.0.conv.weight"]
    up_last = sd[f"decoder.up_blocks.{last}.resnets.1.conv2.weight"]
    assert torch.equal(ldm[f"decoder.up.{last}.upsample.conv.weight"], up_first)
    assert torch.equal(ldm["decoder.up.0.block.1.conv2.weight"], up_last)


@pytest.mark.parametrize("arch", FLUX_ARCHS)
def test_flux_vae_round_trip(pipes, arch):
    vae = pipes(arch).vae
    sd = vae.state_dict()
    ldm = vae_diffusers_to_ldm(sd)
    assert not any("quant_conv" in k or k.startswith("bn.") for k in ldm)
    assert "encoder.norm_out.weight" in ldm and "decoder.up.0.block.0.norm1.weight" in ldm
    assert_same(convert_ldm_vae_checkpoint(ldm, dict(vae.config)), sd)


def test_flux2_vae_rejects_other_files(pipes):
    config = dict(pipes("flux2").vae.config)
    flux1_ae = vae_diffusers_to_ldm(pipes("flux").vae.state_dict())
    with pytest.raises(ValueError, match=r"not a FLUX.2 VAE.*missing .*bn\.running_mean"):
        flux2_vae_ldm_to_diffusers(flux1_ae, config)
    flux2_ae = vae_diffusers_to_ldm(pipes("flux2").vae.state_dict())
    with pytest.raises(ValueError, match="unexpected 1 keys.*decoder.extra.weight"):
        flux2_vae_ldm_to_diffusers({**flux2_ae, "decoder.extra.weight": torch.zeros(1)}, config)
    transformer = flux2_transformer_diffusers_to_bfl(pipes("flux2").transformer.state_dict())
    with pytest.raises(ValueError, match="not a FLUX.2 VAE"):
        flux2_vae_ldm_to_diffusers(transformer, config)
