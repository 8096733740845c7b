"""Edit (reference image) training end to end on tiny FLUX.2 models and the bundled edit pairs."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import pytest
import torch
import yaml
from PIL import Image
from safetensors import safe_open

import run
from tests.jobs.train_helpers import ROOT, write_job
from toolkit.progress import read_events

pytestmark = pytest.mark.slow  # end-to-end: builds / loads tiny models or runs jobs (see pyproject.toml)

EDIT_DATA = ROOT / "config" / "examples" / "demo_edit_dataset"
EXAMPLE = ROOT / "config" / "examples" / "train_lora_flux2_edit_24gb.yaml"


def copy_edit_dataset(dst: Path) -> Path:
    shutil.copytree(EDIT_DATA, dst, ignore=shutil.ignore_patterns("_latent_cache"))
    return dst


def tiny_edit_process(tmp_path: Path, arch: str) -> dict:
    """The shipped edit example, changed only where a CPU test must: tiny model, paths, device, the CUDA-only
    optimizer and quantization, run length and sizes. Its control_path, ctrl_img and caching stay."""
    raw = yaml.safe_load(EXAMPLE.read_text())
    process = raw["config"]["process"][0]
    data = copy_edit_dataset(tmp_path / "edits")
    process["training_folder"] = str(tmp_path / "output")
    process["device"] = "cpu"
    process["network"].update(linear=4, linear_alpha=4)
    process["save"].update(dtype="float32", save_every=2)
    process["datasets"][0].update(
        folder_path=str(data), control_path=str(data / "control"), resolution=[64], caption_dropout_rate=0.0
    )
    process["train"].update(
        steps=4, batch_size=2, optimizer="adamw", lr=2e-3, dtype="fp32", gradient_checkpointing=False, seed=3
    )
    process["model"] = {"name_or_path": f"tiny:{arch}", "arch": arch, "dtype": "fp32"}
    refs = [str(data / "control" / "edit_00.png"), str(data / "control" / "edit_01.png")]
    process["sample"].update(
        sample_every=2, width=64, height=64, sample_steps=2, format="png", guidance_scale=3.0, ctrl_img=refs[0]
    )
    del process["sample"]["prompts"]
    process["sample"]["samples"] = [
        {"prompt": "make the robot blue"},
        {"prompt": "give the robot a red hat", "ctrl_img": refs, "width": 48},
    ]
    return process


@pytest.mark.parametrize("arch", ["flux2", "flux2_klein_4b"])
def test_edit_training_on_bundled_pairs(tmp_path, monkeypatch, arch):
    from extensions_built_in.diffusion_models.flux2.flux2_model import Flux2Model

    seen = []
    original = Flux2Model.get_noise_prediction

    def recording(self, noisy, timesteps, embeds, guidance_scale=1.0, references=None):
        if torch.is_grad_enabled():  # training steps (sampling runs the pipeline, not this hook)
            seen.append([tuple(ref.shape) for ref in references or []])
        return original(self, noisy, timesteps, embeds, guidance_scale, references)

    monkeypatch.setattr(Flux2Model, "get_noise_prediction", recording)
    sampled_with = []
    reference_images = Flux2Model.reference_images

    def recording_references(request):
        images = reference_images(request)
        sampled_with.append([image.size for image in images])
        return images

    monkeypatch.setattr(Flux2Model, "reference_images", staticmethod(recording_references))
    process = tiny_edit_process(tmp_path, arch)
    assert run.main([str(write_job(tmp_path, process, name="edit_lora"))]) == 0

    # every training step fed the batch's references: one reference of the batch's size, 96x96 or 128x96 px
    # (the tiny VAE makes one token per 4x4 pixels; the real one per 16x16)
    assert len(seen) == 4
    assert all(len(shapes) == 1 and shapes[0][1:] in {(128, 24, 24), (128, 24, 32)} for shapes in seen)
    folder = tmp_path / "output" / "edit_lora"
    assert (folder / "edit_lora.safetensors").is_file()
    with safe_open(str(folder / "edit_lora.safetensors"), "pt") as f:
        assert f.metadata()["arch"] == arch
        assert "diffusion_model.double_blocks.0.img_attn.qkv.lora_A.weight" in f.keys()
    samples = sorted(p.name for p in (folder / "samples").iterdir())
    assert samples == [f"{s:09d}_{i}.png" for s in (0, 2, 4) for i in (0, 1)]
    assert Image.open(folder / "samples" / "000000004_1.png").size == (48, 64)
    # sample.ctrl_img for the first prompt, the sample's own two references for the second; at steps 0, 2, 4
    assert sampled_with == [[(96, 96)], [(96, 96), (128, 96)]] * 3
    losses = [float(line.split(",")[1]) for line in (folder / "loss_log.csv").read_text().splitlines()[1:]]
    assert len(losses) == 4 and all(math.isfinite(loss) for loss in losses)
    assert read_events(folder)[-1]["state"] == "finished"
    # references were cached on disk beside them (the example sets cache_latents_to_disk), once each
    assert len(list((tmp_path / "edits" / "control" / "_latent_cache").glob("*.safetensors"))) == 6


@pytest.mark.parametrize(
    "change,message",
    [
        (
            {
                "model": {"name_or_path": "tiny:flux2_klein_4b", "arch": "flux2_klein_4b", "dtype": "fp32"},
                "sample": {"ctrl_img": ["control/edit_00.png"] * 5},
            },
            r"sample.ctrl_img: 5 reference images, but flux2_klein_4b conditions on at most 4",
        ),
        (
            {"datasets": [{"control_path": ["control"] * 11}]},
            r"datasets\[0\].control_path: 11 reference images, but flux2 conditions on at most 10",
        ),
        ({"sample": {"ctrl_img": "control/missing.png"}}, r"sample.ctrl_img: '.*missing.png' does not exist"),
        (
            {"model": {"name_or_path": "tiny:flux", "arch": "flux", "dtype": "fp32"}},
            r"datasets\[0\].control_path: reference / edit images .* not supported for flux \(supported for: flux2, ",
        ),
    ],
)
def test_bad_edit_configs_fail_before_the_model_loads(tmp_path, caplog, change, message):
    import re

    process = tiny_edit_process(tmp_path, "flux2")
    data = Path(process["datasets"][0]["folder_path"])
    if "datasets" in change:
        process["datasets"][0]["control_path"] = [str(data / p) for p in change["datasets"][0]["control_path"]]
    if "sample" in change:
        ctrl = change["sample"]["ctrl_img"]
        process["sample"]["ctrl_img"] = [str(data / p) for p in ctrl] if isinstance(ctrl, list) else str(data / ctrl)
        process["sample"]["samples"] = [{"prompt": "make the robot blue"}]
    if "model" in change:
        process["model"] = change["model"]
    assert run.main([str(write_job(tmp_path, process, name="bad_edit"))]) == 1
    assert re.search(message, caplog.text), caplog.text[-2000:]
    assert "loaded flux" not in caplog.text


def test_slice_batch_shards_the_references():
    from toolkit.data.dataset import TrainBatch

    batch = TrainBatch(
        indices=[0, 1, 2],
        captions=["a", "b", "c"],
        latents=torch.randn(3, 4, 2, 2),
        images=None,
        is_reg=torch.zeros(3, dtype=torch.bool),
        epoch=0,
        batch=0,
        references=[torch.randn(3, 4, 3, 3), torch.randn(3, 4, 2, 5)],
    )
    shard = batch.slice(1, 3)
    assert shard.indices == [1, 2] and shard.latents.shape[0] == 2
    assert [tuple(r.shape) for r in shard.references] == [(2, 4, 3, 3), (2, 4, 2, 5)]
    assert torch.equal(shard.references[1], batch.references[1][1:3])
    assert dataclass_replace(batch, references=None).slice(0, 1).references is None


def dataclass_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)
