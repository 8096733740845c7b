"""ai-toolkit's training options end to end on the tiny FLUX.2 model: masks, network_weight, loss_multiplier,
regularisation datasets, DataLoader workers, DOP, guidance bypass, loss types."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
import torch
from PIL import Image

from extensions_built_in.sd_trainer import SDTrainer as sdtrainer_module
from extensions_built_in.sd_trainer.SDTrainer import SDTrainer
from tests.jobs.train_helpers import copy_dataset, train_process, write_job
from toolkit.job import get_job
from toolkit.train.preservation import Preservation


def _masks(images, folder):
    folder.mkdir()
    for image in sorted(images.glob("*.png"))[:2]:
        width, height = Image.open(image).size
        array = np.full((height, width), 255, dtype=np.uint8)
        array[:, : width // 2] = 0
        Image.fromarray(array, "L").save(folder / image.name)
    return folder


@pytest.fixture(scope="module")
def options_run(tmp_path_factory):
    """One 4-step run with every option on; records what each step saw."""
    tmp = tmp_path_factory.mktemp("options")
    process = train_process(
        tmp,
        steps=4,
        train={
            "diff_output_preservation": True,
            "diff_output_preservation_class": "robot",
            "diff_output_preservation_multiplier": 0.5,
            "bypass_guidance_embedding": True,
            "loss_type": "wavelet",
            "noise_offset": 0.1,
            "reg_weight": 0.5,
            "disable_sampling": True,
        },
    )
    data = tmp / "data"
    process["datasets"][0].update(
        mask_path=str(_masks(data, tmp / "masks")),
        network_weight=0.5,
        loss_multiplier=2.0,
        num_workers=2,
        trigger_word="sks",
    )
    process["datasets"].append(
        {
            "folder_path": str(copy_dataset(tmp / "reg", 2)),
            "is_reg": True,
            "resolution": [64],
            "caption_dropout_rate": 0.0,
            "cache_latents": True,
        }
    )
    seen = {"steps": [], "preservation": [], "noise": []}
    original_compute, original_loss = SDTrainer.compute_loss, Preservation.loss
    original_noise = sdtrainer_module.sample_noise

    def sample_noise(shape, generator, **kwargs):
        seen["noise"].append(kwargs["noise_offset"])
        return original_noise(shape, generator, **kwargs)

    def compute_loss(self, batch, lo, hi, size):
        seen["steps"].append(
            {
                "is_reg": batch.is_reg.tolist(),
                "captions": list(batch.captions),
                "masked": batch.masks is not None,
                "weights": batch.network_weights.tolist(),
            }
        )
        return original_compute(self, batch, lo, hi, size)

    def preservation_loss(self, *args, **kwargs):
        value = original_loss(self, *args, **kwargs)
        seen["preservation"].append(value.item())
        return value

    SDTrainer.compute_loss, Preservation.loss = compute_loss, preservation_loss
    sdtrainer_module.sample_noise = sample_noise
    try:
        job = get_job(str(write_job(tmp, process)))
        trainer = job.processes[0]
        trainer.run()
    finally:
        SDTrainer.compute_loss, Preservation.loss = original_compute, original_loss
        sdtrainer_module.sample_noise = original_noise
    return trainer, seen, tmp / "output" / "tiny_lora"


def test_dataloader_workers_end_with_the_run(options_run):
    """num_workers: 2 above; persistent workers left to the garbage collector block whoever triggers it."""
    assert multiprocessing.active_children() == []


def test_reg_batches_alternate_without_trigger(options_run):
    _, seen, folder = options_run
    regs = [all(step["is_reg"]) for step in seen["steps"]]
    assert regs == [True, False, True, False]  # steps 1 and 3; step 4 saves
    for step in seen["steps"]:
        if all(step["is_reg"]):
            assert not any("sks" in c for c in step["captions"]) and set(step["weights"]) == {1.0}
        else:
            assert all(c.startswith("a photo of sks") for c in step["captions"]) and set(step["weights"]) == {0.5}
    assert (folder / "tiny_lora.safetensors").is_file()


def test_dop_prompts_are_cached_and_start_at_zero(options_run):
    trainer, seen, _ = options_run
    assert "a photo of robot, a small orange robot with an antenna, on a green background" in trainer.text_cache
    # the LoRA starts as a no-op (B = 0): LoRA-on and LoRA-off predictions agree exactly at step 1
    assert seen["preservation"][0] == 0.0 and seen["preservation"][-1] > 0.0
    assert len(seen["preservation"]) == 4


def test_masks_reach_the_trainer_and_guidance_is_bypassed(options_run):
    trainer, seen, _ = options_run
    assert any(step["masked"] for step in seen["steps"] if not all(step["is_reg"]))
    assert trainer.model.guidance_embedder() is not None  # FLUX.2-dev has one to bypass


def test_bypass_guidance_changes_the_training_prediction(options_run):
    trainer, _, _ = options_run
    latents = torch.randn(1, 128, 4, 4)
    embeds = trainer.batch_prompt_embeds(
        ["a photo of sks, a small orange robot with an antenna, on a green background"]
    )
    t = torch.tensor([500.0])
    with torch.no_grad():
        bypassed = trainer.predict(latents, t, embeds)
        trainer.config.train.bypass_guidance_embedding = False
        try:
            plain = trainer.predict(latents, t, embeds)
        finally:
            trainer.config.train.bypass_guidance_embedding = True
    assert not torch.allclose(bypassed, plain)


def test_noise_offset_reaches_the_training_noise(options_run):
    """train.noise_offset is passed to every noise draw (its maths: tests/test_train_math.py)."""
    _, seen, _ = options_run
    assert seen["noise"] == [0.1] * 4
