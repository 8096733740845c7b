"""Config checks of the ai-toolkit training options (toolkit/config_modules/, toolkit/train/checks.py)."""

from __future__ import annotations

import pytest

from toolkit.config import parse_job_config
from toolkit.config_modules import TrainProcessConfig
from toolkit.errors import ToolkitError
from toolkit.train.checks import training_problems


def _job(**process):
    base = {"type": "sd_trainer", "datasets": [{"folder_path": "/a"}], "model": {"name_or_path": "x", "arch": "flux2"}}
    return {"job": "extension", "config": {"name": "x", "process": [{**base, **process}]}}


def test_option_problems_come_in_one_pass_by_key_path():
    raw = _job(
        datasets=[{"folder_path": "/a", "cache_text_embeddings": True}, {"folder_path": "/b"}],
        train={"loss_type": "stepped", "diff_output_preservation": True, "blank_prompt_preservation": True},
    )
    with pytest.raises(ToolkitError) as info:
        parse_job_config(raw, "t")
    text = str(info.value)
    assert "(4 problems)" in text
    assert "config.process[0].train.loss_type: ai-toolkit's 'stepped' loss" in text
    assert "config.process[0].train.diff_output_preservation_class: diff_output_preservation needs the class" in text
    assert "config.process[0].train.blank_prompt_preservation: diff_output_preservation and" in text
    assert "config.process[0].datasets[1].cache_text_embeddings: text embeddings are cached for all" in text


def test_new_keys_validate():
    job = parse_job_config(
        _job(
            performance_log_every=10,
            logging={"use_wandb": False, "project_name": "p", "run_name": "r"},
            save={"push_to_hub": True, "hf_repo_id": "me/x", "hf_private": True},
            datasets=[
                {
                    "folder_path": "/a",
                    "mask_path": "/m",
                    "alpha_mask": False,
                    "invert_mask": True,
                    "mask_min_value": 0.1,
                    "network_weight": 0.7,
                    "loss_multiplier": 2,
                    "trigger_word": "sks",
                    "num_workers": 2,
                    "prefetch_factor": 4,
                    "is_reg": False,
                    "default_caption": "a photo",
                }
            ],
            train={
                "reg_weight": 0.5,
                "loss_type": "wavelet",
                "bypass_guidance_embedding": True,
                "noise_offset": 0.05,
                "diff_output_preservation": True,
                "diff_output_preservation_class": "woman",
                "diff_output_preservation_multiplier": 0.8,
                "validation_config": {"validation_items": [{"image_path": "/v.png", "prompt": "p"}]},
            },
        ),
        "t",
    )
    process = job.config.process[0]
    assert process.datasets[0].mask_min_value == 0.1 and process.train.validation_config.validation_sigmas == [
        1.0,
        0.75,
        0.5,
        0.25,
    ]
    with pytest.raises(ToolkitError, match=r"mask_min_value"):
        parse_job_config(_job(datasets=[{"folder_path": "/a", "mask_min_value": 1.5}]), "t")


def test_training_problems_before_loading(tmp_path):
    def process(**changes):
        return TrainProcessConfig.model_validate(_job(**changes)["config"]["process"][0])

    dop = {"diff_output_preservation": True, "diff_output_preservation_class": "woman"}
    problems = training_problems(process(train=dop), "config.process[0]")
    assert len(problems) == 1 and "no trigger_word is set" in problems[0]
    assert training_problems(process(train=dop, trigger_word="sks"), "k") == []
    assert training_problems(process(train=dop, datasets=[{"folder_path": "/a", "trigger_word": "sks"}]), "k") == []
    problems = training_problems(process(datasets=[{"folder_path": "/a", "is_reg": True}]), "k")
    assert problems == [p for p in problems if "every dataset has is_reg: true" in p] and problems
    validation = {"validation_config": {"validation_items": [{"image_path": str(tmp_path / "missing.png")}]}}
    problems = training_problems(process(train=validation), "k")
    assert problems[0].startswith("k.train.validation_config.validation_items[0].image_path: ")
