"""ai-toolkit job files run here: the jobs its web UI writes and its FLUX.1 example configs.

The jobs are data transcribed from ai-toolkit (ostris/ai-toolkit): its web UI's defaults
(``ui/src/app/jobs/new/jobConfig.ts`` defaultJobConfig / defaultDatasetConfig, ``ui/src/helpers/
defaultSamples.ts`` defaultSampleConfig, and the per-model defaults ``options.tsx`` applies when FLUX.2,
klein 4B or klein 9B is selected; ``SimpleJob.tsx`` writes ``control_path_1..3`` and ``ctrl_img_1..3`` for
edit runs and ``network.type: lokr`` for LoKr), and its ``config/examples/train_lora_flux_24gb.yaml`` and
``train_lora_flux_schnell_24gb.yaml`` (keys and values, without their comments).

Each job validates untouched, imports through toolkit.aitk_import, and trains (``slow``) with only what
cannot run here changed: the model path (a tiny model), the folders (copies of the demo data), the device
(cpu), the CUDA-only optimizer (adamw8bit -> adamw) and the run length (steps, save and sample interval,
number of samples, their size and sampling steps).
"""

from __future__ import annotations

import copy
import json
import shutil
from pathlib import Path

import pytest
import yaml

from tests.jobs.train_helpers import ROOT, copy_dataset
from toolkit.aitk_import import import_aitk_job
from toolkit.config import parse_job_config

# --- ai-toolkit web UI defaults (transcribed data) ---------------------------------------------------------

AITK_UI_DATASET = {
    "folder_path": "/path/to/images/folder",
    "mask_path": None,
    "mask_min_value": 0.1,
    "default_caption": "",
    "caption_ext": "txt",
    "caption_dropout_rate": 0.05,
    "cache_latents_to_disk": False,
    "is_reg": False,
    "network_weight": 1,
    "resolution": [512, 768, 1024],
    "controls": [],
    "shrink_video_to_frames": True,
    "num_frames": 1,
    "flip_x": False,
    "flip_y": False,
    "num_repeats": 1,
}
AITK_UI_PROMPTS = [
    "woman with red hair, playing chess at the park, bomb going off in the background",
    "a woman holding a coffee cup, in a beanie, sitting at a cafe",
    "a horse is a DJ at a night club, fish eye lens, smoke machine, lazer lights, holding a martini",
    "a man showing off his cool new t shirt at the beach, a shark is jumping out of the water in the background",
    "a bear building a log cabin in the snow covered mountains",
    "woman playing the guitar, on stage, singing a song, laser lights, punk rocker",
    "hipster man with a beard, building a chair, in a wood shop",
    "photo of a man, white background, medium shot, modeling clothing, studio lighting, white backdrop",
    "a man holding a sign that says, 'this is a sign'",
    "a bulldog, in a post apocalyptic world, with a shotgun, in a leather jacket, in a desert, with a motorcycle",
]
AITK_UI_SAMPLE = {
    "sampler": "flowmatch",
    "sample_every": 250,
    "sample_start_step": 0,
    "width": 1024,
    "height": 1024,
    "samples": [{"prompt": p} for p in AITK_UI_PROMPTS],
    "neg": "",
    "seed": 42,
    "walk_seed": True,
    "guidance_scale": 4,
    "sample_steps": 30,
    "num_frames": 1,
    "fps": 1,
}
AITK_UI_JOB = {
    "job": "extension",
    "config": {
        "name": "my_first_lora_v1",
        "process": [
            {
                "type": "diffusion_trainer",
                "training_folder": "output",
                "sqlite_db_path": "./aitk_db.db",
                "device": "cuda",
                "trigger_word": None,
                "performance_log_every": 10,
                "network": {
                    "type": "lora",
                    "linear": 32,
                    "linear_alpha": 32,
                    "conv": 16,
                    "conv_alpha": 16,
                    "lokr_full_rank": True,
                    "lokr_factor": -1,
                    "network_kwargs": {"ignore_if_contains": []},
                },
                "save": {
                    "dtype": "bf16",
                    "save_every": 250,
                    "max_step_saves_to_keep": 4,
                    "save_format": "diffusers",
                    "push_to_hub": False,
                },
                "datasets": [AITK_UI_DATASET],
                "train": {
                    "batch_size": 1,
                    "bypass_guidance_embedding": True,
                    "steps": 3000,
                    "gradient_accumulation": 1,
                    "train_unet": True,
                    "train_text_encoder": False,
                    "gradient_checkpointing": True,
                    "noise_scheduler": "flowmatch",
                    "optimizer": "adamw8bit",
                    "timestep_type": "sigmoid",
                    "content_or_style": "balanced",
                    "optimizer_params": {"weight_decay": 1e-4},
                    "unload_text_encoder": False,
                    "cache_text_embeddings": False,
                    "lr": 0.0001,
                    "ema_config": {"use_ema": False, "ema_decay": 0.99},
                    "skip_first_sample": False,
                    "force_first_sample": False,
                    "disable_sampling": False,
                    "dtype": "bf16",
                    "diff_output_preservation": False,
                    "diff_output_preservation_multiplier": 1.0,
                    "diff_output_preservation_class": "person",
                    "switch_boundary_every": 1,
                    "loss_type": "mse",
                },
                "logging": {"log_every": 1, "use_ui_logger": True},
                "model": {
                    "name_or_path": "ostris/Flex.1-alpha",
                    "quantize": True,
                    "qtype": "qfloat8",
                    "quantize_te": True,
                    "qtype_te": "qfloat8",
                    "arch": "flex1",
                    "low_vram": False,
                    "model_kwargs": {},
                    "compile": False,
                },
                "sample": AITK_UI_SAMPLE,
            }
        ],
    },
    "meta": {"name": "[name]", "version": "1.0"},
}
# options.tsx: the values written when the model is selected (FLUX.2, klein 4B and klein 9B share them)
_FLUX2_FAMILY = {
    "model.quantize": True,
    "model.quantize_te": True,
    "model.low_vram": True,
    "train.unload_text_encoder": False,
    "sample.sampler": "flowmatch",
    "train.noise_scheduler": "flowmatch",
    "train.timestep_type": "weighted",
    "model.qtype": "qfloat8",
    "model.model_kwargs": {"match_target_res": False},
}
AITK_UI_ARCH_DEFAULTS = {
    "flux2": {"model.arch": "flux2", "model.name_or_path": "black-forest-labs/FLUX.2-dev", **_FLUX2_FAMILY},
    "flux2_klein_4b": {
        "model.arch": "flux2_klein_4b",
        "model.name_or_path": "black-forest-labs/FLUX.2-klein-base-4B",
        **_FLUX2_FAMILY,
    },
    "flux2_klein_9b": {
        "model.arch": "flux2_klein_9b",
        "model.name_or_path": "black-forest-labs/FLUX.2-klein-base-9B",
        **_FLUX2_FAMILY,
    },
}

# --- ai-toolkit's FLUX.1 example configs (transcribed data) -------------------------------------------------

_FLUX1_EXAMPLE = {
    "job": "extension",
    "config": {
        "name": "my_first_flux_lora_v1",
        "process": [
            {
                "type": "sd_trainer",
                "training_folder": "output",
                "device": "cuda:0",
                "network": {"type": "lora", "linear": 16, "linear_alpha": 16},
                "save": {"dtype": "float16", "save_every": 250, "max_step_saves_to_keep": 4, "push_to_hub": False},
                "datasets": [
                    {
                        "folder_path": "/path/to/images/folder",
                        "caption_ext": "txt",
                        "caption_dropout_rate": 0.05,
                        "shuffle_tokens": False,
                        "cache_latents_to_disk": True,
                        "resolution": [512, 768, 1024],
                    }
                ],
                "train": {
                    "batch_size": 1,
                    "steps": 2000,
                    "gradient_accumulation_steps": 1,
                    "train_unet": True,
                    "train_text_encoder": False,
                    "gradient_checkpointing": True,
                    "noise_scheduler": "flowmatch",
                    "optimizer": "adamw8bit",
                    "lr": "1e-4",
                    "ema_config": {"use_ema": True, "ema_decay": 0.99},
                    "dtype": "bf16",
                },
                "model": {"name_or_path": "black-forest-labs/FLUX.1-dev", "is_flux": True, "quantize": True},
                "sample": {
                    "sampler": "flowmatch",
                    "sample_every": 250,
                    "sample_start_step": 0,
                    "width": 1024,
                    "height": 1024,
                    "prompts": AITK_UI_PROMPTS,
                    "neg": "",
                    "seed": 42,
                    "walk_seed": True,
                    "guidance_scale": 4,
                    "sample_steps": 20,
                },
            }
        ],
    },
    "meta": {"name": "[name]", "version": "1.0"},
}


def _set(job: dict, dotted: str, value) -> None:
    node = job["config"]["process"][0]
    *parents, last = dotted.split(".")
    for part in parents:
        node = node[part]
    node[last] = copy.deepcopy(value)


def aitk_ui_job(arch: str) -> dict:
    job = copy.deepcopy(AITK_UI_JOB)
    for dotted, value in AITK_UI_ARCH_DEFAULTS[arch].items():
        _set(job, dotted, value)
    return job


def flux2_edit_job() -> dict:
    """FLUX.2-dev edit: two reference folders (Control Dataset 1 and 2) and two control images per sample."""
    job = aitk_ui_job("flux2")
    process = job["config"]["process"][0]
    process["datasets"][0].update(control_path_1="/path/to/control_1", control_path_2="/path/to/control_2")
    for sample in process["sample"]["samples"]:
        sample.update(ctrl_img_1="/path/to/ctrl_1.png", ctrl_img_2="/path/to/ctrl_2.png")
    return job


def lokr_job() -> dict:
    job = aitk_ui_job("flux2_klein_4b")
    job["config"]["process"][0]["network"].update(type="lokr", lokr_factor=4)
    return job


def flux1_schnell_example() -> dict:
    job = copy.deepcopy(_FLUX1_EXAMPLE)
    process = job["config"]["process"][0]
    process["model"].update(
        name_or_path="black-forest-labs/FLUX.1-schnell", assistant_lora_path="ostris/FLUX.1-schnell-training-adapter"
    )
    process["sample"].update(guidance_scale=1, sample_steps=4)
    return job


UI_JOBS = {
    "ui-flux2-dev": lambda: aitk_ui_job("flux2"),
    "ui-flux2-dev-edit": flux2_edit_job,
    "ui-klein-4b": lambda: aitk_ui_job("flux2_klein_4b"),
    "ui-klein-9b": lambda: aitk_ui_job("flux2_klein_9b"),
    "ui-klein-4b-lokr": lokr_job,
}
EXAMPLE_JOBS = {
    "example-flux1-dev": lambda: copy.deepcopy(_FLUX1_EXAMPLE),
    "example-flux1-schnell": flux1_schnell_example,
}
ALL_JOBS = {**UI_JOBS, **EXAMPLE_JOBS}
TINY = {
    "flux2": "tiny:flux2",
    "flux2_klein_4b": "tiny:flux2_klein_4b",
    "flux2_klein_9b": "tiny:flux2_klein_9b",
    "flux": "tiny:flux",
}
NOT_SUPPORTED_YET = {"example-flux1-schnell": "the assistant (training adapter) LoRA of FLUX.1-schnell"}


@pytest.mark.parametrize("name", ALL_JOBS)
def test_aitk_job_validates_unchanged(name):
    config = parse_job_config(ALL_JOBS[name](), f"{name}.json")
    process = config.config.process[0]
    assert process.type == "sd_trainer"
    if name == "ui-flux2-dev-edit":
        assert process.datasets[0].control_paths == ["/path/to/control_1", "/path/to/control_2"]
        assert process.sample.sample_items()[0].ctrl_imgs == ["/path/to/ctrl_1.png", "/path/to/ctrl_2.png"]
    if name.startswith("ui-"):
        assert process.model.dtype == "bf16" and process.model.qtype == "qfloat8"
        assert process.train.timestep_type == "weighted"


@pytest.mark.parametrize("name", UI_JOBS)
def test_aitk_ui_job_imports(name):
    """What both UIs call: the job_config.json text -> our YAML (valid as it stands) and the folders."""
    job = import_aitk_job(json.dumps(UI_JOBS[name]()), filename=".job_config.json")
    assert parse_job_config(yaml.safe_load(job.yaml), "imported.yaml").model_dump() == job.config.model_dump()
    expected = ["/path/to/images/folder"]
    if name == "ui-flux2-dev-edit":
        expected += ["/path/to/control_1", "/path/to/control_2"]
    assert job.folders == expected
    assert "config.process[0].sqlite_db_path" in dict(job.ignored)


def cpu_job(job: dict, tmp_path: Path) -> dict:
    """The changes a CPU test run needs, and nothing else (module docstring)."""
    job = copy.deepcopy(job)
    process = job["config"]["process"][0]
    process["model"]["name_or_path"] = TINY[process["model"].get("arch") or "flux"]
    process["device"] = "cpu"
    process["training_folder"] = str(tmp_path / "output")
    if process["train"]["optimizer"] == "adamw8bit":
        process["train"]["optimizer"] = "adamw"
    process["train"]["steps"] = 2
    process["save"]["save_every"] = 2
    # 10 prompts x 30 steps at 1024 px through quantized (quanto, emulated on the CPU) tiny models take CPU
    # hours: how many samples, their size and steps are run length too
    process["sample"].update(sample_every=2, width=64, height=64, sample_steps=2)
    if process["sample"].get("samples"):
        process["sample"]["samples"] = process["sample"]["samples"][:2]
    else:
        process["sample"]["prompts"] = process["sample"]["prompts"][:2]
    for i, dataset in enumerate(process["datasets"]):
        dataset["folder_path"] = str(copy_dataset(tmp_path / f"data{i}", count=2))
        for key in [k for k in dataset if k.startswith("control_path") and dataset[k]]:
            folder = tmp_path / f"{key}_{i}"
            folder.mkdir()
            for target in Path(dataset["folder_path"]).glob("*.png"):
                shutil.copy(ROOT / "config/examples/demo_edit_dataset/control/edit_00.png", folder / target.name)
            dataset[key] = str(folder)
    for sample in process["sample"].get("samples") or []:
        for key in [k for k in sample if k.startswith("ctrl_img")]:
            sample[key] = str(ROOT / "config/examples/demo_edit_dataset/control/edit_01.png")
    return job


@pytest.mark.slow
@pytest.mark.parametrize("name", ALL_JOBS)
def test_aitk_job_trains_on_cpu_and_saves_a_lora(name, tmp_path, tiny):
    import run

    for arch in TINY:
        tiny(arch)  # build once, before the timed run
    job = cpu_job(ALL_JOBS[name](), tmp_path)
    path = tmp_path / (".job_config.json" if name.startswith("ui-") else f"{name}.yaml")
    path.write_text(json.dumps(job) if path.suffix == ".json" else yaml.safe_dump(job, sort_keys=False))
    code = run.main([str(path)])
    if name in NOT_SUPPORTED_YET:
        assert code == 1
        pytest.xfail(f"not supported yet: {NOT_SUPPORTED_YET[name]}")
    assert code == 0
    folder = tmp_path / "output" / job["config"]["name"]
    assert (folder / f"{job['config']['name']}.safetensors").is_file()
