"""Tiny random models: real classes, real layouts, loadable offline, single files equal to the folder."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from toolkit.paths import ROOT
from toolkit.tiny import (
    TINY_IDS as ARCHS,
    COMPLETE_MARKER,
    SPECS,
    build_tiny_pipeline,
    ensure_tiny,
)
from toolkit.tiny.export import main, save_hub_cache

pytestmark = pytest.mark.slow  # end-to-end: builds / loads tiny models or runs jobs (see pyproject.toml)

PIPELINE_CLASS = {
    "flux": "FluxPipeline",
    "flux-schnell": "FluxPipeline",
    "flux2": "Flux2Pipeline",
    "flux2_klein_4b": "Flux2KleinPipeline",
    "flux2_klein_9b": "Flux2KleinPipeline",
}


@pytest.fixture(scope="session")
def tiny_root(tmp_path_factory):
    return tmp_path_factory.mktemp("tiny_models")


@pytest.fixture(scope="session")
def folders(tiny_root):
    """arch -> (diffusers folder, single-file folder), each built once per session."""
    cache = {}

    def get(arch):
        if arch not in cache:
            cache[arch] = (ensure_tiny(arch, tiny_root, "diffusers"), ensure_tiny(arch, tiny_root, "single_file"))
        return cache[arch]

    return get


def seeded(*shape, seed=0):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("arch", ARCHS)
def test_folder_loads_and_generates(folders, arch):
    from diffusers import DiffusionPipeline

    folder, _ = folders(arch)
    pipe = DiffusionPipeline.from_pretrained(folder)
    assert type(pipe).__name__ == PIPELINE_CLASS[arch]
    if arch.startswith("flux2_klein"):
        assert pipe.config.is_distilled is False
    pipe.set_progress_bar_config(disable=True)
    image = pipe(
        prompt="a red fox, photo",
        height=64,
        width=64,
        num_inference_steps=2,
        guidance_scale=3.0,
        generator=torch.Generator().manual_seed(0),
        output_type="np",
    ).images
    assert image.shape == (1, 64, 64, 3)
    assert image.std() > 0.01


def transformer_inputs(transformer, family):
    """Packed inputs for one forward: 8x8 latent tokens, 7 text tokens."""
    config = transformer.config
    inputs = {
        "hidden_states": seeded(1, 64, config.in_channels, seed=1),
        "encoder_hidden_states": seeded(1, 7, config.joint_attention_dim, seed=2),
        "timestep": torch.tensor([0.7]),
    }
    if config.guidance_embeds:
        inputs["guidance"] = torch.tensor([3.5])
    if family == "flux2":
        from diffusers import Flux2Pipeline

        inputs["img_ids"] = Flux2Pipeline._prepare_latent_ids(torch.zeros(1, 1, 8, 8))
        inputs["txt_ids"] = Flux2Pipeline._prepare_text_ids(inputs["encoder_hidden_states"])
    else:
        from diffusers import FluxPipeline

        inputs["img_ids"] = FluxPipeline._prepare_latent_image_ids(1, 8, 8, "cpu", torch.float32)
        inputs["txt_ids"] = torch.zeros(7, 3)
        inputs["pooled_projections"] = seeded(1, config.pooled_projection_dim, seed=3)
    return inputs


@pytest.mark.parametrize("arch", ARCHS)
def test_single_file_transformer_equals_folder(folders, arch):
    import diffusers
    from safetensors.torch import load_file

    from toolkit.convert.flux_keys import flux_transformer_bfl_to_diffusers

    folder, files = folders(arch)
    spec = SPECS[arch]
    cls = diffusers.Flux2Transformer2DModel if spec.family == "flux2" else diffusers.FluxTransformer2DModel
    path = files / spec.transformer_file
    assert sorted(p.name for p in files.glob("*.safetensors")) == sorted(["ae.safetensors", spec.transformer_file])
    if spec.family == "flux2":
        single = cls.from_single_file(str(path), config=str(folder), subfolder="transformer")
    else:
        # diffusers' FLUX.1 converter only splits the real 3072-wide model; convert first (see flux_keys).
        state = flux_transformer_bfl_to_diffusers(load_file(str(path)))
        single = cls.from_single_file(state, config=str(folder), subfolder="transformer")
    reference = cls.from_pretrained(folder, subfolder="transformer")
    inputs = transformer_inputs(reference, spec.family)
    with torch.no_grad():
        want = reference(**inputs, return_dict=False)[0]
        got = single(**inputs, return_dict=False)[0]
    assert want.abs().mean() > 1e-3
    torch.testing.assert_close(got, want, atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ARCHS)
def test_single_file_vae_equals_folder(folders, arch):
    import diffusers
    from safetensors.torch import load_file

    from toolkit.convert.flux_keys import flux2_vae_ldm_to_diffusers

    folder, files = folders(arch)
    ae = files / "ae.safetensors"
    if SPECS[arch].family == "flux2":
        cls = diffusers.AutoencoderKLFlux2
        single = cls.from_config(cls.load_config(folder, subfolder="vae"))
        single.load_state_dict(flux2_vae_ldm_to_diffusers(load_file(str(ae)), dict(single.config)), strict=True)
    else:
        cls = diffusers.AutoencoderKL
        single = cls.from_single_file(str(ae), config=str(folder), subfolder="vae")
    reference = cls.from_pretrained(folder, subfolder="vae")
    for name, buffer in reference.named_buffers():
        assert torch.equal(dict(single.named_buffers())[name], buffer), name
    latents = seeded(1, reference.config.latent_channels, 8, 8, seed=4)
    with torch.no_grad():
        torch.testing.assert_close(single.decode(latents).sample, reference.decode(latents).sample, atol=1e-5, rtol=0)


def test_flux2_latent_statistics_are_not_identity(folders):
    from diffusers import AutoencoderKLFlux2

    vae = AutoencoderKLFlux2.from_pretrained(folders("flux2")[0], subfolder="vae")
    assert vae.bn.running_mean.abs().mean() > 0.1
    assert (vae.bn.running_var > 0).all() and (vae.bn.running_var - 1).abs().mean() > 0.1


@pytest.mark.parametrize("arch", ARCHS)
def test_prompt_embeddings_have_the_release_layout(arch):
    """Text encoders deep enough for the pipelines' hidden-state layers; 512-token padding."""
    pipe = build_tiny_pipeline(arch)
    spec = SPECS[arch]
    if spec.family == "flux2":
        embeds, text_ids = pipe.encode_prompt(prompt=["a fox", "two red birds"], device="cpu")
        assert embeds.shape == (2, 512, 3 * spec.text_hidden) == (2, 512, pipe.transformer.config.joint_attention_dim)
        assert text_ids.shape == (2, 512, 4)
    else:
        embeds, pooled, text_ids = pipe.encode_prompt(prompt="a fox", prompt_2=None, device="cpu")
        assert embeds.shape == (1, 512, spec.text_hidden) and pooled.shape == (1, spec.text_hidden)


def test_chat_templates_render_like_the_releases():
    from diffusers.pipelines.flux2.pipeline_flux2 import format_input

    mistral = build_tiny_pipeline("flux2").tokenizer
    text = mistral.apply_chat_template(format_input(["a fox"], system_message="Be brief."), tokenize=False)
    assert text == ["<s>[SYSTEM_PROMPT]Be brief.[/SYSTEM_PROMPT][INST]a fox[/INST]"]
    assert mistral.convert_tokens_to_ids("[IMG]") == 10 and mistral.pad_token == "<pad>"
    qwen = build_tiny_pipeline("flux2_klein_4b").tokenizer
    text = qwen.apply_chat_template(
        [{"role": "user", "content": "a fox"}], tokenize=False, add_generation_prompt=True, enable_thinking=False
    )
    assert text == "<|im_start|>user\na fox<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
    ids = qwen(text)["input_ids"]
    assert qwen.convert_ids_to_tokens(ids[:1]) == ["<|im_start|>"] and qwen.unk_token_id not in ids


def test_seed_fixes_the_weights_and_leaves_global_rng_alone():
    torch.manual_seed(123)
    before = torch.rand(3)
    torch.manual_seed(123)
    a = build_tiny_pipeline("flux2_klein_4b", seed=1).transformer.state_dict()
    assert torch.equal(torch.rand(3), before)
    b = build_tiny_pipeline("flux2_klein_4b", seed=1).transformer.state_dict()
    c = build_tiny_pipeline("flux2_klein_4b", seed=2).transformer.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["x_embedder.weight"], c["x_embedder.weight"])


def test_real_model_index_names(folders):
    index = json.loads((folders("flux2_klein_9b")[0] / "model_index.json").read_text())
    assert index["tokenizer"] == ["transformers", "Qwen2TokenizerFast"]
    assert index["text_encoder"] == ["transformers", "Qwen3ForCausalLM"]
    assert index["vae"] == ["diffusers", "AutoencoderKLFlux2"]
    index = json.loads((folders("flux")[0] / "model_index.json").read_text())
    assert index["tokenizer_2"] == ["transformers", "T5TokenizerFast"]
    assert index["text_encoder_2"] == ["transformers", "T5EncoderModel"]


@pytest.mark.parametrize(
    "arch, repo_id", [("flux2", "black-forest-labs/FLUX.2-dev"), ("flux", "black-forest-labs/FLUX.1-dev")]
)
def test_hub_cache_resolves_offline(tmp_path, arch, repo_id):
    from huggingface_hub import snapshot_download

    snapshot = save_hub_cache(arch, tmp_path, repo_id)
    found = snapshot_download(repo_id, cache_dir=tmp_path, local_files_only=True)
    assert Path(found) == snapshot
    assert {"model_index.json", SPECS[arch].transformer_file, "ae.safetensors"} <= {p.name for p in snapshot.iterdir()}


def test_hub_cache_loads_pipeline_in_offline_process(tmp_path):
    """A fresh process with HF_HUB_OFFLINE=1 and HF_HUB_CACHE: diffusers resolves the repo id from the cache."""
    save_hub_cache("flux2_klein_4b", tmp_path, "black-forest-labs/FLUX.2-klein-base-4B")
    code = textwrap.dedent("""
        from huggingface_hub import snapshot_download
        from diffusers import DiffusionPipeline
        repo = "black-forest-labs/FLUX.2-klein-base-4B"
        snapshot_download(repo)
        print(type(DiffusionPipeline.from_pretrained(repo)).__name__)
    """)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HUB_CACHE": str(tmp_path), "PYTHONPATH": str(ROOT)}
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("Flux2KleinPipeline")


def test_ensure_tiny_reuses_and_rebuilds_stale(tmp_path):
    folder = ensure_tiny("flux2_klein_4b", tmp_path, "single_file")
    marker = folder / COMPLETE_MARKER
    stamp = (folder / "ae.safetensors").stat().st_mtime_ns
    assert ensure_tiny("flux2_klein_4b", tmp_path, "single_file") == folder
    assert (folder / "ae.safetensors").stat().st_mtime_ns == stamp
    marker.write_text("built by an older builder")
    (folder / "ae.safetensors").unlink()
    assert ensure_tiny("flux2_klein_4b", tmp_path, "single_file") == folder
    assert (folder / "ae.safetensors").is_file() and marker.read_text() != "built by an older builder"
    assert [p.name for p in folder.parent.iterdir()] == ["single_file"]  # no temporary folders left
    with pytest.raises(ValueError, match="layout"):
        ensure_tiny("flux2", tmp_path, "ckpt")
    with pytest.raises(ValueError, match="arch"):
        ensure_tiny("sdxl", tmp_path, "diffusers")


def test_ensure_tiny_is_safe_across_processes_and_builds_are_byte_identical(tmp_path):
    """Two processes race for one cache folder; each also saves its own copies, which must match byte for byte
    (tokenizers included: their trainers are not deterministic across processes, ours are)."""
    code = textwrap.dedent("""
        import sys
        from toolkit.tiny import ensure_tiny
        from toolkit.tiny.export import save_diffusers_folder
        root, own = sys.argv[1:]
        for arch in ("flux", "flux2", "flux2_klein_4b"):
            save_diffusers_folder(arch, f"{own}/{arch}")
        print(ensure_tiny("flux", root, "diffusers"))
    """)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, str(tmp_path / "cache"), str(tmp_path / f"own{i}")],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    outputs = [p.communicate(timeout=180) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], [err[-2000:] for _, err in outputs]
    assert {out.strip() for out, _ in outputs} == {str(tmp_path / "cache" / "flux" / "diffusers")}
    assert [p.name for p in (tmp_path / "cache" / "flux").iterdir()] == ["diffusers"]
    assert (tmp_path / "cache" / "flux" / "diffusers" / "model_index.json").is_file()
    files = sorted(p.relative_to(tmp_path / "own0") for p in (tmp_path / "own0").rglob("*") if p.is_file())
    assert len(files) > 20
    for rel in files:
        assert (tmp_path / "own0" / rel).read_bytes() == (tmp_path / "own1" / rel).read_bytes(), rel


def test_cli_writes_the_requested_layout(tmp_path, capsys):
    main(["--arch", "flux2_klein_9b", "--layout", "single_file", "--out", str(tmp_path / "sf")])
    assert sorted(p.name for p in (tmp_path / "sf").iterdir()) == ["ae.safetensors", "flux-2-klein-base-9b.safetensors"]
    assert capsys.readouterr().out.strip() == str(tmp_path / "sf")
