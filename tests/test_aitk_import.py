"""toolkit.aitk_import: an ai-toolkit job's text -> our job YAML and the paths it names."""

from __future__ import annotations

import json

import pytest
import yaml

from toolkit.aitk_import import PathRef, import_aitk_job, relocate
from toolkit.config import parse_job_config
from toolkit.errors import ConfigError

JOB = {
    "job": "extension",
    "config": {
        "name": "edit_lora",
        "process": [
            {
                "type": "diffusion_trainer",
                "sqlite_db_path": "./aitk_db.db",
                "device": "cuda",
                "network": {"type": "lora", "linear": 16, "linear_alpha": 16, "conv": 16, "conv_alpha": 16},
                "datasets": [
                    {
                        "folder_path": "/home/me/data/targets",
                        "control_path_1": "/home/me/data/refs_a",
                        "control_path_2": "/home/me/data/refs_b",
                        "control_path_3": None,
                        "num_frames": 1,
                    },
                    {"folder_path": "/home/me/data/[name]_extra"},
                ],
                "train": {"lr": 1e-4, "dtype": "bf16", "timestep_type": "weighted", "switch_boundary_every": 1},
                "model": {
                    "name_or_path": "black-forest-labs/FLUX.2-dev",
                    "arch": "flux2",
                    "qtype": "uint4",
                    "quantize": True,
                },
                "sample": {
                    "samples": [{"prompt": "[trigger] edit", "ctrl_img_1": "/home/me/a.png", "ctrl_img_2": ""}],
                    "num_frames": 1,
                    "fps": 1,
                },
            }
        ],
    },
    "meta": {"name": "[name]"},
}


def test_json_job_becomes_our_yaml_with_its_folders():
    job = import_aitk_job(json.dumps(JOB), filename=".job_config.json")
    data = yaml.safe_load(job.yaml)
    process = data["config"]["process"][0]
    assert process["type"] == "sd_trainer" and process["model"]["qtype"] == "qint4"
    assert process["datasets"][0]["control_path"] == ["/home/me/data/refs_a", "/home/me/data/refs_b"]
    assert process["sample"]["samples"][0]["ctrl_img"] == ["/home/me/a.png"]
    assert "sqlite_db_path" not in process and "conv" not in process["network"]  # no-ops are dropped
    assert parse_job_config(data, "again.yaml").model_dump() == job.config.model_dump()  # valid as written
    assert job.folders == [
        "/home/me/data/targets",
        "/home/me/data/refs_a",
        "/home/me/data/refs_b",
        "/home/me/data/edit_lora_extra",
    ]  # [name] substituted
    assert PathRef("config.process[0].sample.samples[0].ctrl_img[0]", "reference_image", "/home/me/a.png") in job.paths
    ignored = dict(job.ignored)
    assert "config.process[0].network.conv" in ignored and "config.process[0].sample.fps" in ignored


def test_yaml_text_is_read_too_and_name_can_be_replaced():
    job = import_aitk_job(yaml.safe_dump(JOB), name="renamed")
    assert job.config.config.name == "renamed"
    assert "/home/me/data/renamed_extra" in job.folders


def test_every_problem_comes_back_at_once_by_key_path():
    bad = json.loads(json.dumps(JOB))
    process = bad["config"]["process"][0]
    process["train"].update(min_snr_gamma=5, lrr=1)
    process["model"]["qtype"] = "uint3"
    with pytest.raises(ConfigError) as caught:
        import_aitk_job(json.dumps(bad))
    assert {path for path, _ in caught.value.problems} == {
        "config.process[0].train.min_snr_gamma",
        "config.process[0].train.lrr",
        "config.process[0].model.qtype",
    }


def test_environment_variables_are_not_expanded(monkeypatch):
    monkeypatch.setenv("SECRET_ROOT", "/root")
    bad = json.loads(json.dumps(JOB))
    bad["config"]["process"][0]["datasets"][1]["folder_path"] = "${SECRET_ROOT}/data"
    with pytest.raises(ConfigError) as caught:
        import_aitk_job(json.dumps(bad))
    ((path, message),) = caught.value.problems
    assert path == "config.process[0].datasets[1].folder_path" and "not expanded" in message
    assert "/root" not in str(caught.value)


def test_syntax_errors_and_non_jobs_are_config_errors():
    with pytest.raises(ConfigError, match="JSON syntax error"):
        import_aitk_job('{"job": "extension",')
    with pytest.raises(ConfigError, match="mapping"):
        import_aitk_job("- just\n- a list\n")


def test_relocate_points_the_job_at_the_copies():
    job = import_aitk_job(json.dumps(JOB))
    moved = relocate(
        job,
        {
            "/home/me/data/targets": "/ui/datasets/targets",
            "/home/me/data/refs_b": "/ui/datasets/b",
            "/home/me/a.png": "/ui/datasets/a.png",
        },
    )
    process = moved.config.config.process[0]
    assert process.datasets[0].folder_path == "/ui/datasets/targets"
    assert process.datasets[0].control_paths == ["/home/me/data/refs_a", "/ui/datasets/b"]
    assert process.sample.samples[0].ctrl_imgs == ["/ui/datasets/a.png"]
    assert yaml.safe_load(moved.yaml)["config"]["process"][0]["datasets"][0]["folder_path"] == "/ui/datasets/targets"
