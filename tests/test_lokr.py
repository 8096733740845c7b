"""LoKr for FLUX.2: trains on the fused projections, saves BFL names ComfyUI reads, and diffusers'
load_lora_weights reproduces the trainer's own sample."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open

import run
from tests.jobs.train_helpers import train_process, write_job
from tests.models.test_model_parity import PIPELINES
from toolkit.lokr_format import LokrFormatError, flux2_module_to_bfl, lokr_peft_to_comfy

pytestmark = pytest.mark.slow  # end-to-end: builds / loads tiny models or runs jobs (see pyproject.toml)


def test_module_names_and_scale_folding():
    assert flux2_module_to_bfl("transformer_blocks.3.attn.to_qkv") == "double_blocks.3.img_attn.qkv"
    assert flux2_module_to_bfl("transformer_blocks.0.attn.to_added_qkv") == "double_blocks.0.txt_attn.qkv"
    assert flux2_module_to_bfl("single_transformer_blocks.7.attn.to_qkv_mlp_proj") == "single_blocks.7.linear1"
    with pytest.raises(LokrFormatError, match="no Black Forest Labs name"):
        flux2_module_to_bfl("transformer_blocks.0.attn.to_q")
    state = {
        "transformer_blocks.0.attn.to_qkv.lokr_w1": torch.ones(2, 2),
        "transformer_blocks.0.attn.to_qkv.lokr_w2": torch.ones(3, 3),
    }
    out = lokr_peft_to_comfy(state, alpha=2.0, rank=8)
    assert torch.equal(out["diffusion_model.double_blocks.0.img_attn.qkv.lokr_w1"], torch.full((2, 2), 0.25))
    assert torch.equal(out["diffusion_model.double_blocks.0.img_attn.qkv.lokr_w2"], torch.ones(3, 3))
    assert not any(k.endswith(".alpha") for k in out)


@pytest.mark.parametrize("arch", ["flux2", "flux2_klein_4b"])
def test_lokr_trains_and_loads_in_diffusers(tmp_path, tiny, arch):
    import diffusers

    process = train_process(
        tmp_path,
        arch=arch,
        steps=4,
        save={"save_every": 100},
        network={"type": "lokr", "linear": 4, "linear_alpha": 2, "lokr_factor": -1},
        train={"skip_first_sample": True, "lr": 5e-3},
    )
    assert run.main([str(write_job(tmp_path, process))]) == 0
    path = tmp_path / "output" / "tiny_lora" / "tiny_lora.safetensors"
    with safe_open(str(path), "pt") as f:
        keys = list(f.keys())
        assert f.metadata()["arch"] == arch
    assert "diffusion_model.double_blocks.0.img_attn.qkv.lokr_w1" in keys
    assert any(k.startswith("diffusion_model.single_blocks.0.linear1.lokr_") for k in keys)
    assert all(k.startswith("diffusion_model.") and ".lokr_" in k for k in keys)
    pipe = getattr(diffusers, PIPELINES[arch]).from_pretrained(str(tiny(arch)))
    pipe.set_progress_bar_config(disable=True)
    pipe.load_lora_weights(str(path))
    loaded = [n for n, _ in pipe.transformer.named_parameters() if ".lokr_" in n]
    assert len(loaded) == len(keys)
    image = pipe(
        prompt="a photo of r0b0t on a blue background",
        width=64,
        height=64,
        num_inference_steps=3,
        guidance_scale=3.0,
        generator=torch.Generator("cpu").manual_seed(42),
    ).images[0]
    ours = np.asarray(Image.open(tmp_path / "output" / "tiny_lora" / "samples" / "000000004_0.png"), dtype=np.int16)
    assert np.abs(np.asarray(image, dtype=np.int16) - ours).max() <= 2
    # and the LoKr did change the model's output
    plain = getattr(diffusers, PIPELINES[arch]).from_pretrained(str(tiny(arch)))
    plain.set_progress_bar_config(disable=True)
    base = plain(
        prompt="a photo of r0b0t on a blue background",
        width=64,
        height=64,
        num_inference_steps=3,
        guidance_scale=3.0,
        generator=torch.Generator("cpu").manual_seed(42),
    ).images[0]
    assert np.abs(np.asarray(base, dtype=np.int16) - ours).max() > 0
