"""flux_train_ui.py's "Import an ai-toolkit job": the jobs ai-toolkit writes, pasted or uploaded, become a job here.

The plan itself (kept / linked / upload / missing) is toolkit/ui/aitk.py's; these tests drive the app's handler and
its Start: a dataset folder of the same name in a --data-root is linked, one found nowhere becomes the upload folder,
``${HOME}`` is refused unexpanded, ``/etc`` is never read, an imported YAML survives uploads. The end-to-end test
(slow) imports ai-toolkit's FLUX.2 UI job over the app's API and trains it on the CPU.
"""

from __future__ import annotations

import builtins
import io
import json
import os
import shutil
from pathlib import Path

import pytest
import yaml

from flux_train_ui import IMPORT_MAX_BYTES, App
from tests.jobs.test_aitk_jobs import ALL_JOBS, NOT_SUPPORTED_YET, UI_JOBS, aitk_ui_job, flux2_edit_job
from tests.jobs.train_helpers import copy_dataset
from toolkit.paths import ROOT
from toolkit.ui import jobs

EDIT_LABEL = "FLUX.2-dev edit (reference images)"
DEMO = ROOT / "config" / "examples" / "demo_dataset"
DEMO_EDIT = ROOT / "config" / "examples" / "demo_edit_dataset"
DATASET_KEY = "config.process[0].datasets[0].folder_path"


def data_root(tmp_path: Path, edit: bool = True) -> Path:
    """A --data-root holding what ai-toolkit's UI jobs name, by name: ``folder`` (their default
    ``/path/to/images/folder``) and, for the edit job, ``control_1``, ``control_2`` and ``to/ctrl_*.png``."""
    data = tmp_path / "data"
    copy_dataset(data / "folder", count=2)
    if edit:
        for control in ("control_1", "control_2"):
            (data / control).mkdir()
            for target in (data / "folder").glob("*.png"):
                shutil.copy(DEMO_EDIT / "control" / "edit_00.png", data / control / target.name)
        (data / "to").mkdir()
        for image in ("ctrl_1.png", "ctrl_2.png"):
            shutil.copy(DEMO_EDIT / "control" / "edit_01.png", data / "to" / image)
    return data


def make_app(tmp_path: Path, data: Path | None = None) -> App:
    return App(tmp_path / "config", str(tmp_path / "output"), [str(data)] if data else [])


def process_of(text: str) -> dict:
    return yaml.safe_load(text)["config"]["process"][0]


def no_launch(monkeypatch) -> list:
    """Start without running run.py: the launches are recorded instead (the start path is otherwise real)."""
    launched = []
    monkeypatch.setattr(jobs, "_launch", lambda folder, config, root: launched.append((folder, config)))
    return launched


@pytest.mark.parametrize("how", ["paste", ".json", ".yaml"])
@pytest.mark.parametrize("name", ALL_JOBS)
def test_aitk_jobs_import_pasted_or_uploaded_with_their_folders_linked_by_name(name, how, tmp_path):
    data = data_root(tmp_path)
    app = make_app(tmp_path, data)
    job = ALL_JOBS[name]()
    text = yaml.safe_dump(job, sort_keys=False) if how == ".yaml" else json.dumps(job)
    file = None
    if how != "paste":
        file = tmp_path / f"job_config{how}"
        file.write_text(text)
        text = ""
    editor, report, box, references, advanced = app.import_job(str(file) if file else None, text)
    if name in NOT_SUPPORTED_YET:  # converted, its problem named by key path
        assert "problem(s)" in report and "assistant_lora_path" in report
    else:
        assert report.startswith(f"**Imported `{job['config']['name']}`: ready.**"), report
    process = process_of(editor)
    assert process["training_folder"] == str((tmp_path / "output").resolve())
    assert process["datasets"][0]["folder_path"] == str(data / "folder")
    assert f"`/path/to/images/folder` (`{DATASET_KEY}`): linked to `{data / 'folder'}`" in report
    assert references is False and advanced["open"] is True
    if name == "ui-flux2-dev-edit":
        assert process["datasets"][0]["control_path"] == [str(data / "control_1"), str(data / "control_2")]
        assert process["sample"]["samples"][0]["ctrl_img"] == [str(data / "to/ctrl_1.png"), str(data / "to/ctrl_2.png")]
    if name in UI_JOBS:
        assert "`config.process[0].sqlite_db_path`: ai-toolkit UI bookkeeping" in report  # an accepted no-op


def test_an_existing_job_name_is_not_reused(tmp_path):
    app = make_app(tmp_path, data_root(tmp_path, edit=False))
    (tmp_path / "output" / "my_first_lora_v1").mkdir(parents=True)
    editor, report, *_ = app.import_job(None, json.dumps(aitk_ui_job("flux2")))
    assert yaml.safe_load(editor)["config"]["name"] == "my_first_lora_v1_2"
    assert report.startswith("**Imported `my_first_lora_v1_2`: ready.**")


def test_a_dataset_found_nowhere_becomes_the_upload_folder_and_start_writes_the_uploads_there(tmp_path, monkeypatch):
    app = make_app(tmp_path)  # no --data-root: nothing to link
    editor, report, box, references, _ = app.import_job(None, json.dumps(aitk_ui_job("flux2_klein_4b")))
    upload = (tmp_path / "output").resolve() / "my_first_lora_v1" / "dataset"
    assert process_of(editor)["datasets"][0]["folder_path"] == str(upload)
    assert report.startswith("**Imported `my_first_lora_v1`: upload its images,** then press **Start training**")
    assert f"**upload its images below** (the *Images* box; written to `{upload}` at Start)" in report
    assert box == {"__type__": "update"} and references is False  # no reference folder to upload

    launched = no_launch(monkeypatch)
    label = app.default_label()
    form = [label, *app.select_preset(label)]
    form[1] = form[1]["value"]
    generated, _ = app.build_yaml(*form)
    message, _, _ = app.start(*form, editor, generated, [], [])
    assert "upload some images first" in message and not launched
    images, _, table, _ = app.upload([str(DEMO / "robot_00.png"), str(DEMO / "robot_01.png")])
    message, job, _ = app.start(*form, editor, generated, images, table)
    assert message.startswith("**Started `my_first_lora_v1`** with 2 images"), message
    assert sorted(p.name for p in upload.glob("*.png")) == ["000_robot_00.png", "001_robot_01.png"]
    assert launched == [(upload.parent, tmp_path / "config" / "ui_my_first_lora_v1.yaml")]
    assert (tmp_path / "config" / "ui_my_first_lora_v1.yaml").read_text() == editor  # the imported job, as shown


def test_an_imported_edit_job_takes_the_reference_uploads(tmp_path, monkeypatch):
    """Its first dataset and its first reference folder are the uploads, whatever preset the form shows."""
    data = data_root(tmp_path)
    shutil.rmtree(data / "folder")
    shutil.rmtree(data / "control_1")  # control_2 and the sample references stay linked
    app = make_app(tmp_path, data)
    editor, report, box, references, _ = app.import_job(None, json.dumps(flux2_edit_job()))
    upload = (tmp_path / "output").resolve() / "my_first_lora_v1" / "dataset"
    dataset = process_of(editor)["datasets"][0]
    assert dataset["folder_path"] == str(upload)
    assert dataset["control_path"] == [str(upload / "control"), str(data / "control_2")]
    assert "**upload its reference images below** (the *Reference images* box" in report
    assert box == {"visible": True, "__type__": "update"} and references is True

    launched = no_launch(monkeypatch)
    label = app.default_label()  # not an edit preset
    assert not app.is_edit(label)
    form = [label, *app.select_preset(label)]
    form[1] = form[1]["value"]
    generated, _ = app.build_yaml(*form)
    images, _, table, _ = app.upload(sorted(str(p) for p in DEMO_EDIT.glob("edit_0[01].png")))
    refs = sorted(str(p) for p in (DEMO_EDIT / "control").glob("edit_0[01].png"))
    message, _, _ = app.start(*form, editor, generated, images, table, refs, references)
    assert message.startswith("**Started `my_first_lora_v1`** with 2 images and 2 references"), message
    assert sorted(p.name for p in (upload / "control").glob("*.png")) == ["000_edit_00.png", "001_edit_01.png"]
    assert len(launched) == 1


def test_env_references_are_refused_by_key_path_and_never_expanded(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    job = aitk_ui_job("flux2")
    job["config"]["process"][0]["datasets"][0]["folder_path"] = "${HOME}/images"
    editor, report, *_ = make_app(tmp_path).import_job(None, json.dumps(job))
    assert editor == {"__type__": "update"}  # not converted: the editor keeps what it had
    assert report.startswith("**Not imported: 1 problem(s).**")
    assert f"`{DATASET_KEY}`: ${{HOME}}: environment variables are not expanded" in report
    assert str(tmp_path / "home") not in report


def test_etc_is_never_read_nor_named(tmp_path, monkeypatch):
    """A job naming /etc: as its dataset it becomes the upload folder, as a mask folder it is missing (a problem
    at its key path), and a folder named ``etc`` in a data root is the one linked. Nothing under /etc is opened
    or listed, and Start refuses without writing a thing."""
    data = data_root(tmp_path, edit=False)
    app = make_app(tmp_path, data)
    opened = []
    for module, name in ((os, "scandir"), (os, "listdir"), (builtins, "open"), (io, "open")):
        real = getattr(module, name)

        def spy(path=".", *args, _real=real, **kwargs):
            if str(path).startswith("/etc"):
                opened.append(str(path))
            return _real(path, *args, **kwargs)

        monkeypatch.setattr(module, name, spy)
    job = aitk_ui_job("flux2")
    job["config"]["process"][0]["datasets"][0].update(folder_path="/etc", mask_path="/etc/ssh")
    editor, report, *_ = app.import_job(None, json.dumps(job))
    dataset = process_of(editor)["datasets"][0]
    assert dataset["folder_path"] == str((tmp_path / "output").resolve() / "my_first_lora_v1" / "dataset")
    assert dataset["mask_path"] == "/etc/ssh"  # left as written, refused below
    assert (
        "mask folder `/etc/ssh` (`config.process[0].datasets[0].mask_path`): **missing**: '/etc/ssh' is not" in report
    )
    (data / "ssh").mkdir()
    editor, report, *_ = app.import_job(None, json.dumps(job))
    assert process_of(editor)["datasets"][0]["mask_path"] == str(data / "ssh")  # by name, from the data root
    assert opened == []

    job["config"]["process"][0]["datasets"][0]["mask_path"] = "/etc/ssh/ssh_config"
    editor, *_ = app.import_job(None, json.dumps(job))
    launched = no_launch(monkeypatch)
    label = app.default_label()
    form = [label, *app.select_preset(label)]
    form[1] = form[1]["value"]
    images, _, table, _ = app.upload([str(DEMO / "robot_00.png")])
    message, _, _ = app.start(*form, editor, app.build_yaml(*form)[0], images, table)
    assert message.startswith("**Not started: the config has") and "config.process[0].datasets[0].mask_path" in message
    assert not launched and not list((tmp_path / "config").glob("*")) and not (tmp_path / "output").exists()
    assert opened == []


def test_an_imported_yaml_is_not_rebuilt_by_uploads(tmp_path):
    """An edit preset's YAML is rebuilt after uploads unless the person edited it: an imported job counts as edited,
    and so does an imported job edited afterwards."""
    app = make_app(tmp_path, data_root(tmp_path))
    form = [EDIT_LABEL, *app.select_preset(EDIT_LABEL)]
    form[1] = form[1]["value"]
    generated, _ = app.build_yaml(*form)
    imported, *_ = app.import_job(None, json.dumps(flux2_edit_job()))
    images, _, _, references, _ = app.demo_images(EDIT_LABEL)
    for text in (imported, imported.replace("steps: 3000", "steps: 10")):
        assert text != generated
        assert app.uploads_changed(*form, images, references, text, generated) == ({"__type__": "update"},) * 2
    rebuilt, again = app.uploads_changed(*form, images, references, generated, generated)  # not edited: rebuilt
    assert rebuilt == again and "000_edit_00.png" in rebuilt


def test_a_file_that_is_not_a_job_is_refused_before_planning(tmp_path):
    app = make_app(tmp_path)
    big = tmp_path / "big.json"
    big.write_bytes(b" " * (IMPORT_MAX_BYTES + 1))
    binary = tmp_path / "job.yaml"
    binary.write_bytes(b"\xff\xfe\x00job")
    assert app.import_job(str(big), "")[1].startswith("**Not imported.** `big.json` is over 1024 KiB")
    assert "`job.yaml` is not UTF-8 text" in app.import_job(str(binary), "")[1]
    assert "paste its text first" in app.import_job(None, "  \n")[1]
    editor, report, *_ = app.import_job(None, "job: extension\nconfig: [")
    assert editor == {"__type__": "update"} and report.startswith("**Not imported:")


@pytest.mark.slow
def test_import_the_aitk_flux2_ui_job_over_the_api_and_train_it(tmp_path, tiny):
    """The app with ai-toolkit's datasets folder as its --data-root: the FLUX.2 UI job is uploaded, its dataset
    linked by name, the CPU changes made in the YAML editor (tests/jobs/test_aitk_jobs.py cpu_job), then Start."""
    from gradio_client import handle_file

    from tests.ui.test_flux_train_ui import App as AppProcess, form, wait_state

    tiny("flux2")
    data = data_root(tmp_path, edit=False)
    job_file = tmp_path / "job_config.json"
    job_file.write_text(json.dumps(aitk_ui_job("flux2")))
    app = AppProcess(tmp_path, ("--data-root", str(data)))
    client = app.start()
    try:
        editor, report, *_ = client.predict(handle_file(str(job_file)), "", api_name="/import_aitk")
        assert report.startswith("**Imported `my_first_lora_v1`: ready.**"), report
        raw = yaml.safe_load(editor)
        process = raw["config"]["process"][0]
        assert process["datasets"][0]["folder_path"] == str(data / "folder")
        process["model"]["name_or_path"] = "tiny:flux2"
        process["device"] = "cpu"
        process["train"].update(optimizer="adamw", steps=2)
        process["save"]["save_every"] = 2
        process["sample"].update(sample_every=2, width=64, height=64, sample_steps=2)
        process["sample"]["samples"] = process["sample"]["samples"][:1]
        edited = yaml.safe_dump(raw, sort_keys=False)
        message, _, _ = client.predict(
            *form(client, "ignored"), edited, {"headers": ["image", "caption"], "data": []}, api_name="/start"
        )
        assert message.startswith(f"**Started `my_first_lora_v1`**: `{tmp_path / 'config'}"), message
        view = wait_state(client, "my_first_lora_v1", {"finished"}, timeout=600)
        assert "step **2 / 2**" in view["markdown"]
        assert (tmp_path / "output" / "my_first_lora_v1" / "my_first_lora_v1.safetensors").stat().st_size > 0
    finally:
        app.stop()
        status = jobs.job_status(tmp_path / "output" / "my_first_lora_v1")
        if status.alive:  # never leave a trainer running
            os.killpg(status.pid, 9)
