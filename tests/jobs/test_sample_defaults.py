"""Samples that leave guidance_scale / sample_steps unset take the architecture's (release's) defaults."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from toolkit.config_modules import TrainProcessConfig
from toolkit.prompt import parse_prompt


def requests_for(arch: str, guidance_embeds: bool | None, **sample):
    from jobs.process.BaseSDTrainProcess import BaseSDTrainProcess
    from toolkit.util.get_model import get_model_class

    cfg = TrainProcessConfig.model_validate(
        {
            "type": "sd_trainer",
            "datasets": [{"folder_path": "/d"}],
            "model": {"name_or_path": "x", "arch": arch},
            "sample": {"prompts": ["a fox", "a cat --steps 9"], **sample},
        }
    )
    model = get_model_class(cfg.model)(cfg.model)
    if guidance_embeds is not None:  # the loaded weights: what tells FLUX.1-dev and -schnell apart
        model.pipeline = SimpleNamespace(transformer=SimpleNamespace(config={"guidance_embeds": guidance_embeds}))
    process = SimpleNamespace(
        model=model, sample_specs=[(i, parse_prompt(i.prompt)) for i in cfg.sample.sample_items()]
    )
    BaseSDTrainProcess._prepare_sample_requests(process)
    return process.sample_requests


@pytest.mark.parametrize(
    "arch, guidance_embeds, steps, guidance",
    [
        ("flux", False, 4, 0.0),  # FLUX.1-schnell: 4 steps, no guidance (its release's declaration)
        ("flux", True, 28, 3.5),  # FLUX.1-dev
        ("flux2_klein_4b", None, 50, 4.0),  # klein-base is not step-distilled
        ("flux2", None, 50, 4.0),
    ],
)
def test_unset_sample_settings_take_the_release_defaults(arch, guidance_embeds, steps, guidance):
    first, second = requests_for(arch, guidance_embeds)
    assert (first.sample_steps, first.guidance_scale) == (steps, guidance)
    assert second.sample_steps == 9  # a prompt flag wins


def test_sample_section_settings_win_over_the_defaults():
    first, _ = requests_for("flux", False, sample_steps=12, guidance_scale=2.0)
    assert (first.sample_steps, first.guidance_scale) == (12, 2.0)
    cfg = TrainProcessConfig.model_validate(
        {"type": "sd_trainer", "datasets": [{"folder_path": "/d"}], "model": {"name_or_path": "x", "arch": "flux"}}
    )
    assert cfg.sample.guidance_scale is None and cfg.sample.sample_steps is None  # nothing filled in
