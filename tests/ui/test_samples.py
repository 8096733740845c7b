"""toolkit.ui.samples: gallery captions as the trainer uses the prompts (trigger replaced, flags out)."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import yaml

from toolkit.ui.samples import sample_captions

ROOT = Path(__file__).resolve().parents[2]
TINY = yaml.safe_load((ROOT / "config/examples/train_lora_flux2_tiny_demo.yaml").read_text())


def job(trigger, **sample) -> dict:
    raw = copy.deepcopy(TINY)
    process = raw["config"]["process"][0]
    process["trigger_word"] = trigger
    process["sample"] = {**{k: v for k, v in process["sample"].items() if k not in ("prompts", "samples")}, **sample}
    return raw


def test_trigger_replaced_and_flags_taken_out():
    raw = job("zq7", prompts=["[trigger] on a beach --seed 42 --w 512 --h 256", "plain"])
    assert sample_captions(raw) == [
        {
            "prompt": "[trigger] on a beach --seed 42 --w 512 --h 256",
            "caption": "zq7 on a beach",
            "flags": {"seed": 42, "width": 512, "height": 256},
        },
        {"prompt": "plain", "caption": "plain", "flags": {}},
    ]


def test_no_trigger_word_removes_the_placeholder_and_samples_lists_work():
    raw = job(None, samples=[{"prompt": "a photo of [trigger], red --cfg 2.5", "seed": 3}])
    assert sample_captions(raw) == [
        {
            "prompt": "a photo of [trigger], red --cfg 2.5",
            "caption": "a photo of , red",
            "flags": {"guidance_scale": 2.5},
        }
    ]


def test_the_cli(tmp_path):
    file = tmp_path / "job.yaml"
    file.write_text(yaml.safe_dump(job("r0b0t", prompts=["[trigger] --seed 1"])))
    out = subprocess.run(
        [sys.executable, "-m", "toolkit.ui.samples", str(file)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    assert json.loads(out.stdout) == [{"prompt": "[trigger] --seed 1", "caption": "r0b0t", "flags": {"seed": 1}}]
