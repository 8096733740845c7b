"""Parity with diffusers for every architecture, in every weights layout.

- the transformer loaded from the BFL single file equals the one from the diffusers folder;
- the VAE loaded from ae.safetensors equals the folder's;
- `encode_prompt` equals the pipeline's own `encode_prompt`;
- `get_noise_prediction` equals the pipeline's transformer call on packed inputs.
"""

from __future__ import annotations

import pytest
import torch

from toolkit.config_modules import ModelConfig
from toolkit.util.get_model import get_model_class

pytestmark = pytest.mark.slow  # end-to-end: builds / loads tiny models or runs jobs (see pyproject.toml)

# tiny-model id -> arch
TINY = {
    "flux2": "flux2",
    "flux2_klein_4b": "flux2_klein_4b",
    "flux2_klein_9b": "flux2_klein_9b",
    "flux": "flux",
    "flux-schnell": "flux",
}
PIPELINES = {
    "flux2": "Flux2Pipeline",
    "flux2_klein_4b": "Flux2KleinPipeline",
    "flux2_klein_9b": "Flux2KleinPipeline",
    "flux": "FluxPipeline",
    "flux-schnell": "FluxPipeline",
}


def single_file(folder):
    return next(p for p in sorted(folder.glob("*.safetensors")) if p.name != "ae.safetensors")


def load(arch, **kwargs):
    config = ModelConfig(arch=arch, dtype="fp32", **kwargs)
    model = get_model_class(config)(config, device="cpu")
    model.load_model()
    return model


def random_latents(model, seed=0, size=64):
    generator = torch.Generator().manual_seed(seed)
    images = torch.rand(1, 3, size, size, generator=generator) * 2 - 1
    return model.encode_images(images)


@pytest.fixture(scope="module")
def loaded(tiny):
    cache = {}

    def get(tiny_id, layout):
        key = (tiny_id, layout)
        if key not in cache:
            folder = tiny(tiny_id, "diffusers")
            if layout == "diffusers":
                cache[key] = load(TINY[tiny_id], name_or_path=str(folder))
            else:
                files = tiny(tiny_id, "single_file")
                cache[key] = load(TINY[tiny_id], name_or_path=str(single_file(files)), extras_name_or_path=str(folder))
        return cache[key]

    return get


@pytest.mark.parametrize("tiny_id", list(TINY))
def test_single_file_equals_diffusers_folder(loaded, tiny_id):
    folder_model = loaded(tiny_id, "diffusers")
    file_model = loaded(tiny_id, "single_file")
    assert file_model.sources.transformer_file is not None and file_model.sources.vae.name == "ae.safetensors"
    latents = random_latents(folder_model)
    torch.testing.assert_close(random_latents(file_model), latents, rtol=0, atol=1e-6)
    embeds = folder_model.encode_prompt(["a tiny red fox"])
    t = torch.tensor([700.0])
    expected = folder_model.get_noise_prediction(latents, t, embeds, guidance_scale=3.0)
    got = file_model.get_noise_prediction(latents, t, embeds, guidance_scale=3.0)
    assert expected.shape == latents.shape
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(
        file_model.decode_latents(latents), folder_model.decode_latents(latents), rtol=1e-5, atol=1e-5
    )


@pytest.mark.parametrize("tiny_id", list(TINY))
def test_encode_prompt_equals_pipeline(loaded, tiny, tiny_id):
    import diffusers

    model = loaded(tiny_id, "diffusers")
    pipe = getattr(diffusers, PIPELINES[tiny_id]).from_pretrained(str(tiny(tiny_id, "diffusers")))
    prompts = ["a tiny red fox", "a bowl of ramen, steam rising"]
    ours = model.encode_prompt(prompts)
    theirs = pipe.encode_prompt(prompt=prompts, device="cpu")
    if TINY[tiny_id] == "flux":
        expected = {"prompt_embeds": theirs[0], "pooled_prompt_embeds": theirs[1]}
        assert not theirs[2].any()  # FLUX.1 text ids are zeros, rebuilt at prediction time
    else:
        expected = {"prompt_embeds": theirs[0], "text_ids": theirs[1]}
    assert set(ours.tensors) == set(expected)
    for key, value in expected.items():
        torch.testing.assert_close(ours[key], value, rtol=0, atol=0)
    assert ours["prompt_embeds"].shape[1] == 512  # padded to the pipelines' max_sequence_length


@pytest.mark.parametrize("tiny_id", ["flux2", "flux2_klein_4b", "flux"])
def test_noise_prediction_equals_pipeline_transformer_call(loaded, tiny_id):
    """Our packing/ids/guidance equal the pipeline's, reproduced here from its own static functions."""
    model = loaded(tiny_id, "diffusers")
    pipe = model.pipeline
    latents = random_latents(model, seed=1)
    embeds = model.encode_prompt(["a lighthouse at dusk"])
    t = torch.tensor([400.0])
    ours = model.get_noise_prediction(latents, t, embeds, guidance_scale=2.5)
    b, c, h, w = latents.shape
    guidance = torch.full((b,), 2.5) if pipe.transformer.config.guidance_embeds else None
    if TINY[tiny_id] == "flux":
        packed = pipe._pack_latents(latents, b, c, h, w)
        ids = pipe._prepare_latent_image_ids(b, h // 2, w // 2, "cpu", packed.dtype)
        out = pipe.transformer(
            hidden_states=packed,
            timestep=t / 1000,
            guidance=guidance,
            pooled_projections=embeds["pooled_prompt_embeds"],
            encoder_hidden_states=embeds["prompt_embeds"],
            txt_ids=torch.zeros(512, 3),
            img_ids=ids,
            return_dict=False,
        )[0]
        scale = pipe.vae_scale_factor
        expected = pipe._unpack_latents(out, h * scale, w * scale, scale)
    else:
        packed = pipe._pack_latents(latents)
        ids = pipe._prepare_latent_ids(latents)
        out = pipe.transformer(
            hidden_states=packed,
            timestep=t / 1000,
            guidance=guidance,
            encoder_hidden_states=embeds["prompt_embeds"],
            txt_ids=embeds["text_ids"],
            img_ids=ids,
            return_dict=False,
        )[0]
        expected = pipe._unpack_latents_with_ids(out, ids)
    torch.testing.assert_close(ours, expected, rtol=0, atol=0)


def test_flux2_latents_are_batch_norm_normalised(loaded):
    """The VAE's bn statistics are applied (as Flux2Pipeline._encode_vae_image does)."""
    model = loaded("flux2", "diffusers")
    images = torch.rand(1, 3, 64, 64) * 2 - 1
    raw = model.vae.encode(images).latent_dist.mode()
    patched = model.pipeline._patchify_latents(raw)
    bn = model.vae.bn
    expected = (patched - bn.running_mean.view(1, -1, 1, 1)) / torch.sqrt(
        bn.running_var.view(1, -1, 1, 1) + model.vae.config.batch_norm_eps
    )
    torch.testing.assert_close(model.encode_images(images), expected)
    side = 64 // (2 * model.pipeline.vae_scale_factor)
    assert model.encode_images(images).shape == (1, 128, side, side)


def test_is_flux_flags_follow_arch(loaded):
    assert loaded("flux2", "diffusers").is_flux2 and not loaded("flux2", "diffusers").is_flux
    assert loaded("flux", "diffusers").is_flux and not loaded("flux", "diffusers").is_flux2
    assert loaded("flux2_klein_9b", "diffusers").is_flux2


def test_lora_targets_cover_block_linears_only(loaded):
    for tiny_id in ("flux2", "flux"):
        targets = loaded(tiny_id, "diffusers").lora_targets()
        assert targets and all(t.startswith(("transformer_blocks.", "single_transformer_blocks.")) for t in targets)
        assert not any(".norm" in t for t in targets)
    flux2 = loaded("flux2", "diffusers").lora_targets()
    assert "transformer_blocks.0.attn.to_q" in flux2 and "single_transformer_blocks.0.attn.to_qkv_mlp_proj" in flux2
