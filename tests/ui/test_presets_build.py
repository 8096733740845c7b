"""The one preset builder (toolkit.ui.presets.apply_form) as the Next.js UI calls it:
``python -m toolkit.ui.presets build < form.json``. The Gradio form goes through the same function
(tests/ui/test_jobs.py); ui/tests/unit/jobconfig.test.ts calls this CLI from the Next.js server."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.ui import presets as ui_presets
from toolkit.ui.jobs import JobError
from toolkit.ui.schema import validate_dict

ROOT = Path(__file__).resolve().parents[2]
PRESET = {
    "id": "p",
    "label": "P",
    "file": "p.yaml",
    "config": {
        "job": "extension",
        "config": {
            "name": "preset_name",
            "process": [
                {
                    "type": "sd_trainer",
                    "training_folder": "output",
                    "trigger_word": "p3r5on",
                    "network": {"type": "lora", "linear": 16, "linear_alpha": 16},
                    "datasets": [
                        {
                            "folder_path": "/path/to/images",
                            "caption_ext": "txt",
                            "cache_latents_to_disk": True,
                            "resolution": [512, 768],
                        }
                    ],
                    "train": {"steps": 2000, "lr": 1e-4},
                    "sample": {
                        "sample_every": 250,
                        "prompts": ["[trigger] holding a sign"],
                        "ctrl_img": "/path/to/ref.jpg",
                    },
                }
            ],
        },
    },
}


def with_control(value) -> dict:
    preset = copy.deepcopy(PRESET)
    preset["config"]["config"]["process"][0]["datasets"][0]["control_path"] = value
    return preset


def process(raw: dict) -> dict:
    return raw["config"]["process"][0]


def test_an_empty_form_changes_only_the_name():
    raw = ui_presets.apply_form(PRESET, ui_presets.FormFields(name="mine"))
    expected = copy.deepcopy(PRESET["config"])
    expected["config"]["name"] = "mine"
    assert raw == expected
    assert PRESET["config"]["config"]["name"] == "preset_name"  # the preset is not modified


def test_values_datasets_resolutions_prompts():
    form = ui_presets.FormFields(
        name="mine",
        values={
            "train.steps": 50,
            "datasets.cache_latents_to_disk": False,
            "trigger_word": None,
            "model.qtype": "qfloat8",
        },
        datasets=["/data/robots", "/data/cats/"],
        resolutions=[64],
        prompts=["a [trigger]"],
    )
    proc = process(ui_presets.apply_form(PRESET, form))
    assert proc["train"] == {"steps": 50, "lr": 1e-4}
    assert proc["model"] == {"qtype": "qfloat8"}  # sections are created on the way
    assert "trigger_word" not in proc  # None = the trainer's default
    assert proc["datasets"] == [
        {"folder_path": "/data/robots", "caption_ext": "txt", "cache_latents_to_disk": False, "resolution": [64]},
        {"folder_path": "/data/cats/", "caption_ext": "txt", "cache_latents_to_disk": False, "resolution": [64]},
    ]
    assert proc["sample"]["prompts"] == ["a [trigger]"]


@pytest.mark.parametrize("empty", ["", []])
def test_an_empty_control_path_means_no_references(empty):
    """ai-toolkit's UI writes ``control_path: ""`` (or ``[]``) for a dataset without references:
    not an edit preset, so no control/ folder and the sample reference is ignored."""
    preset = with_control(empty)
    assert not ui_presets.is_edit(preset)
    proc = process(
        ui_presets.apply_form(
            preset,
            ui_presets.FormFields(name="x", datasets=["/data/robots"], sample_reference="/data/robots/control/0.png"),
        )
    )
    assert proc["datasets"][0]["control_path"] == empty
    assert proc["sample"]["ctrl_img"] == "/path/to/ref.jpg"


def test_an_edit_preset_points_each_dataset_at_its_control_folder():
    preset = with_control("/path/to/images/control")
    assert ui_presets.is_edit(preset)
    proc = process(
        ui_presets.apply_form(
            preset,
            ui_presets.FormFields(name="x", datasets=["/data/a", "/data/b"], sample_reference="/data/b/control/0.png"),
        )
    )
    assert [d["control_path"] for d in proc["datasets"]] == ["/data/a/control", "/data/b/control"]
    assert proc["sample"]["ctrl_img"] == "/data/b/control/0.png"
    # a value the person typed wins over the derived reference
    proc = process(
        ui_presets.apply_form(
            preset,
            ui_presets.FormFields(
                name="x", values={"sample.ctrl_img": "/data/a/control/9.png"}, sample_reference="/data/b/control/0.png"
            ),
        )
    )
    assert proc["sample"]["ctrl_img"] == "/data/a/control/9.png"


def test_a_typed_empty_control_path_passes_validation():
    raw = ui_presets.apply_form(with_control(""), ui_presets.FormFields(name="x", values={"device": "cpu"}))
    proc = process(raw)
    proc["model"] = {"name_or_path": "tiny:flux2", "arch": "flux2"}
    proc["sample"].pop("ctrl_img")
    problems = validate_dict(raw)["problems"]
    assert not any("control" in p["path"] or "ctrl_img" in p["path"] for p in problems), problems


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"name": "x", "colour": 1}, "unknown form keys"),
        ({"name": "x", "datasets": "/a"}, "'datasets' has the wrong type"),
        ({"name": "x", "resolutions": [True]}, "'resolutions' has the wrong type"),
        ({"values": {}}, "needs a 'name'"),
        ([], "JSON object"),
    ],
)
def test_a_malformed_form_is_refused(bad, message):
    with pytest.raises(JobError, match=message):
        ui_presets.FormFields.from_json(bad)


def run_cli(payload: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "toolkit.ui.presets", "build"],
        input=payload,
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_the_cli_builds_a_shipped_preset_that_validates():
    form = {
        "preset": "flux2_edit_24gb",
        "name": "cli_job",
        "values": {"train.steps": 3},
        "datasets": ["/data/datasets/robots"],
        "sample_reference": "/data/datasets/robots/control/0.png",
    }
    result = run_cli(json.dumps(form))
    assert result.returncode == 0, result.stderr
    out = json.loads(result.stdout)
    assert out["edit"] is True
    proc = process(out["config"])
    assert out["config"]["config"]["name"] == "cli_job" and proc["train"]["steps"] == 3
    assert proc["datasets"][0]["control_path"] == "/data/datasets/robots/control"
    assert proc["sample"]["ctrl_img"] == "/data/datasets/robots/control/0.png"
    # Valid as a job; its folders are the uploads the UI writes once the job is accepted (pending, not scanned).
    pending = ["/data/datasets/robots", "/data/datasets/robots/control"]
    assert validate_dict(out["config"], pending=pending)["ok"], validate_dict(out["config"], pending=pending)


@pytest.mark.parametrize(
    "payload, message",
    [
        ('{"preset": "nope", "name": "x"}', "unknown preset 'nope'"),
        ("not json", "Expecting value"),
    ],
)
def test_the_cli_reports_errors_as_json(payload, message):
    result = run_cli(payload)
    assert result.returncode == 1
    assert message in json.loads(result.stdout)["error"]


def test_the_liveness_cli_tells_a_running_trainer_from_a_gone_or_reused_pid(tmp_path):
    job_file = str(tmp_path / "config.yaml")
    trainer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", job_file])
    other = subprocess.Popen(["sleep", "30"])
    try:

        def alive(pid: int) -> bool:
            result = subprocess.run(
                [sys.executable, "-m", "toolkit.ui.jobs", "alive", str(pid), job_file],
                cwd=ROOT,
                timeout=120,
                capture_output=True,
                text=True,
                check=True,
            )
            return json.loads(result.stdout)["alive"]

        assert alive(trainer.pid) is True
        assert alive(other.pid) is False  # alive, but not running this job file
        trainer.kill()
        trainer.wait()
        assert alive(trainer.pid) is False
    finally:
        trainer.kill()
        other.kill()
