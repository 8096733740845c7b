"""toolkit.ui.aitk: an ai-toolkit job imported into a UI. Folders inside the data folders are kept, found by name
in a data root are linked, the Gradio app's uploads fill one dataset, anything else is a problem by key path;
nothing the job names outside the data folders is read; the CLI the Next.js server calls."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from PIL import Image

from tests.jobs.test_aitk_jobs import ALL_JOBS, UI_JOBS, aitk_ui_job, flux2_edit_job
from toolkit.ui.aitk import plan_import

ROOT = Path(__file__).resolve().parents[2]


def _images(folder: Path, count: int = 2, names=None) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, name in enumerate(names or [f"{i:02d}" for i in range(count)]):
        Image.new("RGB", (32, 32), (40 * i, 90, 20)).save(folder / f"{name}.png")
        (folder / f"{name}.txt").write_text("a photo of sks")
    return folder


@pytest.fixture
def ui(tmp_path):
    """A UI's folders: data root (datasets by name), output folder; the roots a UI job may name."""
    data, out = tmp_path / "data", tmp_path / "output"
    data.mkdir()
    out.mkdir()

    def plan(job, **kw):
        text = job if isinstance(job, str) else json.dumps(job)
        kw.setdefault("roots", [data, out])
        kw.setdefault("data_roots", [data])
        return plan_import(text, training_folder=out, base=tmp_path, **kw)

    plan.data, plan.out = data, out
    return plan


def _by_path(plan) -> dict:
    return {f.path: f for f in plan.folders}


def test_a_dataset_of_the_same_name_in_the_data_root_is_linked_and_the_job_can_start(ui):
    _images(ui.data / "folder")
    plan = ui(aitk_ui_job("flux2"))
    assert plan.ok, plan.problems
    folder = _by_path(plan)["/path/to/images/folder"]
    assert (folder.how, folder.target) == ("linked", str(ui.data / "folder"))
    process = yaml.safe_load(plan.yaml)["config"]["process"][0]
    assert process["datasets"][0]["folder_path"] == str(ui.data / "folder")
    assert process["training_folder"] == str(ui.out)  # the UI's output folder, not ai-toolkit's
    assert process["type"] == "sd_trainer" and process["train"]["timestep_type"] == "weighted"
    assert "config.process[0].sqlite_db_path" in {p["path"] for p in plan.ignored}


@pytest.mark.parametrize("name", UI_JOBS)
def test_every_ui_written_flux2_job_imports_once_its_folders_are_in_the_data_root(ui, name):
    _images(ui.data / "folder")
    _images(ui.data / "control_1")
    _images(ui.data / "control_2")
    _images(ui.data / "to", names=["ctrl_1", "ctrl_2"])  # the edit job's sample references: /path/to/ctrl_N.png
    job = UI_JOBS[name]()
    plan = ui(job)
    assert plan.ok, plan.problems
    if name == "ui-flux2-dev-edit":  # an image is found in the data root's folder named like its own folder
        refs = {f.path: f.target for f in plan.folders if f.kind == "reference_image"}
        assert refs == {f"/path/to/ctrl_{i}.png": str(ui.data / "to" / f"ctrl_{i}.png") for i in (1, 2)}
    assert yaml.safe_load(plan.yaml)["config"]["name"] == job["config"]["name"]


def test_missing_folders_are_problems_by_key_path_in_one_answer(ui):
    plan = ui(flux2_edit_job())
    assert not plan.ok and plan.yaml is not None  # the YAML is still shown, to fix in the editor
    paths = [p["path"] for p in plan.problems]
    assert paths[:3] == [
        "config.process[0].datasets[0].folder_path",
        "config.process[0].datasets[0].control_path[0]",
        "config.process[0].datasets[0].control_path[1]",
    ]
    message = plan.problems[0]["message"]
    assert "'/path/to/images/folder'" in message and str(ui.data / "folder") in message
    # one problem per path, not one per key that repeats it (ten samples share each reference image)
    refs = [p for p in plan.problems if ".ctrl_img" in p["path"]]
    assert len(refs) == 2 and "9 more key(s)" in refs[0]["message"]
    assert len(paths) == len(set(paths))


def test_gradio_uploads_fill_the_first_missing_dataset_and_its_references(ui):
    plan = ui(flux2_edit_job(), uploads=True, name="edit_job")
    folders = _by_path(plan)
    upload = ui.out / "edit_job" / "dataset"
    assert (folders["/path/to/images/folder"].how, folders["/path/to/images/folder"].target) == ("upload", str(upload))
    assert folders["/path/to/control_1"].target == str(upload / "control")
    assert folders["/path/to/control_2"].how == "missing"  # the app's upload boxes fill one reference folder
    paths = {p["path"] for p in plan.problems}
    assert "config.process[0].datasets[0].folder_path" not in paths  # pending until the uploads are written
    assert "config.process[0].datasets[0].control_path[1]" in paths


def test_links_chosen_in_the_ui_replace_the_paths_and_images_follow_their_folder(ui):
    _images(ui.data / "mine")
    _images(ui.data / "refs", names=["00", "01", "ctrl_1", "ctrl_2"])  # references pair with targets by stem
    job = flux2_edit_job()
    job["config"]["process"][0]["sample"]["samples"] = [
        {"prompt": "p", "ctrl_img_1": "/old/refs/ctrl_1.png", "ctrl_img_2": "/old/refs/ctrl_2.png"}
    ]
    job["config"]["process"][0]["datasets"][0].update(control_path_1="/old/refs", control_path_2="/old/refs")
    plan = ui(job, links={"/path/to/images/folder": str(ui.data / "mine"), "/old/refs": str(ui.data / "refs")})
    assert plan.ok, plan.problems
    targets = {f.path: (f.how, f.target) for f in plan.folders}
    assert targets["/old/refs/ctrl_1.png"] == ("linked", str(ui.data / "refs" / "ctrl_1.png"))
    sample = yaml.safe_load(plan.yaml)["config"]["process"][0]["sample"]["samples"][0]
    assert sample["ctrl_img"] == [str(ui.data / "refs" / "ctrl_1.png"), str(ui.data / "refs" / "ctrl_2.png")]


def test_a_link_outside_the_data_folders_is_refused_by_the_guard(ui, tmp_path):
    outside = _images(tmp_path / "elsewhere" / "folder")
    plan = ui(aitk_ui_job("flux2"), links={"/path/to/images/folder": str(outside)})
    assert not plan.ok
    assert any(p["path"] == "config.process[0].datasets[0].folder_path" and "outside" in p["message"]
               for p in plan.problems)  # fmt: skip


def test_a_folder_outside_the_data_folders_is_never_read_even_when_it_exists(ui, tmp_path):
    secret = _images(tmp_path / "home" / "folder")  # real images, but not in the UI's data folders
    job = aitk_ui_job("flux2")
    job["config"]["process"][0]["datasets"][0]["folder_path"] = str(secret)
    before = {p: p.stat().st_atime_ns for p in secret.iterdir()}
    plan = ui(job)
    assert _by_path(plan)[str(secret)].how == "missing"
    assert "no images" not in json.dumps(plan.problems)  # its contents were not scanned
    assert {p: p.stat().st_atime_ns for p in secret.iterdir()} == before
    assert not list(ui.data.iterdir())  # nothing copied into the data root


def test_environment_variables_are_refused_by_key_path_and_never_expanded(ui, monkeypatch):
    monkeypatch.setenv("AITK_SECRET_TOKEN", "hf_secret_value")
    job = aitk_ui_job("flux2")
    job["config"]["process"][0]["datasets"][0]["folder_path"] = "${AITK_SECRET_TOKEN}/data"
    plan = ui(job)
    assert plan.yaml is None
    assert [p["path"] for p in plan.problems] == ["config.process[0].datasets[0].folder_path"]
    assert "hf_secret_value" not in json.dumps(plan.to_dict())


def test_schema_problems_come_back_together_without_a_yaml(ui):
    job = aitk_ui_job("flux2")
    job["config"]["process"][0]["train"]["lr"] = "fast"
    job["config"]["process"][0]["train"]["stepz"] = 10
    plan = ui(job)
    assert plan.yaml is None
    paths = {p["path"] for p in plan.problems}
    assert {"config.process[0].train.lr", "config.process[0].train.stepz"} <= paths


def test_yaml_text_imports_like_json(ui):
    _images(ui.data / "folder")
    plan = ui(yaml.safe_dump(aitk_ui_job("flux2_klein_4b")), filename="my_job.yaml", name="renamed")
    assert plan.ok, plan.problems
    assert plan.name == "renamed"


@pytest.mark.parametrize("name", [n for n in ALL_JOBS if n.startswith("example-")])
def test_ai_toolkit_flux1_examples_import(ui, name):
    job = ALL_JOBS[name]()
    for dataset in job["config"]["process"][0]["datasets"]:
        _images(ui.data / Path(dataset["folder_path"]).name)
    plan = ui(job)
    assert plan.yaml is not None, plan.problems
    assert [p for p in plan.problems if "folder_path" in p["path"]] == []


def test_cli_prints_the_plan_for_the_nextjs_server(ui):
    _images(ui.data / "folder")
    command = [sys.executable, "-m", "toolkit.ui.aitk", "plan", "--root", str(ui.data), "--root", str(ui.out),
               "--data-root", str(ui.data), "--training-folder", str(ui.out), "--base", str(ui.data.parent)]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    ok = subprocess.run(command, input=json.dumps(aitk_ui_job("flux2")), capture_output=True, text=True, cwd=ROOT,
                        env=env, timeout=120)  # fmt: skip
    assert ok.returncode == 0, ok.stderr
    result = json.loads(ok.stdout)
    assert result["ok"] and result["folders"][0]["how"] == "linked" and "training_folder" in result["yaml"]
    link = ["--link", f"/path/to/images/folder={ui.data.parent / 'nowhere'}"]
    bad = subprocess.run(command + link, input=json.dumps(aitk_ui_job("flux2")), capture_output=True, text=True,
                         cwd=ROOT, env=env, timeout=120)  # fmt: skip
    assert bad.returncode == 1 and not json.loads(bad.stdout)["ok"]
    usage = subprocess.run(command + ["--link", "no-equals"], input="{}", capture_output=True, text=True, cwd=ROOT,
                           env=env, timeout=120)  # fmt: skip
    assert usage.returncode == 2
