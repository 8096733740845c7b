"""Edit (reference image) parity with diffusers for FLUX.2-dev and klein.

- the trainer's noise prediction with references equals, bit for bit, the transformer call that
  Flux2Pipeline.__call__ / Flux2KleinPipeline.__call__ itself makes for `image=[...]` (captured with a
  forward hook): same packing, position ids (T = 10 + 10 i), concatenation after the target and slicing;
- the reference latents of the training data path (control folders -> ReferenceItem -> load_reference ->
  encode_images, as the reference cache does) equal the pipeline's reference tokens to float32 rounding
  (the pipeline's image processor hands the VAE a channels-last tensor, the cache a contiguous batch, and
  the conv kernels round differently; the pixels are identical);
- `generate_images` with `ctrl_img` equals `pipe(image=[...])` for the same seed.

The references here are small and their sides multiples of 16: the tiny VAE downsamples by 2, not 8,
so the tiny pipelines crop references to multiples of 4 where the real ones (and our
`bucket_divisibility`) use 16, and a 1024x1024 reference would take minutes through the tiny VAE on a
CPU. The resize-and-crop rule itself is proven pixel for pixel against the pipeline's image processor
in tests/data/test_references.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from tests.models.test_model_parity import PIPELINES, load
from toolkit.config_modules import DatasetConfig
from toolkit.data.dataset import build_items
from toolkit.data.references import load_reference
from toolkit.models.base_model import ImageRequest

pytestmark = pytest.mark.slow  # end-to-end: builds / loads tiny models or runs jobs (see pyproject.toml)

ARCHS = ["flux2", "flux2_klein_4b"]


@pytest.fixture(scope="module")
def model(tiny):
    cache = {}

    def get(tiny_id):
        if tiny_id not in cache:
            cache[tiny_id] = load(tiny_id, name_or_path=str(tiny(tiny_id, "diffusers")))
        return cache[tiny_id]

    return get


def smooth_image(path, size, seed):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 256, size=(size[1] // 8 + 1, size[0] // 8 + 1, 3), dtype=np.uint8)
    Image.fromarray(base).resize(size, Image.Resampling.BICUBIC).save(path)
    return path


@pytest.fixture(scope="module")
def edit_pair(tmp_path_factory):
    """One target (x.png) with two references of different sizes, in two control folders."""
    root = tmp_path_factory.mktemp("edit_pair")
    for sub in ("targets", "ref_a", "ref_b"):
        (root / sub).mkdir()
    smooth_image(root / "targets" / "x.png", (64, 64), 0)
    (root / "targets" / "x.txt").write_text("make the robot blue")
    refs = [smooth_image(root / "ref_a" / "x.png", (96, 64), 1), smooth_image(root / "ref_b" / "x.png", (80, 112), 2)]
    return root, refs


def training_references(model, root, batch):
    """The reference latents the trainer feeds, built through the training data path."""
    config = DatasetConfig(
        folder_path=str(root / "targets"),
        control_path=[str(root / "ref_a"), str(root / "ref_b")],
        resolution=64,
        caption_dropout_rate=0.0,
    )
    (item,) = build_items(
        [config],
        None,
        model.capabilities.bucket_divisibility,
        reference_max_pixels=model.capabilities.reference_max_pixels,
    )
    assert [ref.bucket for ref in item.references] == [(96, 64), (80, 112)]
    with torch.no_grad():
        latents = [model.encode_images(load_reference(ref)[None]) for ref in item.references]
    return [latent.expand(batch, -1, -1, -1) for latent in latents]


def capture_transformer_calls(transformer):
    calls = []

    def hook(module, args, kwargs, output):
        calls.append({"kwargs": {k: v for k, v in kwargs.items() if torch.is_tensor(v)}, "out": output[0]})

    return calls, transformer.register_forward_hook(hook, with_kwargs=True)


@pytest.mark.parametrize("tiny_id", ARCHS)
def test_noise_prediction_with_references_equals_the_pipelines_call(model, edit_pair, tiny_id):
    model = model(tiny_id)
    pipe = model.pipeline
    root, ref_files = edit_pair
    embeds = model.encode_prompt(["make the robot blue", "make the robot green"])
    # klein: guidance 1 means no CFG, so the pipeline makes exactly one (conditional) call per step
    guidance = 2.5 if model.spec.guidance_embeds else 1.0
    calls, handle = capture_transformer_calls(pipe.transformer)
    try:
        with torch.no_grad():
            pipe(
                image=[Image.open(p) for p in ref_files],
                prompt_embeds=embeds["prompt_embeds"],
                height=64,
                width=64,
                num_inference_steps=1,
                guidance_scale=guidance,
                generator=torch.Generator().manual_seed(0),
                output_type="latent",
            )
    finally:
        handle.remove()
    (call,) = calls
    hidden, ids = call["kwargs"]["hidden_states"], call["kwargs"]["img_ids"]
    scale = pipe.vae_scale_factor * 2  # pixels per token (4 for the tiny VAE)
    n = (64 // scale) ** 2
    assert hidden.shape[1] == n + (96 * 64 + 80 * 112) // scale**2  # target, then the two references' tokens
    assert ids[0, n:, 0].unique().tolist() == [10, 20]  # the references' time coordinates
    noisy = pipe._unpack_latents_with_ids(hidden[:, :n], ids[:, :n])
    expected = pipe._unpack_latents_with_ids(call["out"][:, :n], ids[:, :n])
    timesteps = pipe.scheduler.timesteps[0].expand(2).to(noisy.dtype)
    # the pipeline's own reference latents, unpacked from its tokens (each reference's ids start at row/col 0)
    bounds = [n, n + 96 * 64 // scale**2, hidden.shape[1]]
    pipeline_refs = [pipe._unpack_latents_with_ids(hidden[:, a:b], ids[:, a:b]) for a, b in zip(bounds, bounds[1:])]

    with torch.no_grad():
        ours = model.get_noise_prediction(noisy, timesteps, embeds, guidance_scale=guidance, references=pipeline_refs)
        without = model.get_noise_prediction(noisy, timesteps, embeds, guidance_scale=guidance)
    assert ours.shape == noisy.shape == (2, 128, 64 // scale, 64 // scale)
    torch.testing.assert_close(ours, expected, rtol=0, atol=0)
    assert not torch.allclose(without, ours, atol=1e-4)  # the references do condition the prediction

    data_refs = training_references(model, root, batch=2)
    for data_ref, pipeline_ref in zip(data_refs, pipeline_refs):
        torch.testing.assert_close(data_ref, pipeline_ref, rtol=0, atol=2e-5)
    with torch.no_grad():
        trained = model.get_noise_prediction(noisy, timesteps, embeds, guidance_scale=guidance, references=data_refs)
    torch.testing.assert_close(trained, expected, rtol=0, atol=2e-5)


@pytest.mark.parametrize("tiny_id", ARCHS)
def test_generate_images_with_ctrl_img_equals_pipeline(model, tiny, edit_pair, tiny_id):
    import diffusers

    model = model(tiny_id)
    _, ref_files = edit_pair
    request = ImageRequest(
        prompt="make the robot blue",
        neg="",
        width=64,
        height=48,
        seed=7,
        guidance_scale=3.0,
        sample_steps=2,
        ctrl_img=tuple(str(p) for p in ref_files),
    )
    ours = model.generate_images([request])[0]
    pipe = getattr(diffusers, PIPELINES[tiny_id]).from_pretrained(str(tiny(tiny_id, "diffusers")))
    pipe.set_progress_bar_config(disable=True)
    theirs = pipe(
        prompt="make the robot blue",
        image=[Image.open(p) for p in ref_files],
        width=64,
        height=48,
        num_inference_steps=2,
        guidance_scale=3.0,
        generator=torch.Generator("cpu").manual_seed(7),
    ).images[0]
    plain = model.generate_images([ImageRequest(**{**request.__dict__, "ctrl_img": ()})])[0]
    assert ours.size == (64, 48)
    assert np.array_equal(np.asarray(ours), np.asarray(theirs))
    assert not np.array_equal(np.asarray(ours), np.asarray(plain))


def test_flux1_declares_no_reference_support(model):
    from toolkit.stable_diffusion_model import StableDiffusion

    assert (
        not StableDiffusion.capabilities.reference_training and StableDiffusion.capabilities.max_reference_images == 0
    )
    request = ImageRequest(
        prompt="x", neg="", width=64, height=64, seed=0, guidance_scale=3.0, sample_steps=1, ctrl_img=("a.png",)
    )
    with pytest.raises(ValueError, match="does not take reference images"):
        StableDiffusion.generate_images(StableDiffusion.__new__(StableDiffusion), [request])
