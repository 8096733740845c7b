"""Every shipped example config validates; the demo config trains end to end on CPU."""

from __future__ import annotations

import shutil
import subprocess
import sys

import pytest
import yaml

from toolkit.config import load_raw_config, parse_job_config
from toolkit.progress import read_events
from toolkit.paths import ROOT

EXAMPLES = sorted((ROOT / "config" / "examples").glob("*.yaml"))
REQUIRED = {
    "train_lora_flux2_24gb.yaml",
    "train_lora_flux2_klein_4b_24gb.yaml",
    "train_lora_flux2_klein_9b_24gb.yaml",
    "train_lora_flux_24gb.yaml",
    "train_lora_flux_schnell_24gb.yaml",
    "train_lora_flux2_tiny_demo.yaml",
    "train_lora_flux2_edit_24gb.yaml",
    "generate_flux2.yaml",
    "generate_flux2_klein_4b.yaml",
    "generate_flux2_klein_9b.yaml",
    "generate_flux.yaml",
}


def test_required_examples_exist():
    assert REQUIRED <= {p.name for p in EXAMPLES}


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_example_validates_and_its_prompts_parse(path):
    from toolkit.prompt import parse_prompt
    from toolkit.util.get_model import get_model_class

    config = parse_job_config(load_raw_config(path), str(path))
    for process in config.config.process:
        model_cls = get_model_class(process.model)
        assert model_cls.arch == process.model.arch
        prompts = (
            process.generate.prompts
            if process.type == "to_folder"
            else [s.prompt for s in process.sample.sample_items()]
        )
        assert prompts
        for prompt in prompts:
            spec = parse_prompt(prompt)
            for side in (spec.width, spec.height):
                assert side is None or side % model_cls.capabilities.bucket_divisibility == 0


def test_24gb_examples_use_memory_settings():
    for name in (
        "train_lora_flux2_24gb.yaml",
        "train_lora_flux2_klein_9b_24gb.yaml",
        "train_lora_flux_24gb.yaml",
        "train_lora_flux2_edit_24gb.yaml",
    ):
        model = yaml.safe_load((ROOT / "config/examples" / name).read_text())["config"]["process"][0]["model"]
        assert model["quantize"] is True and model["quantize_te"] is True, name


@pytest.mark.slow
def test_demo_config_trains_on_cpu(tmp_path):
    """README's first command: the bundled demo, unchanged except for its output folder."""
    raw = yaml.safe_load((ROOT / "config/examples/train_lora_flux2_tiny_demo.yaml").read_text())
    raw["config"]["process"][0]["training_folder"] = str(tmp_path / "output")
    data = tmp_path / "demo_dataset"
    shutil.copytree(ROOT / "config/examples/demo_dataset", data)  # keep its latent cache out of the repo
    raw["config"]["process"][0]["datasets"][0]["folder_path"] = str(data)
    job = tmp_path / "demo.yaml"
    job.write_text(yaml.safe_dump(raw))
    result = subprocess.run([sys.executable, "run.py", str(job)], cwd=ROOT, capture_output=True, text=True, timeout=900)
    assert result.returncode == 0, result.stderr[-3000:]
    folder = tmp_path / "output" / "flux2_tiny_demo"
    assert (folder / "flux2_tiny_demo.safetensors").is_file() and (folder / "loss.png").is_file()
    assert len(list((folder / "samples").glob("*.jpg"))) == 8  # 2 prompts at steps 0, 40, 80, 120
    assert read_events(folder)[-1]["state"] == "finished"
