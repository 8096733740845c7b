"""The saved LoRA is the trained LoRA: PEFT <-> comfy/diffusers files, proven on tiny random transformers.

For each architecture a PEFT LoRA with random non-zero weights is put on every Linear inside the blocks and
the transformer's output recorded. The comfy file must then (a) load through ``pipe.load_lora_weights`` into a
fresh pipeline with no key ignored and the same output, (b) give the same output when merged into the BFL
checkpoint the way ComfyUI patches weights (W += up @ down), (c) name only modules of the BFL checkpoint, and
(d) convert back to the exact PEFT tensors.
"""

from __future__ import annotations

import contextlib
import logging
import re

import pytest
import torch
from diffusers import Flux2Pipeline, FluxPipeline
from diffusers.loaders.single_file_utils import convert_flux2_transformer_checkpoint_to_diffusers
from peft import LoraConfig, get_peft_model_state_dict
from safetensors.torch import save_file

from toolkit.convert.flux_keys import (
    flux2_transformer_diffusers_to_bfl,
    flux_transformer_bfl_to_diffusers,
    flux_transformer_diffusers_to_bfl,
)
from toolkit.lora_format import (
    LoraFormatError,
    comfy_to_peft,
    diffusers_to_peft,
    fold_factors,
    peft_to_comfy,
    peft_to_diffusers,
    to_peft,
)
from toolkit.tiny import build_tiny_pipeline

pytestmark = pytest.mark.slow  # end-to-end: builds / loads tiny models or runs jobs (see pyproject.toml)

FAMILY = {"flux2": "flux2", "flux2_klein_4b": "flux2", "flux2_klein_9b": "flux2", "flux": "flux"}
ARCHS = list(FAMILY)
RANK = 4
ALPHA = 3.0  # scale 0.75: not a power of two, so folding really multiplies
ATOL = 1e-5
# diffusers 0.42 splits a FLUX.1 linear1 LoRA with the real model's widths (3072, 3072, 3072, 12288) written
# into its converter, so the tiny FLUX.1 cannot carry these through load_lora_weights; they are covered by the
# ComfyUI-style merge below and by test_flux1_linear1_at_real_width_converts_exactly.
FLUX1_LINEAR1 = re.compile(r"^single_transformer_blocks\.\d+\.(attn\.to_[qkv]|proj_mlp)$")


def block_linears(transformer) -> list[str]:
    return [
        name
        for name, module in transformer.named_modules()
        if isinstance(module, torch.nn.Linear)
        and name.startswith(("transformer_blocks.", "single_transformer_blocks."))
    ]


def add_lora(transformer, targets, seed=1) -> dict[str, torch.Tensor]:
    """PEFT LoRA (RANK, ALPHA) on `targets` with random A and non-zero B; returns its PEFT state dict."""
    transformer.add_adapter(LoraConfig(r=RANK, lora_alpha=ALPHA, target_modules=targets))
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in transformer.named_parameters():
            if ".lora_" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.2)
    return get_peft_model_state_dict(transformer)


def transformer_inputs(arch, transformer, seed=0) -> dict:
    """Packed inputs for one 4x4-token image and 8 text tokens."""
    generator = torch.Generator().manual_seed(seed)
    config = transformer.config
    guidance = torch.tensor([3.5]) if config.guidance_embeds else None
    if FAMILY[arch] == "flux2":
        text = torch.randn(1, 8, config.joint_attention_dim, generator=generator)
        return dict(
            hidden_states=torch.randn(1, 16, config.in_channels, generator=generator),
            encoder_hidden_states=text,
            timestep=torch.tensor([0.6]),
            guidance=guidance,
            img_ids=Flux2Pipeline._prepare_latent_ids(torch.zeros(1, config.in_channels, 4, 4)),
            txt_ids=Flux2Pipeline._prepare_text_ids(text),
        )
    return dict(
        hidden_states=torch.randn(1, 16, config.in_channels, generator=generator),
        encoder_hidden_states=torch.randn(1, 8, config.joint_attention_dim, generator=generator),
        pooled_projections=torch.randn(1, config.pooled_projection_dim, generator=generator),
        timestep=torch.tensor([0.6]),
        guidance=guidance,
        img_ids=FluxPipeline._prepare_latent_image_ids(1, 4, 4, "cpu", torch.float32),
        txt_ids=torch.zeros(8, 3),
    )


@torch.no_grad()
def run(transformer, inputs) -> torch.Tensor:
    return transformer(**inputs, return_dict=False)[0]


@contextlib.contextmanager
def diffusers_warnings():
    """Collect what diffusers logs at WARNING and above (its library logger does not propagate)."""
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Collect(level=logging.WARNING)
    # FluxPipeline also offers every file to its CLIP text encoder; ours carry no text-encoder LoRA.
    handler.addFilter(lambda record: "found with the prefix='text_encoder'" not in record.getMessage())
    logger = logging.getLogger("diffusers")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)


def lora_modules(transformer) -> set[str]:
    return {name for name, module in transformer.named_modules() if hasattr(module, "lora_A")}


@pytest.fixture(scope="module")
def trained():
    """arch -> (targets, PEFT state dict, reference output, base output, inputs): built once per arch."""
    cache = {}

    def get(arch):
        if arch not in cache:
            transformer = build_tiny_pipeline(arch).transformer
            inputs = transformer_inputs(arch, transformer)
            base = run(transformer, inputs)
            targets = block_linears(transformer)
            peft_sd = add_lora(transformer, targets)
            cache[arch] = (targets, peft_sd, run(transformer, inputs), base, inputs)
        return cache[arch]

    return get


# -------------------------------------------------------------------------------------- loading


@pytest.mark.parametrize("arch", ARCHS)
def test_comfy_file_loads_in_diffusers_with_same_output(arch, trained, tmp_path):
    targets, peft_sd, reference, base, inputs = trained(arch)
    if FAMILY[arch] == "flux":
        targets = [t for t in targets if not FLUX1_LINEAR1.match(t)]
        transformer = build_tiny_pipeline(arch).transformer
        peft_sd = add_lora(transformer, targets)
        reference = run(transformer, inputs)
    assert not torch.allclose(reference, base, atol=1e-3), "the LoRA must change the output"

    path = tmp_path / "lora.safetensors"
    save_file(peft_to_comfy(peft_sd, ALPHA, RANK, FAMILY[arch]), str(path))
    pipe = build_tiny_pipeline(arch)
    with diffusers_warnings() as warned:
        pipe.load_lora_weights(str(path))
    assert warned == []
    assert set(targets) <= lora_modules(pipe.transformer)
    torch.testing.assert_close(run(pipe.transformer, inputs), reference, atol=ATOL, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_comfy_file_merged_into_bfl_checkpoint_matches(arch, trained):
    """What ComfyUI does with the file: W[key] += up @ down on the BFL checkpoint; here with every target."""
    targets, peft_sd, reference, _, inputs = trained(arch)
    comfy = peft_to_comfy(peft_sd, ALPHA, RANK, FAMILY[arch])
    pipe = build_tiny_pipeline(arch)
    flux2 = FAMILY[arch] == "flux2"
    bfl = (flux2_transformer_diffusers_to_bfl if flux2 else flux_transformer_diffusers_to_bfl)(
        {k: v.clone() for k, v in pipe.transformer.state_dict().items()}
    )
    down, up = ("lora_A", "lora_B") if flux2 else ("lora_down", "lora_up")
    for key in comfy:
        if key.endswith(f".{down}.weight"):
            module = key.removeprefix("diffusion_model.").removesuffix(f".{down}.weight")
            bfl[f"{module}.weight"] += comfy[key.replace(down, up)] @ comfy[key]
    merged = convert_flux2_transformer_checkpoint_to_diffusers(bfl) if flux2 else flux_transformer_bfl_to_diffusers(bfl)
    pipe.transformer.load_state_dict(merged, strict=True)
    torch.testing.assert_close(run(pipe.transformer, inputs), reference, atol=ATOL, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_comfy_keys_name_bfl_weights(arch, trained):
    _, peft_sd, _, _, _ = trained(arch)
    comfy = peft_to_comfy(peft_sd, ALPHA, RANK, FAMILY[arch])
    to_bfl = flux2_transformer_diffusers_to_bfl if FAMILY[arch] == "flux2" else flux_transformer_diffusers_to_bfl
    bfl = to_bfl(build_tiny_pipeline(arch).transformer.state_dict())
    down, up = ("lora_A", "lora_B") if FAMILY[arch] == "flux2" else ("lora_down", "lora_up")
    modules = set()
    for key in comfy:
        match = re.fullmatch(rf"diffusion_model\.(.+)\.({down}|{up})\.weight", key)
        assert match, key
        modules.add(match.group(1))
    for module in modules:
        weight = bfl[f"{module}.weight"]
        delta = comfy[f"diffusion_model.{module}.{up}.weight"] @ comfy[f"diffusion_model.{module}.{down}.weight"]
        assert delta.shape == weight.shape, module
    assert not any("alpha" in key for key in comfy)
    # every block Linear is covered: fused groups count once
    assert any(".img_attn.qkv." in k for k in comfy) and any(".linear1." in k for k in comfy)


@pytest.mark.parametrize("arch", ARCHS)
def test_diffusers_format_loads_with_same_output(arch, trained, tmp_path):
    targets, peft_sd, reference, _, inputs = trained(arch)
    saved = peft_to_diffusers(peft_sd, ALPHA, RANK)
    assert all(k.startswith("transformer.") for k in saved)
    path = tmp_path / "lora.safetensors"
    save_file(saved, str(path))
    pipe = build_tiny_pipeline(arch)
    with diffusers_warnings() as warned:
        pipe.load_lora_weights(str(path))
    assert warned == []
    assert lora_modules(pipe.transformer) == set(targets)
    torch.testing.assert_close(run(pipe.transformer, inputs), reference, atol=ATOL, rtol=0)


def test_flux1_linear1_at_real_width_converts_exactly():
    """diffusers' FLUX.1 reader, at the real widths, recovers our block-diagonal linear1 as rank-r LoRAs."""
    generator = torch.Generator().manual_seed(0)
    widths = {"attn.to_q": 3072, "attn.to_k": 3072, "attn.to_v": 3072, "proj_mlp": 12288}
    peft_sd = {}
    for module, width in widths.items():
        peft_sd[f"single_transformer_blocks.5.{module}.lora_A.weight"] = torch.randn(RANK, 3072, generator=generator)
        peft_sd[f"single_transformer_blocks.5.{module}.lora_B.weight"] = torch.randn(width, RANK, generator=generator)
    comfy = peft_to_comfy(peft_sd, 16.0, RANK, "flux")  # scale 4 = 2 x 2: folding is exact
    assert comfy["diffusion_model.single_blocks.5.linear1.lora_up.weight"].shape == (21504, 4 * RANK)
    converted = FluxPipeline.lora_state_dict(dict(comfy))
    assert set(converted) == {f"transformer.{k}" for k in peft_sd}
    for key, tensor in peft_sd.items():
        torch.testing.assert_close(converted[f"transformer.{key}"], tensor * 2.0, atol=0, rtol=0)


# ----------------------------------------------------------------------------------- round trips


@pytest.mark.parametrize("arch", ARCHS)
def test_comfy_round_trip_is_exact(arch, trained):
    _, peft_sd, _, _, _ = trained(arch)
    back, rank, alpha = comfy_to_peft(peft_to_comfy(peft_sd, ALPHA, RANK, arch), arch, alpha=ALPHA)
    assert (rank, alpha) == (RANK, ALPHA)
    assert back.keys() == peft_sd.keys()
    for key, tensor in peft_sd.items():
        torch.testing.assert_close(back[key], tensor, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize("alpha", [4.0, 1.0, 16.0])  # scales 1, 1/4, 4: powers of two
def test_power_of_two_scales_fold_bit_exactly(alpha, trained):
    _, peft_sd, _, _, _ = trained("flux2")
    for saved, read in [
        (peft_to_comfy(peft_sd, alpha, RANK, "flux2"), lambda sd: comfy_to_peft(sd, "flux2", alpha=alpha)),
        (peft_to_diffusers(peft_sd, alpha, RANK), lambda sd: diffusers_to_peft(sd, alpha=alpha)),
    ]:
        back, _, _ = read(saved)
        assert all(torch.equal(back[k], v) for k, v in peft_sd.items())


def test_without_alpha_the_scale_stays_folded(trained):
    _, peft_sd, _, _, _ = trained("flux2")
    back, rank, alpha = comfy_to_peft(peft_to_comfy(peft_sd, ALPHA, RANK, "flux2"), "flux2")
    assert (rank, alpha) == (RANK, float(RANK))
    module = "transformer_blocks.0.attn.to_k"
    delta = back[f"{module}.lora_B.weight"] @ back[f"{module}.lora_A.weight"]
    expected = peft_sd[f"{module}.lora_B.weight"] @ peft_sd[f"{module}.lora_A.weight"] * (ALPHA / RANK)
    torch.testing.assert_close(delta, expected)


@pytest.mark.parametrize("arch", ARCHS)
def test_diffusers_round_trip_and_format_detection(arch, trained):
    _, peft_sd, _, _, _ = trained(arch)
    for saved in (peft_to_diffusers(peft_sd, ALPHA, RANK), peft_to_comfy(peft_sd, ALPHA, RANK, arch)):
        back, rank, alpha = to_peft(saved, arch, alpha=ALPHA)
        assert (rank, alpha, back.keys()) == (RANK, ALPHA, peft_sd.keys())
        for key, tensor in peft_sd.items():
            torch.testing.assert_close(back[key], tensor, atol=1e-7, rtol=1e-6)


@pytest.mark.parametrize(
    "family, modules, fused, widths",
    [
        ("flux2", ["transformer_blocks.1.attn.to_q"], "double_blocks.1.img_attn.qkv", (32, 32, 32)),
        ("flux2", ["transformer_blocks.0.attn.add_v_proj"], "double_blocks.0.txt_attn.qkv", (32, 32, 32)),
        ("flux", ["single_transformer_blocks.0.proj_mlp"], "single_blocks.0.linear1", (32, 32, 32, 128)),
        (
            "flux",
            ["single_transformer_blocks.1.attn.to_k", "single_transformer_blocks.1.proj_mlp"],
            "single_blocks.1.linear1",
            (32, 32, 32, 128),
        ),
    ],
)
def test_partly_covered_fused_module_gets_zero_blocks(family, modules, fused, widths):
    generator = torch.Generator().manual_seed(0)
    parts = {
        "attn.to_q": 0,
        "attn.to_k": 1,
        "attn.to_v": 2,
        "attn.add_q_proj": 0,
        "attn.add_k_proj": 1,
        "attn.add_v_proj": 2,
        "proj_mlp": 3,
    }
    peft_sd = {}
    for module in modules:
        width = widths[parts[module.split(".", 2)[2]]]
        peft_sd[f"{module}.lora_A.weight"] = torch.randn(RANK, 32, generator=generator)
        peft_sd[f"{module}.lora_B.weight"] = torch.randn(width, RANK, generator=generator)
    comfy = peft_to_comfy(peft_sd, RANK, RANK, family)
    down, up = ("lora_A", "lora_B") if family == "flux2" else ("lora_down", "lora_up")
    a, b = comfy[f"diffusion_model.{fused}.{down}.weight"], comfy[f"diffusion_model.{fused}.{up}.weight"]
    assert a.shape == (len(widths) * RANK, 32) and b.shape == (sum(widths), len(widths) * RANK)
    covered = {parts[m.split(".", 2)[2]] for m in modules}
    starts = [sum(widths[:i]) for i in range(len(widths))]
    for i, width in enumerate(widths):
        rows, cols = slice(starts[i], starts[i] + width), slice(i * RANK, (i + 1) * RANK)
        assert bool(a[cols].any()) == (i in covered) and bool(b[rows].any()) == (i in covered)
        assert not b[rows, : i * RANK].any() and not b[rows, (i + 1) * RANK :].any()
    back, _, _ = comfy_to_peft(comfy, family)
    assert back.keys() == peft_sd.keys()
    assert all(torch.equal(back[k], v) for k, v in peft_sd.items())


# ---------------------------------------------------------------------------------------- refusals


def test_fused_lora_that_is_not_block_diagonal_is_refused():
    comfy = {
        "diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight": torch.randn(3 * RANK, 32),
        "diffusion_model.double_blocks.0.img_attn.qkv.lora_B.weight": torch.randn(96, 3 * RANK),
    }
    with pytest.raises(LoraFormatError, match="not block diagonal"):
        comfy_to_peft(comfy, "flux2")


@pytest.mark.parametrize(
    "family, module",
    [("flux2", "norm_out.linear"), ("flux", "proj_out"), ("flux", "norm_out.linear"), ("flux", "x_embedder")],
)
def test_modules_diffusers_cannot_read_back_are_refused(family, module):
    peft_sd = {f"{module}.lora_A.weight": torch.randn(RANK, 32), f"{module}.lora_B.weight": torch.randn(64, RANK)}
    with pytest.raises(LoraFormatError, match="save.format: diffusers"):
        peft_to_comfy(peft_sd, RANK, RANK, family)
    assert set(peft_to_diffusers(peft_sd, RANK, RANK)) == {f"transformer.{k}" for k in peft_sd}


def test_flux2_global_modules_are_written():
    peft_sd = {"proj_out.lora_A.weight": torch.randn(RANK, 32), "proj_out.lora_B.weight": torch.randn(128, RANK)}
    assert set(peft_to_comfy(peft_sd, RANK, RANK, "flux2")) == {
        "diffusion_model.final_layer.linear.lora_A.weight",
        "diffusion_model.final_layer.linear.lora_B.weight",
    }


@pytest.mark.parametrize(
    "state_dict, match",
    [
        ({"transformer_blocks.0.attn.to_q.lora_A.default.weight": torch.zeros(RANK, 32)}, "get_peft_model_state_dict"),
        ({"transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(RANK, 32)}, "no lora_B"),
        (
            {
                "transformer_blocks.0.attn.to_q.lora_A.weight": torch.zeros(8, 32),
                "transformer_blocks.0.attn.to_q.lora_B.weight": torch.zeros(32, 8),
            },
            "expected rank 4",
        ),
        (
            {
                "transformer_blocks.0.nope.lora_A.weight": torch.zeros(RANK, 32),
                "transformer_blocks.0.nope.lora_B.weight": torch.zeros(32, RANK),
            },
            "not a flux2 transformer module",
        ),
    ],
)
def test_bad_peft_state_dicts_say_why(state_dict, match):
    with pytest.raises(LoraFormatError, match=match):
        peft_to_comfy(state_dict, RANK, RANK, "flux2")


def test_foreign_files_say_why():
    with pytest.raises(LoraFormatError, match="does not start with 'diffusion_model.'"):
        comfy_to_peft({"lora_unet_x.lora_down.weight": torch.zeros(1, 1)}, "flux")
    with pytest.raises(LoraFormatError, match="is not a comfy LoRA key"):
        comfy_to_peft({"diffusion_model.img_in.alpha": torch.tensor(4.0)}, "flux2")
    with pytest.raises(LoraFormatError, match="not a LoRA saved by this toolkit"):
        to_peft({"lora_unet_x.lora_down.weight": torch.zeros(1, 1)}, "flux")
    with pytest.raises(ValueError, match="unknown arch family"):
        peft_to_comfy({}, 1, 1, "sdxl")


def test_fold_factors():
    assert fold_factors(16, 16) == (1.0, 1.0)
    assert fold_factors(1, 16) == (0.25, 0.25)
    for alpha, rank in [(3, 4), (1, 128), (64, 4), (7, 3)]:
        a, b = fold_factors(alpha, rank)
        assert a * b == pytest.approx(alpha / rank) and 0.5 <= a / b <= 2.0


# ------------------------------------------------------------------ what we rely on in diffusers 0.42


def test_diffusers_rejects_alpha_keys_in_flux2_comfy_files():
    """Why the comfy file folds alpha instead of writing `.alpha` keys."""
    state = {
        "diffusion_model.double_blocks.0.img_attn.proj.lora_A.weight": torch.zeros(RANK, 32),
        "diffusion_model.double_blocks.0.img_attn.proj.lora_B.weight": torch.zeros(32, RANK),
        "diffusion_model.double_blocks.0.img_attn.proj.alpha": torch.tensor(2.0),
    }
    with pytest.raises(ValueError, match="should be empty"):
        Flux2Pipeline.lora_state_dict(state)


def test_diffusers_reads_flux1_comfy_files_only_as_lora_down_up():
    """Why FLUX.1 comfy files spell lora_down/lora_up."""
    a, b = torch.zeros(RANK, 32), torch.zeros(32, RANK)
    module = "diffusion_model.double_blocks.0.img_attn.proj"
    as_a_b = FluxPipeline.lora_state_dict({f"{module}.lora_A.weight": a, f"{module}.lora_B.weight": b})
    assert not any(k.startswith("transformer.") for k in as_a_b)  # load_lora_weights would load nothing
    down_up = FluxPipeline.lora_state_dict({f"{module}.lora_down.weight": a, f"{module}.lora_up.weight": b})
    assert set(down_up) == {f"transformer.transformer_blocks.0.attn.to_out.0.lora_{x}.weight" for x in "AB"}
