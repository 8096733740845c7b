"""Checks that run before any weights load: lr finite, warm-up within steps, optimizer_params against the
optimizer's signature, sampling configured with no prompt, every process of a job checked first."""

from __future__ import annotations

import logging

import pytest
import yaml

import run
from tests.jobs.train_helpers import train_process, write_job
from toolkit.config import parse_job_config
from toolkit.errors import ConfigError


def problems_of(process: dict) -> dict[str, str]:
    raw = {"job": "extension", "config": {"name": "j", "process": [process]}}
    with pytest.raises(ConfigError) as refused:
        parse_job_config(raw, "job.yaml")
    return dict(refused.value.problems)


@pytest.mark.parametrize("lr", [float("inf"), float("nan"), "-.inf"])
def test_a_non_finite_lr_is_refused(tmp_path, lr):
    assert "config.process[0].train.lr" in problems_of(train_process(tmp_path, train={"lr": lr}))


def test_warm_up_longer_than_the_run_is_refused(tmp_path):
    problems = problems_of(train_process(tmp_path, steps=10, train={"lr_warmup_steps": 11}))
    assert "11 warm-up steps exceed train.steps (10)" in problems["config.process[0].train.lr_warmup_steps"]


def test_sampling_with_no_prompt_is_an_error_not_a_silent_no_op(tmp_path):
    process = train_process(tmp_path)
    process["sample"]["prompts"] = []
    assert "no prompt to sample" in problems_of(process)["config.process[0].sample.prompts"]
    process["train"]["disable_sampling"] = True  # sampling off: nothing to say
    parse_job_config({"job": "extension", "config": {"name": "j", "process": [process]}}, "job.yaml")
    del process["sample"]  # no sample section at all: nothing asked for
    process["train"]["disable_sampling"] = False
    parse_job_config({"job": "extension", "config": {"name": "j", "process": [process]}}, "job.yaml")


def test_unknown_optimizer_params_are_refused_before_loading(tmp_path, caplog):
    process = train_process(tmp_path, train={"optimizer_params": {"betas": [0.9, 0.99], "wieght_decay": 0.1}})
    with caplog.at_level(logging.INFO):
        assert run.main([str(write_job(tmp_path, process))]) == 1
    assert "config.process[0].train.optimizer_params.wieght_decay: not an option of optimizer adamw" in caplog.text
    assert "did you mean 'weight_decay'?" in caplog.text and "betas" not in caplog.text.split("wieght")[0][-200:]
    assert "loaded flux2" not in caplog.text and "Traceback" not in caplog.text


def test_every_process_is_checked_before_the_first_starts(tmp_path, caplog):
    first = train_process(tmp_path / "a", steps=2)
    second = train_process(tmp_path / "b", steps=2)
    second["datasets"][0]["folder_path"] = str(tmp_path / "missing")
    job = tmp_path / "two.yaml"
    job.write_text(yaml.safe_dump({"job": "extension", "config": {"name": "two", "process": [first, second]}}))
    with caplog.at_level(logging.INFO):
        assert run.main([str(job)]) == 1
    assert "config.process[1].datasets[0].folder_path" in caplog.text
    assert not (tmp_path / "a" / "output" / "two" / "progress.jsonl").exists()  # the first never started


@pytest.mark.parametrize(
    "arch,layout,expected",
    [
        (
            "flux2_klein_4b",
            "diffusers",
            "its transformer has a guidance embedding, which arch 'flux2_klein_4b' does not",
        ),
        ("flux", "diffusers", "holds a Flux2Transformer2DModel transformer; arch 'flux' needs FluxTransformer2DModel"),
        ("flux2_klein_4b", "single_file", "is not a flux2_klein_4b transformer checkpoint (has ['guidance_in"),
    ],
)
def test_arch_against_the_local_weights_before_loading(tmp_path, tiny, caplog, arch, layout, expected):
    """A FLUX.2-dev folder (or single file) with another arch: refused by key path before any weight loads."""
    folder = tiny("flux2", layout)
    name = (
        folder if layout == "diffusers" else next(p for p in folder.glob("*.safetensors") if p.name != "ae.safetensors")
    )
    process = train_process(tmp_path, model={"name_or_path": str(name), "arch": arch})
    with caplog.at_level(logging.INFO):
        assert run.main([str(write_job(tmp_path, process))]) == 1
    assert f"config.process[0].model.name_or_path: '{name}'" in caplog.text and expected in caplog.text
    assert "loaded " not in caplog.text and "Traceback" not in caplog.text


def test_matching_local_weights_pass_the_check(tiny):
    from toolkit.config_modules import ModelConfig
    from toolkit.util.get_model import get_model_class

    config = ModelConfig(name_or_path=str(tiny("flux2")), arch="flux2")
    assert get_model_class(config).weights_problems(config, "model") == []
