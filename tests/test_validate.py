"""The one validation path (toolkit/validate.py): every problem of a job file, by key path, in one pass."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest
import yaml

from toolkit.errors import ConfigError
from toolkit.validate import check_job, plan_job, validate_job
from toolkit.paths import ROOT

DEMO = str(ROOT / "config" / "examples" / "demo_dataset")


def job(*processes, kind="extension") -> dict:
    return {"job": kind, "config": {"name": "x", "process": list(processes)}}


def trainer(**changes) -> dict:
    process = {
        "type": "sd_trainer",
        "device": "cpu",
        "datasets": [{"folder_path": DEMO, "resolution": [64]}],
        "model": {"name_or_path": "x", "arch": "flux2"},
        "train": {"optimizer": "adamw"},
    }
    for key, value in changes.items():
        process[key] = {**process[key], **value} if isinstance(value, dict) and key in process else value
    return process


def test_a_valid_job_has_no_problem_and_plans_each_process():
    assert validate_job(job(trainer())) == []
    config, plans = plan_job(job(trainer()))
    assert config.config.name == "x" and plans[0].spec.arch == "flux2" and len(plans[0].items) == 8


def test_one_pass_from_the_process_type_through_schema_to_capabilities_and_data():
    raw = job(
        trainer(
            type="sd_trainr",
            model={"arch": "flux", "quantise": True},
            network={"type": "lokr"},
            train={"steps": 0},
            sample={"prompts": ["a --wdth 3"]},
            datasets=[{"folder_path": "/path/to/images/folder"}],
        ),
        trainer(train={"train_unet": False}),
    )
    problems = dict(validate_job(raw))
    assert "sd_trainr" in problems["config.process[0].type"]  # a typo: reported, and it stops nothing
    assert "did you mean 'quantize'" in problems["config.process[0].model.quantise"]
    assert "must be >= 1" in problems["config.process[0].train.steps"]
    assert "not supported for flux" in problems["config.process[0].network.type"]
    assert "did you mean --w" in problems["config.process[0].sample.prompts[0]"]
    assert "/path/to/images/folder does not exist" in problems["config.process[0].datasets[0].folder_path"]
    assert "would train nothing" in problems["config.process[1].train.train_unet"]  # every process, before any runs


def test_assistant_lora_is_refused_once():
    problems = validate_job(job(trainer(model={"assistant_lora_path": "ostris/FLUX.1-schnell-training-adapter"})))
    assert [p for p, _ in problems] == ["config.process[0].model.assistant_lora_path"]


def test_fsdp_settings_and_device_and_optimizer():
    raw = job(
        trainer(model={"quantize": True, "layer_offloading": True}, device="cuda:7", train={"optimizer": "adamw8bit"})
    )
    problems = dict(validate_job(raw, world=2, shards_model=True))
    assert "cannot be sharded by FSDP" in problems["config.process[0].model.quantize"]
    assert "cannot stream FSDP-sharded" in problems["config.process[0].model.layer_offloading"]
    import torch

    if not torch.cuda.is_available():
        assert "CUDA is not available" in problems["config.process[0].device"]
        assert "adamw8bit" in problems["config.process[0].train.optimizer"]
    assert "config.process[0].device" not in dict(validate_job(raw, machine=False))


def test_generate_process_checks(tmp_path):
    gen = {
        "type": "to_folder",
        "output_folder": str(tmp_path),
        "device": "cpu",
        "model": {"name_or_path": "x", "arch": "flux"},
        "generate": {"prompts": ["a fox --seeds 3", "a cat --w 100"], "ctrl_img": str(tmp_path / "no.png")},
    }
    problems = validate_job(job(gen, kind="generate"))
    text = "\n".join(f"{p}: {m}" for p, m in problems)
    assert "generate.prompts[0]" in text and "did you mean --seed" in text
    assert "width 100" in text and "flux does not take reference images" in text and "no.png' does not exist" in text


def test_check_job_raises_one_error_naming_the_file(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job(trainer(datasets=[{"folder_path": str(tmp_path / "none")}]))))
    with pytest.raises(ConfigError) as info:
        check_job(str(path))
    assert str(path) in str(info.value) and "datasets[0].folder_path" in str(info.value)
    assert validate_job(str(tmp_path / "missing.yaml"))[0][1].startswith("config file")


def test_pending_upload_folders_are_left_to_the_ui(tmp_path):
    raw = job(trainer(datasets=[{"folder_path": str(tmp_path / "out" / "x" / "dataset")}]))
    assert validate_job(raw) != [] and validate_job(raw, pending=[tmp_path / "out" / "x" / "dataset"]) == []


def test_validation_without_machine_checks_imports_no_torch(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job(trainer(datasets=[{"folder_path": "/path/to/images/folder"}]))))
    code = textwrap.dedent(f"""
        import sys
        from toolkit.validate import validate_job
        problems = validate_job({str(path)!r}, machine=False)
        assert [p for p, _ in problems] == ["config.process[0].datasets[0].folder_path"], problems
        heavy = [m for m in ("torch", "diffusers", "transformers") if m in sys.modules]
        assert not heavy, heavy
    """)
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_run_check_exits_0_or_1_and_loads_nothing(tmp_path, caplog):
    import run

    good, bad = tmp_path / "good.yaml", tmp_path / "bad.yaml"
    good.write_text(yaml.safe_dump(job(trainer(training_folder=str(tmp_path / "out")))))
    bad.write_text(yaml.safe_dump(job(trainer(model={"quantise": True}, datasets=[{"folder_path": "/nope"}]))))
    assert run.main(["--check", str(good)]) == 0
    assert run.main(["--check", str(good), str(bad)]) == 1
    assert "model.quantise" in caplog.text and "datasets[0].folder_path" in caplog.text
    assert not (tmp_path / "out").exists()  # --check creates no job folder
    assert "loaded" not in caplog.text


def test_accelerate_fsdp_settings_are_checked(monkeypatch):
    monkeypatch.setenv("ACCELERATE_USE_FSDP", "true")
    monkeypatch.setenv("FSDP_VERSION", "1")
    problems = validate_job(job(trainer()))
    assert any("fsdp_version is 1" in message for _, message in problems), problems
    monkeypatch.setenv("FSDP_VERSION", "2")
    assert validate_job(job(trainer())) == []


def test_ai_toolkit_process_types_are_the_trainer():
    """ai-toolkit's UI writes diffusion_trainer / ui_trainer: the same trainer here, no problem reported."""
    for kind in ("diffusion_trainer", "ui_trainer"):
        problems = dict(validate_job(job(trainer(type=kind)), data=False, machine=False))
        assert "config.process[0].type" not in problems, problems


def test_an_invalid_choice_does_not_hide_the_later_stages():
    problems = dict(
        validate_job(job(trainer(type="sd_trainr", network={"type": "lorra"}, datasets=[{"folder_path": "/nope"}])))
    )
    assert {
        "config.process[0].type",
        "config.process[0].network.type",
        "config.process[0].datasets[0].folder_path",
    } <= set(problems)
