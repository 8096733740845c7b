"""flux_train_ui.py as an attacker meets it: the real app on 127.0.0.1, driven with httpx and gradio_client.

Foreign Host and cross-origin writes, missing and wrong tokens, a token required for a network bind and
--share, oversized and chunked uploads, disguised images, traversal in every path field, symlinks out of
the data roots, ${ENV} expansion, a YAML bomb in the editor, concurrent starts, and the start flow's
answers (a bad field named, an edit job without references). README "What the UIs guarantee" is this list.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading

import httpx  # gradio's own HTTP client
import pytest
import yaml
from gradio_client import Client, handle_file

from tests.ui.test_flux_train_ui import DEMO, EDIT_LABEL, LABEL, ROOT, App, form, free_port

pytestmark = pytest.mark.slow  # end-to-end: attacks against the running app (see pyproject.toml)

MAX_MB = 1
SECRET = "do-not-leak-7f3a"


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("ui_security")
    app = App(
        workdir,
        extra_args=("--max-upload-mb", str(MAX_MB)),
        env={"FLUX_TEST_SECRET": SECRET, "GRADIO_TEMP_DIR": str(workdir / "gradio_tmp")},
    )
    app.client = app.start()
    yield app
    app.stop()
    kill_trainers(app)


def kill_trainers(app) -> None:
    """Never leave a run.py behind (the concurrency test starts one that fails fast)."""
    from toolkit.ui.jobs import job_status

    for meta in (app.workdir / "output").glob("*/ui_job.json"):
        status = job_status(meta.parent)
        if status.alive:
            os.killpg(status.pid, signal.SIGKILL)


def base(app) -> str:
    return app.url.rstrip("/")


def port(app) -> str:
    return app.url.rstrip("/").rsplit(":", 1)[1]


def started_yaml(app, client: Client, name: str, **changes) -> tuple[list, str, dict]:
    """The tiny preset's form and YAML for job ``name``, images uploaded into the client's session."""
    files = sorted(DEMO.glob("robot_0[01].png"))
    _, table, _ = client.predict([handle_file(str(f)) for f in files], api_name="/upload")
    values = form(client, name, steps=2, sample_every=1000, resolutions="64", **changes)
    return values, client.predict(*values, api_name="/build_yaml"), table


def start_with(app, client: Client, name: str, edit) -> str:
    """Start job ``name`` with its YAML changed by ``edit(raw)``; returns the app's message."""
    values, text, table = started_yaml(app, client, name)
    raw = yaml.safe_load(text)
    edit(raw)
    message, _, _ = client.predict(*values, yaml.safe_dump(raw, sort_keys=False), table, api_name="/start")
    return message


# ---------------------------------------------------------------------------- the front door


def test_foreign_host_and_cross_origin_writes_are_refused(app):
    url = base(app)
    refused = [
        httpx.get(url + "/", headers={"Host": host})
        for host in (
            "evil.example",
            f"evil.example:{port(app)}",
            f"127.0.0.1.nip.io:{port(app)}",
            "localhost.evil.example",
        )
    ]
    assert [r.status_code for r in refused] == [403] * 4
    assert httpx.get(url + "/", headers={"Host": f"localhost:{port(app)}"}).status_code == 200
    for path in ("/gradio_api/queue/join", "/gradio_api/upload", "/gradio_api/run/start"):
        response = httpx.post(url + path, headers={"Origin": "http://evil.example"}, json={})
        assert response.status_code == 403 and "cross-origin" in response.text, path
    # A foreign-Host job start never reaches the app: nothing claimed.
    response = httpx.post(url + "/gradio_api/call/start", headers={"Host": "evil.example"}, json={"data": []})
    assert response.status_code == 403 and not list((app.workdir / "config").glob("ui_*.yaml"))


def test_a_token_is_required_to_bind_the_network_or_share(tmp_path):
    env = {**os.environ, "GRADIO_ANALYTICS_ENABLED": "False"}
    env.pop("FLUX_UI_TOKEN", None)
    for extra in (["--host", "0.0.0.0"], ["--share"]):
        out = subprocess.run(
            [
                sys.executable,
                "flux_train_ui.py",
                "--port",
                str(free_port()),
                *extra,
                "--config-dir",
                str(tmp_path / "c"),
                "--training-folder",
                str(tmp_path / "o"),
            ],
            cwd=ROOT,
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert out.returncode == 2 and "--auth-token" in out.stderr and "FLUX_UI_TOKEN" in out.stderr, extra


def test_with_a_token_every_request_needs_it(tmp_path):
    token = "tok-" + os.urandom(8).hex()
    app = App(tmp_path, env={"FLUX_UI_TOKEN": token}, token=token)
    client = app.start()  # the harness sends Authorization: Bearer <token>
    try:
        url = base(app)
        assert httpx.get(url + "/").status_code == 401
        assert httpx.get(url + "/", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert httpx.get(url + "/?token=wrong").status_code == 401
        assert httpx.post(url + "/gradio_api/upload", files={"files": ("a.png", b"x")}).status_code == 401
        assert httpx.get(url + "/config").status_code == 401
        opened = httpx.get(url + f"/?token={token}")
        assert opened.status_code == 303 and token not in opened.headers["set-cookie"]
        assert httpx.get(url + "/", cookies=opened.cookies).status_code == 200
        assert client.predict(api_name="/jobs")["choices"] == []  # the API works with the token
        with pytest.raises(Exception):  # noqa: B017 - gradio_client raises its own types for a refused handshake
            Client(app.url, verbose=False)  # ...and not without it
    finally:
        app.stop()


# ---------------------------------------------------------------------------- uploads


def test_oversized_and_chunked_uploads_are_cut_off(app):
    url = base(app) + "/gradio_api/upload"
    big = os.urandom(MAX_MB * 1024 * 1024 + 1024)
    response = httpx.post(url, files={"files": ("big.png", big)})
    assert response.status_code == 413, response.text

    def chunks():  # no Content-Length: the size is counted as the bytes arrive
        for _ in range(0, len(big) * 3, 64 * 1024):
            yield big[: 64 * 1024]

    boundary = "x" * 16
    head = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\n'
        "Content-Type: image/png\r\n\r\n"
    ).encode()

    def body():
        yield head
        yield from chunks()
        yield f"\r\n--{boundary}--\r\n".encode()

    response = httpx.post(url, content=body(), headers={"Content-Type": f"multipart/form-data; boundary={boundary}"})
    assert response.status_code == 413, response.text
    kept = [p for p in (app.workdir / "gradio_tmp").rglob("*") if p.is_file() and p.stat().st_size > MAX_MB << 20]
    assert kept == []


def test_disguised_and_broken_images_are_left_out_and_named(app, tmp_path):
    disguised = tmp_path / "holiday.png"
    disguised.write_bytes(b"\x89PNG\r\n\x1a\n<html><script>alert(1)</script></html>")
    fake_jpeg = tmp_path / "me.jpg"
    fake_jpeg.write_bytes(b"\xff\xd8\xff\xe0" + b"<html></html>" * 20)
    good = DEMO / "robot_00.png"
    gallery, table, report = app.client.predict(
        [handle_file(str(p)) for p in (disguised, good, fake_jpeg)], api_name="/upload"
    )
    assert [row[0] for row in table["data"]] == ["robot_00.png"] and len(gallery) == 1
    assert "2 file(s) left out" in report
    assert "holiday.png: not an image that decodes" in report and "me.jpg: not an image that decodes" in report
    assert "/tmp" not in report and "gradio" not in report  # named as uploaded, not by the server's temp path
    _, report = app.client.predict([handle_file(str(disguised))], api_name="/upload_references")
    assert report.startswith("**1 file(s) left out") and "holiday.png" in report


# ---------------------------------------------------------------------------- what a job may name

FIELDS = {  # key path under config.process[0] -> how to set it in the raw dict
    "training_folder": lambda p, v: p.__setitem__("training_folder", v),
    "datasets[0].folder_path": lambda p, v: p["datasets"][0].__setitem__("folder_path", v),
    "datasets[0].control_path": lambda p, v: p["datasets"][0].__setitem__("control_path", v),
    "sample.ctrl_img": lambda p, v: p["sample"].__setitem__("ctrl_img", v),
    "sample.samples[0].ctrl_img": lambda p, v: p["sample"].__setitem__("samples", [{"prompt": "x", "ctrl_img": v}]),
    "model.name_or_path": lambda p, v: p["model"].__setitem__("name_or_path", v),
    "model.vae_path": lambda p, v: p["model"].__setitem__("vae_path", v),
    "model.lora_path": lambda p, v: p["model"].__setitem__("lora_path", v),
    "model.text_encoder_path": lambda p, v: p["model"].__setitem__("text_encoder_path", v),
    "model.extras_name_or_path": lambda p, v: p["model"].__setitem__("extras_name_or_path", v),
    "model.assistant_lora_path": lambda p, v: p["model"].__setitem__("assistant_lora_path", v),
}


@pytest.mark.parametrize("field", list(FIELDS))
def test_traversal_in_every_path_field_is_refused_by_key_path(app, field):
    outside = "../../../../../../etc" if "folder" in field or "path" in field else "/etc/hostname"
    message = start_with(app, app.client, "trav", lambda raw: FIELDS[field](raw["config"]["process"][0], outside))
    assert "Not started" in message and f"config.process[0].{field}" in message, message
    assert "is outside the folders this UI may use" in message
    assert not (app.workdir / "config" / "ui_trav.yaml").exists()


def test_a_symlink_out_of_the_data_roots_is_refused(app, tmp_path):
    outside = tmp_path / "private_photos"
    outside.mkdir()
    link = app.workdir / "output" / "innocent_looking"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outside)

    def edit(raw):
        raw["config"]["process"][0]["datasets"][0]["folder_path"] = str(link)

    message = start_with(app, app.client, "symlinked", edit)
    assert "config.process[0].datasets[0].folder_path" in message and f"resolves to {outside}" in message
    assert not (outside / "_latent_cache").exists()


def test_env_expansion_is_refused_and_never_served_back(app):
    def edit(raw):
        raw["config"]["process"][0]["trigger_word"] = "${FLUX_TEST_SECRET}"

    message = start_with(app, app.client, "envjob", edit)
    assert "config.process[0].trigger_word" in message and "environment variable" in message
    assert SECRET not in message and not (app.workdir / "output" / "envjob").exists()


def test_a_yaml_bomb_in_the_editor_gets_a_clear_answer(app):
    values, text, table = started_yaml(app, app.client, "bomb")
    bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 10) + "]\n" for i in range(7)
    )
    message, _, _ = app.client.predict(*values, bomb + text, table, api_name="/start")
    assert "Not started" in message and "aliases" in message, message


def test_concurrent_starts_of_one_name_start_one_job(app):
    """Two sessions press Start for the same name at once: one job, one clear refusal."""

    def fail_fast(raw):  # run.py stops at the device check, before loading anything
        raw["config"]["process"][0]["device"] = "cuda:9"

    clients = [Client(app.url, verbose=False) for _ in range(2)]
    prepared = []
    for client in clients:
        values, text, table = started_yaml(app, client, "raced")
        raw = yaml.safe_load(text)
        fail_fast(raw)
        prepared.append((client, values, yaml.safe_dump(raw), table))
    messages, barrier = [], threading.Barrier(2)

    def press(client, values, text, table):
        barrier.wait()
        messages.append(client.predict(*values, text, table, api_name="/start")[0])

    threads = [threading.Thread(target=press, args=args) for args in prepared]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sum(m.startswith("**Started `raced`**") for m in messages) == 1, messages
    assert sum("Not started" in m for m in messages) == 1, messages
    assert len(list((app.workdir / "config").glob("ui_raced*.yaml"))) == 1


# ---------------------------------------------------------------------------- the start flow's answers


def test_a_bad_field_is_named_where_the_person_typed_it(app):
    values = form(app.client, "badfield", resolutions="abc")
    text = app.client.predict(*values, api_name="/build_yaml")
    assert text.startswith("# cannot build the config")
    _, table, _ = app.client.predict([handle_file(str(DEMO / "robot_00.png"))], api_name="/upload")
    message, _, _ = app.client.predict(*values, text, table, api_name="/start")
    assert "Resolutions:" in message and "whole numbers" in message and "empty" not in message, message
    values = form(app.client, "badfield", steps=None)
    message, _, _ = app.client.predict(*values, "", table, api_name="/start")
    assert "Steps: is empty; fill it in" in message, message


def test_an_edit_job_without_references_asks_for_them(app):
    _, table, _ = app.client.predict([handle_file(str(DEMO / "robot_00.png"))], api_name="/upload")
    app.client.predict([], api_name="/upload_references")
    values = form(app.client, "noref", label=EDIT_LABEL)
    message, _, _ = app.client.predict(*values, "", table, api_name="/start")
    assert "upload the reference images too" in message, message
    assert LABEL != EDIT_LABEL
