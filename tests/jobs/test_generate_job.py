"""`job: generate` end to end through run.py, compared with diffusers' own pipeline."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import run
from tests.models.test_model_parity import PIPELINES, TINY, single_file
from toolkit.paths import ROOT

pytestmark = pytest.mark.slow  # end-to-end: builds / loads tiny models or runs jobs (see pyproject.toml)


def write_job(tmp_path, model: dict, prompts, **generate) -> Path:
    generate = {
        "width": 64,
        "height": 64,
        "seed": 11,
        "guidance_scale": 3.0,
        "sample_steps": 2,
        "prompts": prompts,
        **generate,
    }
    job = {
        "job": "generate",
        "config": {
            "name": "tiny_gen",
            "process": [
                {
                    "type": "to_folder",
                    "output_folder": str(tmp_path / "out" / "[name]"),
                    "device": "cpu",
                    "generate": generate,
                    "model": {"dtype": "fp32", **model},
                }
            ],
        },
        "meta": {"name": "[name]"},
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    return path


def pipeline_image(folder, tiny_id, prompt, seed, width=64, height=64, guidance=3.0, steps=2):
    import diffusers
    import torch

    pipe = getattr(diffusers, PIPELINES[tiny_id]).from_pretrained(str(folder))
    pipe.set_progress_bar_config(disable=True)
    generator = torch.Generator("cpu").manual_seed(seed)
    return pipe(
        prompt=prompt,
        width=width,
        height=height,
        num_inference_steps=steps,
        guidance_scale=guidance,
        generator=generator,
    ).images[0]


def assert_same_image(path: Path, expected: Image.Image):
    got = np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)
    want = np.asarray(expected.convert("RGB"), dtype=np.int16)
    assert got.shape == want.shape
    assert np.abs(got - want).max() <= 1, "generated image differs from diffusers' pipeline output"


@pytest.mark.parametrize("tiny_id", list(TINY))
@pytest.mark.parametrize("layout", ["diffusers", "single_file"])
def test_generate_job_equals_pipeline(tmp_path, tiny, tiny_id, layout):
    folder = tiny(tiny_id, "diffusers")
    if layout == "diffusers":
        model = {"name_or_path": str(folder), "arch": TINY[tiny_id]}
    else:
        model = {
            "name_or_path": str(single_file(tiny(tiny_id, "single_file"))),
            "arch": TINY[tiny_id],
            "extras_name_or_path": str(folder),
        }
    job = write_job(tmp_path, model, ["a tiny red fox", "a lighthouse --w 48 --h 32 --seed 5 --cfg 2.0 --steps 3"])
    assert run.main([str(job)]) == 0
    out = tmp_path / "out" / "tiny_gen"
    assert_same_image(out / "0000_11.png", pipeline_image(folder, tiny_id, "a tiny red fox", 11))
    assert_same_image(
        out / "0001_5.png",
        pipeline_image(folder, tiny_id, "a lighthouse", 5, width=48, height=32, guidance=2.0, steps=3),
    )
    settings = json.loads((out / "0001_5.json").read_text())
    assert settings["width"] == 48 and settings["sample_steps"] == 3 and settings["arch"] == TINY[tiny_id]


def test_generate_from_hub_repo_id_offline_cache(tmp_path):
    """A hub repo id resolves through huggingface_hub's cache (HF_HUB_OFFLINE=1: no network)."""
    from toolkit.tiny.export import save_hub_cache

    cache = tmp_path / "hub"
    save_hub_cache("flux2_klein_4b", cache, "black-forest-labs/FLUX.2-klein-base-4B")
    job = write_job(
        tmp_path, {"name_or_path": "black-forest-labs/FLUX.2-klein-base-4B", "arch": "flux2_klein_4b"}, ["a fox"]
    )
    env = {**os.environ, "HF_HUB_CACHE": str(cache), "HF_HUB_OFFLINE": "1", "HF_TOKEN": "hf_dummy"}
    result = subprocess.run(
        [sys.executable, "run.py", str(job)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert (tmp_path / "out" / "tiny_gen" / "0000_11.png").is_file()


def test_prompt_file_and_defaults_from_the_architecture(tmp_path, tiny):
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("a fox\n\na cat --seed 3\n")
    folder = tiny("flux2_klein_4b", "diffusers")
    job = write_job(
        tmp_path,
        {"name_or_path": str(folder), "arch": "flux2_klein_4b", "low_vram": True},
        [],
        prompt_file=str(prompts),
        ext="jpg",
        sample_steps=1,
    )
    raw = yaml.safe_load(job.read_text())
    gen = raw["config"]["process"][0]["generate"]
    del gen["prompts"], gen["guidance_scale"]
    job.write_text(yaml.safe_dump(raw))
    assert run.main([str(job)]) == 0
    out = tmp_path / "out" / "tiny_gen"
    assert sorted(p.name for p in out.glob("*.jpg")) == ["0000_11.jpg", "0001_3.jpg"]
    assert json.loads((out / "0000_11.json").read_text())["guidance_scale"] == 4.0  # klein's default


def test_bad_prompt_flag_and_size_fail_before_loading(tmp_path, caplog):
    job = write_job(
        tmp_path, {"name_or_path": str(tmp_path / "nowhere"), "arch": "flux2"}, ["a fox --seeds 3", "a cat --w 100"]
    )
    assert run.main([str(job)]) == 1
    text = caplog.text
    assert "generate.prompts[0]" in text and "did you mean --seed" in text
    assert "width 100" in text and "multiple of 16" in text
    assert "nowhere" not in text  # failed on the prompts, before resolving any weights


def test_cuda_device_without_cuda_is_a_clear_error(tmp_path, caplog, tiny):
    import torch

    if torch.cuda.is_available():
        pytest.skip("machine has CUDA")
    job = write_job(tmp_path, {"name_or_path": str(tiny("flux2", "diffusers")), "arch": "flux2"}, ["a fox"])
    raw = yaml.safe_load(job.read_text())
    raw["config"]["process"][0]["device"] = "cuda:0"
    job.write_text(yaml.safe_dump(raw))
    assert run.main([str(job)]) == 1
    assert "CUDA is not available" in caplog.text and "config.process[0].device" in caplog.text


def test_recover_runs_the_next_config_and_exits_nonzero(tmp_path, tiny):
    bad = tmp_path / "bad"
    bad.mkdir()
    bad_job = write_job(bad, {"name_or_path": str(bad / "missing.safetensors"), "arch": "flux2"}, ["a fox"])
    good = tmp_path / "good"
    good.mkdir()
    good_job = write_job(
        good,
        {"name_or_path": str(tiny("flux2_klein_4b", "diffusers")), "arch": "flux2_klein_4b"},
        ["a fox"],
        sample_steps=1,
    )
    assert run.main([str(bad_job), str(good_job)]) == 1
    assert not (good / "out" / "tiny_gen").exists()  # without --recover, stops at the first failure
    assert run.main([str(bad_job), str(good_job), "--recover"]) == 1
    assert (good / "out" / "tiny_gen" / "0000_11.png").is_file()


EDIT_REFS = ROOT / "config" / "examples" / "demo_edit_dataset" / "control"


def test_generate_with_reference_images_equals_the_pipeline(tmp_path, tiny):
    """generate.ctrl_img: every prompt edits from the references, exactly as `pipe(image=[...])` does."""
    import diffusers
    import torch

    folder = tiny("flux2_klein_4b", "diffusers")
    refs = [str(EDIT_REFS / "edit_00.png"), str(EDIT_REFS / "edit_01.png")]
    job = write_job(
        tmp_path, {"name_or_path": str(folder), "arch": "flux2_klein_4b"}, ["make the robot blue"], ctrl_img=refs
    )
    assert run.main([str(job)]) == 0
    out = tmp_path / "out" / "tiny_gen"
    pipe = diffusers.Flux2KleinPipeline.from_pretrained(str(folder))
    pipe.set_progress_bar_config(disable=True)
    expected = pipe(
        prompt="make the robot blue",
        image=[Image.open(p) for p in refs],
        width=64,
        height=64,
        num_inference_steps=2,
        guidance_scale=3.0,
        generator=torch.Generator("cpu").manual_seed(11),
    ).images[0]
    assert_same_image(out / "0000_11.png", expected)
    assert json.loads((out / "0000_11.json").read_text())["ctrl_img"] == refs
    plain = pipeline_image(folder, "flux2_klein_4b", "make the robot blue", 11)
    assert np.abs(np.asarray(plain, dtype=np.int16) - np.asarray(expected, dtype=np.int16)).max() > 0


@pytest.mark.parametrize(
    "arch, ctrl_img, message",
    [
        (
            "flux",
            "edit_00.png",
            r"generate.ctrl_img: flux does not take reference images \(FLUX.2 models do\); remove it",
        ),
        (
            "flux2_klein_4b",
            ["edit_00.png"] * 5,
            "generate.ctrl_img: 5 reference images, but flux2_klein_4b conditions on at most 4",
        ),
        ("flux2", "missing.png", "generate.ctrl_img: '.*missing.png' does not exist; set it to a reference image file"),
    ],
)
def test_bad_reference_images_fail_before_loading(tmp_path, caplog, arch, ctrl_img, message):
    import re

    refs = [str(EDIT_REFS / p) for p in ctrl_img] if isinstance(ctrl_img, list) else str(EDIT_REFS / ctrl_img)
    job = write_job(tmp_path, {"name_or_path": str(tmp_path / "nowhere"), "arch": arch}, ["a fox"], ctrl_img=refs)
    assert run.main([str(job)]) == 1
    assert re.search(message, caplog.text), caplog.text[-2000:]
    assert "nowhere" not in caplog.text  # refused before resolving any weights
