"""toolkit.ui.guard: every path a UI-submitted job names stays inside the UI's data roots; no ${ENV};
config.name is a plain file name; the CLI the Next.js server calls. Reading limits: tests/test_config_read.py."""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from toolkit.ui import guard as ui_guard

ROOT = Path(__file__).resolve().parents[2]


def train_job(data: Path) -> dict:
    """A training job whose every path is inside ``data`` (the UI's one data root)."""
    return {
        "job": "extension",
        "config": {
            "name": "ok_name",
            "process": [
                {
                    "type": "sd_trainer",
                    "training_folder": str(data / "output"),
                    "device": "cpu",
                    "datasets": [
                        {
                            "folder_path": str(data / "datasets" / "a"),
                            "control_path": [str(data / "datasets" / "c")],
                            "mask_path": str(data / "datasets" / "m"),
                        }
                    ],
                    "model": {
                        "arch": "flux2",
                        "name_or_path": "black-forest-labs/FLUX.2-dev",
                        "vae_path": str(data / "models" / "ae.safetensors"),
                        "text_encoder_path": "org/te",
                        "extras_name_or_path": "black-forest-labs/FLUX.2-dev",
                        "lora_path": None,
                    },
                    "sample": {
                        "ctrl_img": str(data / "datasets" / "c" / "x.png"),
                        "samples": [{"prompt": "p", "ctrl_img": [str(data / "datasets" / "c" / "y.png")]}],
                    },
                }
            ],
        },
        "meta": {"note": "${NOT_CHECKED_IN_META}"},
    }


# Every key path of train_job that names a file or folder, as (path into the dict, key path in messages).
PATH_FIELDS = [
    (("training_folder",), "training_folder"),
    (("datasets", 0, "folder_path"), "datasets[0].folder_path"),
    (("datasets", 0, "control_path", 0), "datasets[0].control_path[0]"),
    (("datasets", 0, "mask_path"), "datasets[0].mask_path"),
    (("model", "name_or_path"), "model.name_or_path"),
    (("model", "vae_path"), "model.vae_path"),
    (("model", "text_encoder_path"), "model.text_encoder_path"),
    (("model", "extras_name_or_path"), "model.extras_name_or_path"),
    (("model", "lora_path"), "model.lora_path"),
    (("sample", "ctrl_img"), "sample.ctrl_img"),
    (("sample", "samples", 0, "ctrl_img", 0), "sample.samples[0].ctrl_img[0]"),
]


def set_in(raw: dict, keys: tuple, value) -> dict:
    raw = copy.deepcopy(raw)
    node = raw["config"]["process"][0]
    for key in keys[:-1]:
        node = node[key]
    node[keys[-1]] = value
    return raw


def paths(problems) -> list[str]:
    return [p for p, _ in problems]


def test_a_job_inside_the_roots_passes(tmp_path):
    assert ui_guard.guard_raw(train_job(tmp_path), [tmp_path], tmp_path) == []
    relative = set_in(train_job(tmp_path), ("datasets", 0, "folder_path"), "datasets/a")
    assert ui_guard.guard_raw(relative, [tmp_path], tmp_path) == []  # relative to base (run.py's cwd)


@pytest.mark.parametrize("keys,where", PATH_FIELDS, ids=[w for _, w in PATH_FIELDS])
@pytest.mark.parametrize("escape", ["/etc", "../../outside", "~/x", "datasets/../../outside"])
def test_traversal_in_every_path_field_is_refused_by_key_path(tmp_path, keys, where, escape):
    data = tmp_path / "data"
    data.mkdir()
    problems = ui_guard.guard_raw(set_in(train_job(data), keys, escape), [data], data)
    assert paths(problems) == [f"config.process[0].{where}"]
    assert "is outside the folders this UI may use" in problems[0][1] and str(data) in problems[0][1]


def test_a_symlink_out_of_the_roots_is_refused(tmp_path):
    data, secret = tmp_path / "data", tmp_path / "secret"
    (data / "datasets").mkdir(parents=True)
    secret.mkdir()
    (data / "datasets" / "link").symlink_to(secret)
    raw = set_in(train_job(data), ("datasets", 0, "folder_path"), str(data / "datasets" / "link"))
    problems = ui_guard.guard_raw(raw, [data], data)
    assert paths(problems) == ["config.process[0].datasets[0].folder_path"]
    assert f"resolves to {secret}" in problems[0][1]
    # A symlinked root is fine: the root is resolved too.
    (tmp_path / "alias").symlink_to(data)
    assert ui_guard.guard_raw(train_job(tmp_path / "alias"), [tmp_path / "alias"], data) == []


def test_hub_ids_and_tiny_ids_only_where_the_loader_reads_them(tmp_path):
    raw = set_in(train_job(tmp_path), ("model", "name_or_path"), "tiny:flux2")
    assert ui_guard.guard_raw(raw, [tmp_path], tmp_path) == []
    # "org/name" in a dataset key is a relative path, confined like any other.
    raw = set_in(train_job(tmp_path / "data"), ("datasets", 0, "folder_path"), "org/name")
    assert paths(ui_guard.guard_raw(raw, [tmp_path / "data"], tmp_path)) == [
        "config.process[0].datasets[0].folder_path"
    ]
    # A hub-looking id that exists locally is a local path (as the loader reads it) and is confined.
    (tmp_path / "org" / "local").mkdir(parents=True)
    raw = set_in(train_job(tmp_path / "data"), ("model", "vae_path"), "org/local")
    assert paths(ui_guard.guard_raw(raw, [tmp_path / "data"], tmp_path)) == ["config.process[0].model.vae_path"]
    raw = set_in(train_job(tmp_path / "data"), ("model", "vae_path"), "tiny:flux2")  # only for name_or_path
    assert paths(ui_guard.guard_raw(raw, [tmp_path / "data"], tmp_path)) == ["config.process[0].model.vae_path"]
    raw = set_in(train_job(tmp_path / "data"), ("model", "name_or_path"), "org/..")
    assert paths(ui_guard.guard_raw(raw, [tmp_path / "data"], tmp_path)) == ["config.process[0].model.name_or_path"]


def test_the_default_training_folder_and_generate_paths_are_confined(tmp_path):
    raw = train_job(tmp_path / "data")
    del raw["config"]["process"][0]["training_folder"]  # the default "output", relative to base
    assert paths(ui_guard.guard_raw(raw, [tmp_path / "data"], tmp_path)) == ["config.process[0].training_folder"]
    generate = {
        "job": "generate",
        "config": {
            "name": "g",
            "process": [
                {
                    "type": "to_folder",
                    "output_folder": "/tmp/out",
                    "model": {"name_or_path": "tiny:flux2"},
                    "generate": {"prompts": "/etc/prompts.txt", "ctrl_img": "../ref.png"},
                }
            ],
        },
    }
    assert paths(ui_guard.guard_raw(generate, [tmp_path], tmp_path)) == [
        "config.process[0].output_folder",
        "config.process[0].generate.prompts",
        "config.process[0].generate.ctrl_img",
    ]


def test_env_references_are_refused_everywhere_but_meta(tmp_path):
    raw = train_job(tmp_path)
    raw["config"]["process"][0]["trigger_word"] = "${HOME}"
    raw["config"]["process"][0]["sample"]["prompts"] = ["a ${HF_TOKEN:-x} b"]
    problems = ui_guard.guard_raw(raw, [tmp_path], tmp_path)
    assert set(paths(problems)) == {"config.process[0].trigger_word", "config.process[0].sample.prompts[0]"}
    assert "'${HOME}' would read an environment variable" in dict(problems)["config.process[0].trigger_word"]


@pytest.mark.parametrize("name", ["../../etc", "a/b", "..", ".", "a\\b", ".hidden", "-rf", "a\nb", "x" * 121])
def test_config_name_must_be_a_plain_file_name(tmp_path, name):
    raw = train_job(tmp_path)
    raw["config"]["name"] = name
    assert paths(ui_guard.guard_raw(raw, [tmp_path], tmp_path)) == ["config.name"]


def test_run_py_refuses_a_name_that_is_a_path_too(tmp_path):
    """The schema itself: config.name '../../etc' never reaches the trainer, from any front end."""
    from toolkit.config import parse_job_config
    from toolkit.errors import ConfigError

    raw = train_job(tmp_path)
    raw["config"]["name"] = "../../etc"
    del raw["config"]["process"][0]["datasets"][0]["mask_path"]  # ai-toolkit's key, not in our schema
    with pytest.raises(ConfigError) as refused:
        parse_job_config(raw, "job.yaml")
    assert [p for p, _ in refused.value.problems] == ["config.name"]


def test_cli_prints_json_problems_for_the_next_js_server(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    good, bad = tmp_path / "good.yaml", tmp_path / "bad.json"
    good.write_text(yaml.safe_dump(train_job(data)))
    bad.write_text(json.dumps(set_in(train_job(data), ("datasets", 0, "folder_path"), "/etc")))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}

    def check(path):
        out = subprocess.run(
            [sys.executable, "-m", "toolkit.ui.guard", "check", str(path), "--root", str(data), "--base", str(data)],
            capture_output=True,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        return out.returncode, json.loads(out.stdout)

    assert check(good) == (0, {"ok": True, "problems": []})
    typo = tmp_path / "typo.yaml"
    typo.write_text(yaml.safe_dump(set_in(train_job(data), ("datasets", 0, "caption_extt"), "txt")))
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "toolkit.ui.guard",
            "check",
            str(typo),
            "--root",
            str(data),
            "--base",
            str(data),
            "--validate",
        ],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
    )
    validated = json.loads(out.stdout)  # --validate adds the one validation path: a typo'd key is named
    assert out.returncode == 1 and "config.process[0].datasets[0].caption_extt" in [
        p["path"] for p in validated["problems"]
    ]
    code, result = check(bad)
    assert code == 1 and result["ok"] is False
    assert [p["path"] for p in result["problems"]] == ["config.process[0].datasets[0].folder_path"]
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(
        "a: &a [x, x, x, x, x, x, x, x, x, x]\n"
        + "".join(f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]\n" for i in range(6))
    )
    code, result = check(bomb)
    assert code == 1 and "aliases" in result["problems"][0]["message"]


def test_run_py_no_env_refuses_env_references_by_key_path(tmp_path, monkeypatch, caplog):
    """How the UIs run their jobs: a ${VAR} is an error naming its key, never expanded into config.yaml."""
    import logging

    import run

    monkeypatch.setenv("SECRET_FOR_TEST", "hunter2")
    raw = train_job(tmp_path)
    del raw["config"]["process"][0]["datasets"][0]["mask_path"]
    del raw["meta"]
    raw["config"]["process"][0]["trigger_word"] = "${SECRET_FOR_TEST}"
    job = tmp_path / "job.yaml"
    job.write_text(yaml.safe_dump(raw))
    with caplog.at_level(logging.ERROR):
        assert run.main(["--no-env", str(job)]) == 1
    assert "config.process[0].trigger_word: '${SECRET_FOR_TEST}' would read an environment variable" in caplog.text
    assert "hunter2" not in caplog.text and not (tmp_path / "output").exists()
    from toolkit.config import load_raw_config

    expanded = load_raw_config(job)  # the command line's default: expanded, as ai-toolkit does
    assert expanded["config"]["process"][0]["trigger_word"] == "hunter2"


def test_ui_schema_validate_with_roots_is_the_same_guard(tmp_path):
    """The Next.js server's existing call, `ui_schema validate FILE`, confines paths once given --root, and
    answers the guard's and the validation's problems in one pass (as the Gradio app's check_yaml)."""
    data = tmp_path / "data"
    data.mkdir()

    def validate(raw):
        path = tmp_path / "job.yaml"
        path.write_text(yaml.safe_dump(raw))
        cli = [sys.executable, "-m", "toolkit.ui.schema", "validate", str(path), "--root", str(data)]
        out = subprocess.run([*cli, "--base", str(data)], capture_output=True, text=True, cwd=ROOT)
        result = json.loads(out.stdout)
        assert out.returncode == (0 if result["ok"] else 1)
        return [p["path"] for p in result["problems"]], result["problems"]

    paths, problems = validate(set_in(train_job(data), ("model", "vae_path"), "/etc/ae.safetensors"))
    assert paths[0] == "config.process[0].model.vae_path" and "outside the folders" in problems[0]["message"]
    # The validation's problems of the other keys come in the same answer; the dataset folders (missing here)
    # are not read while the guard refuses a path.
    assert paths[1:] == ["config.process[0].sample.samples[0].ctrl_img"]
    paths, _ = validate(train_job(data))  # guard passed: the dataset folders are read (and found missing)
    assert paths[0] == "config.process[0].sample.samples[0].ctrl_img"
    assert any(p.startswith("config.process[0].datasets[0]") for p in paths[1:])
