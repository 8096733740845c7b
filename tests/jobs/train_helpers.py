"""Tiny training jobs for the trainer tests: a YAML on disk, run in-process or as a subprocess."""

from __future__ import annotations

import copy
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from toolkit.paths import ROOT

DEMO_DATA = ROOT / "config" / "examples" / "demo_dataset"


def copy_dataset(dst: Path, count: int = 4) -> Path:
    dst.mkdir(parents=True, exist_ok=True)
    for image in sorted(DEMO_DATA.glob("*.png"))[:count]:
        shutil.copy(image, dst / image.name)
        shutil.copy(image.with_suffix(".txt"), dst / image.with_suffix(".txt").name)
    return dst


def deep_update(base: dict, changes: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_update(out[key], value)
        else:
            out[key] = value
    return out


def train_process(tmp_path: Path, arch: str = "flux2", tiny_id: str | None = None, steps: int = 8, **changes) -> dict:
    """A complete sd_trainer process on a tiny model; `changes` deep-update it."""
    data = copy_dataset(tmp_path / "data")
    process = {
        "type": "sd_trainer",
        "training_folder": str(tmp_path / "output"),
        "device": "cpu",
        "trigger_word": "r0b0t",
        "network": {"type": "lora", "linear": 4, "linear_alpha": 4},
        "save": {"dtype": "float32", "save_every": 4, "max_step_saves_to_keep": 2},
        "datasets": [
            {"folder_path": str(data), "caption_dropout_rate": 0.0, "resolution": [64], "cache_latents": True}
        ],
        "train": {
            "batch_size": 2,
            "steps": steps,
            "optimizer": "adamw",
            "lr": 2e-3,
            "dtype": "fp32",
            "gradient_checkpointing": False,
            "cache_text_embeddings": True,
            "seed": 3,
            "timestep_type": "linear",
        },
        "model": {"name_or_path": f"tiny:{tiny_id or arch}", "arch": arch, "dtype": "fp32"},
        "sample": {
            "sample_every": 4,
            "width": 64,
            "height": 64,
            "sample_steps": 3,
            "format": "png",
            "guidance_scale": 3.0,
            "prompts": ["a photo of [trigger] on a blue background", "[trigger] robot --seed 9 --w 48 --h 32"],
        },
    }
    return deep_update(process, changes)


def write_job(tmp_path: Path, process: dict, name: str = "tiny_lora") -> Path:
    job = {"job": "extension", "config": {"name": name, "process": [process]}, "meta": {"name": "[name]"}}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(job, sort_keys=False))
    return path


def run_subprocess(job: Path, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "run.py", str(job)], cwd=ROOT, capture_output=True, text=True, timeout=timeout
    )


def start_subprocess(job: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "run.py", str(job)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
