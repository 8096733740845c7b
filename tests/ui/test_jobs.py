"""toolkit.ui.jobs and toolkit.ui.presets: configs built from presets, name claims (also raced), run/stop/resume,
progress. Uploads and edit (reference) jobs: tests/ui/test_datasets.py."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml
from PIL import Image

from toolkit.ui import datasets as ui_datasets, presets as ui_presets
from toolkit.ui import jobs
from toolkit.paths import ROOT

TINY_LABEL = "Tiny FLUX.2 demo (CPU)"
EDIT_LABEL = "FLUX.2-dev edit (reference images)"
FORM_PRESETS, SKIPPED = ui_presets.form_presets()

# Keys the form may change; every other key of the preset must come through untouched.
USER_PATHS = {
    "config.name",
    "config.process[0].trigger_word",
    "config.process[0].training_folder",
    "config.process[0].datasets[0].folder_path",
    "config.process[0].datasets[0].resolution",
    "config.process[0].datasets[0].default_caption",
    "config.process[0].train.steps",
    "config.process[0].train.lr",
    "config.process[0].network.linear",
    "config.process[0].network.linear_alpha",
    "config.process[0].sample.sample_every",
    "config.process[0].sample.prompts",
}
# Edit presets: the references go to the uploaded dataset's control/ folder.
EDIT_PATHS = {"config.process[0].datasets[0].control_path"}
VRAM_PATHS = {f"config.process[0].model.{k}" for k in ("quantize", "qtype", "quantize_te", "low_vram")} | {
    "config.process[0].device"
}


@pytest.fixture(autouse=True)
def tmp_is_a_data_root(tmp_path, monkeypatch):
    """The tests' jobs live under tmp_path, as an app started with --training-folder there would have them."""
    default = jobs.ui_roots
    monkeypatch.setattr(jobs, "ui_roots", lambda root=ROOT, extra=(): default(root, [*extra, tmp_path]))


def sample_reference(preset: dict) -> str | None:
    """Edit presets: a reference upload's name (without one the preset's placeholder ctrl_img stays, and the
    path guard refuses it: see test_placeholder_paths_fail_the_check)."""
    return "000_ref.png" if ui_presets.is_edit(preset) else None


SAMPLE_REF_PATH = {"config.process[0].sample.ctrl_img"}


def diff_paths(a, b, path="") -> set[str]:
    """Key paths where two raw configs differ (numbers compared as numbers: '1e-4' == 0.0001)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out = set()
        for key in set(a) | set(b):
            sub = f"{path}.{key}" if path else str(key)
            out |= {sub} if (key in a) != (key in b) else diff_paths(a[key], b[key], sub)
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b) and all(isinstance(x, dict) for x in a):
        return set().union(*(diff_paths(x, y, f"{path}[{i}]") for i, (x, y) in enumerate(zip(a, b))))
    try:
        same = float(a) == float(b) if not isinstance(a, (bool, list, dict, type(None))) else a == b
    except (TypeError, ValueError):
        same = a == b
    return set() if same else {path}


def changed_fields(preset: dict, **changes) -> ui_presets.UserFields:
    fields = ui_presets.UserFields.from_preset(preset)
    for key, value in changes.items():
        setattr(fields, key, value)
    return fields


def write_images(folder: Path, count: int = 2) -> list[tuple[Path, str]]:
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        path = folder / f"img {i}.png"
        Image.new("RGB", (64, 48), (40 * i, 100, 200)).save(path)
        out.append((path, f"a photo of [trigger], number {i}" if i else ""))
    return out


# ------------------------------------------------------------------------ building


def test_the_form_offers_every_lora_preset_including_edit():
    labels = {p["label"] for p in FORM_PRESETS}
    assert {
        "FLUX.2-dev",
        "FLUX.2-klein-base 4B",
        "FLUX.2-klein-base 9B",
        "FLUX.1-dev",
        "FLUX.1-schnell",
        TINY_LABEL,
        EDIT_LABEL,
    } <= labels
    assert SKIPPED == {}  # only a preset with several control folders (references per target) would be
    assert [p["label"] for p in FORM_PRESETS if ui_presets.is_edit(p)] == [EDIT_LABEL]


def test_a_preset_with_several_references_per_target_is_skipped(monkeypatch):
    edit = ui_presets.preset_by_label(EDIT_LABEL)
    several = copy.deepcopy(edit)
    several["label"] = "two references"
    several["config"]["config"]["process"][0]["datasets"][0]["control_path"] = ["/a", "/b"]
    monkeypatch.setattr(ui_presets, "presets", lambda: [edit, several])
    usable, skipped = ui_presets.form_presets()
    assert usable == [edit] and "several reference images per target" in skipped["two references"]


def test_image_extensions_match_the_dataset_reader():
    from toolkit.data.dataset import IMAGE_EXTENSIONS

    assert ui_datasets.IMAGE_EXTENSIONS == jobs.IMAGE_EXTENSIONS == IMAGE_EXTENSIONS


@pytest.mark.parametrize("preset", FORM_PRESETS, ids=lambda p: p["id"])
def test_config_for_each_preset_validates_and_changes_only_the_users_fields(preset):
    fields = changed_fields(
        preset,
        name="my_test_lora",
        trigger_word="zq7",
        default_caption="a photo",
        steps=7,
        lr=3e-4,
        rank=4,
        resolutions=[256, 512],
        sample_every=5,
        sample_prompts=["[trigger] on a beach", "", "[trigger] in snow --seed 3"],
    )
    raw = ui_presets.build_job_config(preset, fields, None, sample_reference(preset))
    job, problems = jobs.check_yaml(ui_presets.to_yaml(raw, preset))
    assert problems == [] and job.name == "my_test_lora"
    assert job.job_folder == ROOT / "output" / "my_test_lora"
    assert job.dataset_folders == [job.job_folder / "dataset"]
    edit = ui_presets.is_edit(preset)
    assert job.control_folders == ([job.job_folder / "dataset" / "control"] if edit else [])
    assert diff_paths(preset["config"], raw) <= USER_PATHS | (EDIT_PATHS | SAMPLE_REF_PATH if edit else set())
    process, original = raw["config"]["process"][0], preset["config"]["config"]["process"][0]
    for section, key in [
        ("model", "arch"),
        ("model", "name_or_path"),
        ("model", "quantize"),
        ("model", "qtype"),
        ("model", "quantize_te"),
        ("model", "low_vram"),
        ("train", "optimizer"),
        ("train", "timestep_type"),
        ("train", "dtype"),
        ("sample", "guidance_scale"),
        ("sample", "sample_steps"),
        ("save", "format"),
    ]:
        assert process[section].get(key) == original[section].get(key), (section, key)
    assert process["train"]["steps"] == 7 and process["train"]["lr"] == 3e-4
    assert process["datasets"][0]["resolution"] == [256, 512]
    assert process["datasets"][0]["default_caption"] == "a photo"
    assert process["sample"]["prompts"] == ["[trigger] on a beach", "[trigger] in snow --seed 3"]
    ratio = original["network"]["linear_alpha"] / original["network"]["linear"]
    assert process["network"]["linear"] == 4 and process["network"]["linear_alpha"] == 4 * ratio
    assert job.raw["config"]["process"][0]["datasets"][0]["folder_path"] == "output/my_test_lora/dataset"


@pytest.mark.parametrize("preset", FORM_PRESETS, ids=lambda p: p["id"])
def test_the_untouched_form_reproduces_the_preset(preset):
    raw = ui_presets.build_job_config(preset, ui_presets.UserFields.from_preset(preset))
    edit = EDIT_PATHS if ui_presets.is_edit(preset) else set()
    assert diff_paths(preset["config"], raw) == {"config.process[0].datasets[0].folder_path"} | edit


@pytest.mark.parametrize("preset", FORM_PRESETS, ids=lambda p: p["id"])
def test_vram_options_come_from_the_preset_and_validate(preset):
    options = ui_presets.vram_options(preset)
    first, first_overrides = next(iter(options.items()))
    assert first_overrides == {}  # the example's own settings come first
    model = preset["config"]["config"]["process"][0]["model"]
    for label in options:
        raw = ui_presets.build_job_config(preset, changed_fields(preset, vram=label), None, sample_reference(preset))
        assert jobs.check_yaml(ui_presets.to_yaml(raw))[1] == []
        assert diff_paths(preset["config"], raw) <= VRAM_PATHS | EDIT_PATHS | SAMPLE_REF_PATH | {
            "config.process[0].datasets[0].folder_path"
        }
    if preset["config"]["config"]["process"][0]["device"] == "cpu":
        assert first == "CPU (tiny demo)"
    else:
        assert first == "24 GB (example)"
    if model.get("quantize") or model.get("quantize_te"):
        label = next(label for label in options if "no quantization" in label)
        raw = ui_presets.build_job_config(preset, changed_fields(preset, vram=label))
        assert raw["config"]["process"][0]["model"]["quantize"] is False
        assert raw["config"]["process"][0]["model"]["quantize_te"] is False
    with pytest.raises(jobs.JobError, match="unknown memory preset"):
        ui_presets.build_job_config(preset, changed_fields(preset, vram="1 GB"))


def test_flux2_dev_gets_a_float8_step_between_int4_and_bf16():
    preset = ui_presets.preset_by_label("FLUX.2-dev")
    assert list(ui_presets.vram_options(preset)) == [
        "24 GB (example)",
        "48 GB (qfloat8 transformer)",
        "96 GB+ (no quantization)",
    ]


def test_parse_resolutions():
    assert ui_presets.parse_resolutions("512, 768 1024") == [512, 768, 1024]
    with pytest.raises(jobs.JobError, match="whole numbers"):
        ui_presets.parse_resolutions("512px")


def test_check_yaml_reports_problems_by_key_path(tmp_path):
    preset = ui_presets.preset_by_label(TINY_LABEL)
    raw = ui_presets.build_job_config(preset, changed_fields(preset, name="x"))
    raw["config"]["process"][0]["model"]["quantise"] = True
    raw["config"]["process"][0]["train"]["steps"] = 0
    job, problems = jobs.check_yaml(yaml.safe_dump(raw))
    assert job is None
    paths = {p["path"] for p in problems}
    assert paths == {"config.process[0].model.quantise", "config.process[0].train.steps"}
    assert "quantize" in next(p["message"] for p in problems if p["path"].endswith("quantise"))
    assert jobs.check_yaml("job: [unclosed")[1][0]["message"].startswith("YAML error")
    raw["config"]["process"][0]["model"].pop("quantise")
    raw["config"]["process"][0]["train"]["steps"] = 5
    raw["config"]["name"] = "../escape"
    assert jobs.check_yaml(yaml.safe_dump(raw))[1][0]["path"] == "config.name"
    generate = (ROOT / "config/examples/generate_flux2.yaml").read_text()
    assert "one training process" in jobs.check_yaml(generate)[1][0]["message"]


# ------------------------------------------------------------------------ claiming


def checked_job(tmp_path: Path, name: str = "claimed", **changes) -> tuple[jobs.CheckedJob, str]:
    preset = ui_presets.preset_by_label(TINY_LABEL)
    raw = ui_presets.build_job_config(preset, changed_fields(preset, name=name, **changes), str(tmp_path / "output"))
    text = ui_presets.to_yaml(raw, preset)
    job, problems = jobs.check_yaml(text)
    assert problems == []
    return job, text


def test_claim_refuses_an_existing_job_and_suggests_a_free_name(tmp_path):
    config_dir = tmp_path / "config"
    job, text = checked_job(tmp_path)
    path = jobs.claim(job, text, config_dir)
    assert path == config_dir / "ui_claimed.yaml" and path.read_text() == text and job.job_folder.is_dir()
    with pytest.raises(jobs.JobError, match="already exists.*pick another name, e.g. 'claimed_2'"):
        jobs.claim(job, text, config_dir)
    assert jobs.suggest_name("claimed", tmp_path / "output", config_dir) == "claimed_2"
    (tmp_path / "output" / "claimed_2").mkdir()
    assert jobs.suggest_name("claimed_2", tmp_path / "output", config_dir) == "claimed_3"
    # A leftover config alone also blocks the name (the job folder may be elsewhere).
    other, other_text = checked_job(tmp_path, name="other")
    (config_dir / "ui_other.yaml").write_text("x")
    with pytest.raises(jobs.JobError, match="ui_other.yaml already exists"):
        jobs.claim(other, other_text, config_dir)
    assert not other.job_folder.exists()


def test_claim_race_has_exactly_one_winner(tmp_path, monkeypatch):
    """Many simultaneous starts, also past the friendly pre-check: the atomic mkdir decides."""
    config_dir = tmp_path / "config"
    for bypass_precheck in (False, True):
        name = f"race_{bypass_precheck}"
        candidates = [checked_job(tmp_path, name=name, steps=10 + i) for i in range(12)]
        if bypass_precheck:
            monkeypatch.setattr(jobs, "name_taken", lambda *a, **k: None)
        barrier, results = threading.Barrier(len(candidates)), []

        def start(job, text, barrier=barrier, results=results):
            barrier.wait()
            try:
                jobs.claim(job, text, config_dir)
                results.append(("won", text))
            except jobs.JobError as exc:
                results.append(("refused", str(exc)))

        threads = [threading.Thread(target=start, args=c) for c in candidates]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        winners = [text for kind, text in results if kind == "won"]
        assert len(winners) == 1 and len(results) == len(candidates)
        assert (config_dir / f"ui_{name}.yaml").read_text() == winners[0]
        assert all("pick another name" in msg for kind, msg in results if kind == "refused")


@pytest.mark.slow  # runs a tiny training job
def test_claim_race_across_processes(tmp_path):
    job, text = checked_job(tmp_path, name="procrace")
    script = (
        "import sys, time; from pathlib import Path; from toolkit.ui import jobs as j\n"
        "job, _ = j.check_yaml(Path(sys.argv[1]).read_text(), roots=[Path(sys.argv[4]).parent])\n"
        "while time.time() < float(sys.argv[2]): pass\n"
        "try:\n    j.claim(job, sys.argv[3], Path(sys.argv[4])); print('won')\n"
        "except j.JobError: print('refused')\n"
    )
    source = tmp_path / "job.yaml"
    source.write_text(text)
    go = time.time() + 3.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", script, str(source), str(go), f"{text}# {i}\n", str(tmp_path / "config")],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for i in range(4)
    ]
    outcomes = sorted(p.communicate(timeout=60)[0].strip() for p in procs)
    assert outcomes == ["refused", "refused", "refused", "won"]


# ------------------------------------------------------------------------ running (a fake run.py)

FAKE_RUN = """
import json, signal, sys, time
from pathlib import Path
import yaml

assert sys.argv[1] == "--no-env", sys.argv  # the app never lets run.py expand ${...}
raw = yaml.safe_load(open(sys.argv[2]))
name = raw["config"]["name"]
process = raw["config"]["process"][0]
folder = Path(process["training_folder"]) / name
total = process["train"]["steps"]
step = 0

def event(kind, state="running", **fields):
    with open(folder / "progress.jsonl", "a") as f:
        f.write(json.dumps({"time": time.time(), "event": kind, "state": state, **fields}) + "\\n")

def stop(signum, frame):
    (folder / f"{name}_{step:09d}.safetensors").write_bytes(b"lora")
    event("end", "stopped", step=step)
    sys.exit(130)

print("fake run.py", sys.argv[2], flush=True)
if name.startswith("crash"):
    sys.exit(3)
if name.startswith("slow"):
    time.sleep(30)  # like loading a model: no SIGTERM handler yet, no progress
signal.signal(signal.SIGTERM, stop)
step = int(max([0] + [json.loads(l).get("step", 0) for l in open(folder / "progress.jsonl")]
               if (folder / "progress.jsonl").exists() else [0]))
event("start", step=step, total_steps=total, name=name)
while step < total:
    time.sleep(0.02)
    step += 1
    with open(folder / "loss_log.csv", "a") as f:
        f.write(("step,loss,lr\\n" if step == 1 else "") + f"{step},{1 / step},0.0001\\n")
    event("step", step=step, total_steps=total, loss=1 / step, lr=1e-4, s_per_it=0.02)
(folder / f"{name}.safetensors").write_bytes(b"lora")
event("end", "finished", step=step, path=f"{name}.safetensors")
"""


@pytest.fixture
def fake_root(tmp_path):
    root = tmp_path / "root"
    root.mkdir()
    (root / "run.py").write_text(FAKE_RUN)
    return root


def wait_for(folder: Path, states: tuple[str, ...], timeout: float = 30.0, min_step: int = 0) -> jobs.JobStatus:
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = jobs.job_status(folder)
        if status.state in states and status.step >= min_step:
            return status
        time.sleep(0.05)
    raise AssertionError(f"{folder.name} never reached {states}: {jobs.job_status(folder)}")


def start(tmp_path, fake_root, name, steps):
    job, text = checked_job(tmp_path, name=name, steps=steps)
    job, config = jobs.start_job(text, write_images(tmp_path / "up"), tmp_path / "config", fake_root)
    return job


@pytest.mark.slow  # runs a tiny training job
def test_start_runs_in_its_own_process_group_and_finishes(tmp_path, fake_root):
    job = start(tmp_path, fake_root, "quick", steps=5)
    status = wait_for(job.job_folder, ("finished",))
    assert status.final_lora == job.job_folder / "quick.safetensors" and status.step == 5
    assert status.total_steps == 5 and status.loss == pytest.approx(0.2)
    meta = json.loads((job.job_folder / jobs.JOB_FILE).read_text())
    assert meta["config"] == str(tmp_path / "config" / "ui_quick.yaml")
    assert sorted(p.name for p in (job.job_folder / "dataset").iterdir()) == [
        "000_img_0.png",
        "001_img_1.png",
        "001_img_1.txt",
    ]
    assert "fake run.py" in jobs.log_tail(job.job_folder)
    assert jobs.loss_curve(job.job_folder)[-1] == (5, 0.2)
    assert [s.name for s in jobs.list_jobs(tmp_path / "config", fake_root)] == ["quick"]
    deadline = time.time() + 10
    while not (job.job_folder / jobs.EXIT_FILE).exists() and time.time() < deadline:
        time.sleep(0.05)
    assert (job.job_folder / jobs.EXIT_FILE).read_text() == "0"
    with pytest.raises(jobs.JobError, match="raise train.steps"):
        jobs.resume_job(job.job_folder, fake_root)
    config = Path(meta["config"])
    config.write_text(config.read_text().replace("steps: 5", "steps: 8"))
    jobs.resume_job(job.job_folder, fake_root)  # more steps: the finished job trains on
    assert wait_for(job.job_folder, ("finished",), min_step=8).step == 8


@pytest.mark.slow  # runs a tiny training job
def test_stop_saves_then_resume_continues(tmp_path, fake_root):
    job = start(tmp_path, fake_root, "long", steps=100_000)
    wait_for(job.job_folder, ("running",), min_step=3)
    assert "stop sent" in jobs.stop_job(job.job_folder)
    status = wait_for(job.job_folder, ("stopped",))
    saved = status.step
    assert (job.job_folder / f"long_{saved:09d}.safetensors").is_file()
    with pytest.raises(jobs.JobError, match="already exists"):  # a stopped job's name stays taken
        start(tmp_path, fake_root, "long", steps=10)
    jobs.resume_job(job.job_folder, fake_root)
    wait_for(job.job_folder, ("running",), min_step=saved + 3)
    with pytest.raises(jobs.JobError, match="still running"):
        jobs.resume_job(job.job_folder, fake_root)
    jobs.stop_job(job.job_folder)
    assert wait_for(job.job_folder, ("stopped",)).step > saved
    assert "not running" in jobs.stop_job(job.job_folder)


@pytest.mark.slow  # runs a tiny training job
def test_stop_while_loading_and_a_crash_before_training(tmp_path, fake_root):
    slow = start(tmp_path, fake_root, "slow", steps=10)
    assert wait_for(slow.job_folder, ("starting",)).alive
    jobs.stop_job(slow.job_folder)  # the real trainer handles SIGTERM only once training runs
    assert wait_for(slow.job_folder, ("stopped",)).error is None
    crash = start(tmp_path, fake_root, "crash", steps=10)
    wait_for(crash.job_folder, ("error",))
    deadline = time.time() + 10
    while not (crash.job_folder / jobs.EXIT_FILE).exists() and time.time() < deadline:
        time.sleep(0.05)  # the app's waiter thread records the exit code
    assert "code 3" in jobs.job_status(crash.job_folder).error


def test_start_refuses_and_leaves_nothing_behind(tmp_path, fake_root):
    job, text = checked_job(tmp_path, name="nothing")
    config_dir = tmp_path / "config"
    with pytest.raises(jobs.JobError, match="upload some images"):
        jobs.start_job(text, [], config_dir, fake_root)
    with pytest.raises(jobs.JobError, match=r"1 problem\(s\):\n  config.process\[0\].train.steps"):
        jobs.start_job(text.replace("steps: 120", "steps: -1"), write_images(tmp_path / "up"), config_dir, fake_root)
    bad = tmp_path / "bad.png"
    bad.write_text("no")
    with pytest.raises(jobs.JobError, match="not an image"):
        jobs.start_job(text, [(bad, "")], config_dir, fake_root)
    assert not job.job_folder.exists() and not list(config_dir.glob("*.yaml"))  # the name is free again


# ------------------------------------------------------------------------ progress


def write_events(folder: Path, events: list[dict], torn: bool = False) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(e) + "\n" for e in events) + ('{"time": 9, "event": "st' if torn else "")
    (folder / "progress.jsonl").write_text(text)


def test_summarize_events_takes_the_latest_run():
    events = [
        {"time": 1, "event": "start", "state": "running", "step": 0, "total_steps": 10},
        {"time": 2, "event": "step", "state": "running", "step": 4, "total_steps": 10, "loss": 0.5, "s_per_it": 2.0},
        {"time": 3, "event": "end", "state": "error", "step": 4, "error": "boom"},
        {"time": 4, "event": "start", "state": "running", "step": 4, "total_steps": 20},
        {"time": 5, "event": "step", "state": "running", "step": 5, "total_steps": 20, "loss": 0.4, "s_per_it": 1.0},
        {"time": 6, "event": "step", "state": "running", "step": 6, "total_steps": 20, "loss": 0.3, "s_per_it": 3.0},
        {"time": 7, "event": "sample", "state": "running", "step": 6, "paths": ["samples/000000006_0.jpg"]},
    ]
    summary = jobs.summarize_events(events)
    assert summary == {
        "state": "running",
        "step": 6,
        "total_steps": 20,
        "loss": 0.3,
        "lr": None,
        "s_per_it": 2.0,
        "error": None,
    }


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_job_status_from_the_folder(tmp_path):
    folder = tmp_path / "output" / "job"
    assert jobs.job_status(folder).state == "new"
    write_events(
        folder,
        [
            {"time": 1, "event": "start", "state": "running", "step": 0, "total_steps": 8},
            {"time": 2, "event": "step", "state": "running", "step": 8, "total_steps": 8, "loss": 0.1, "s_per_it": 0.5},
            {"time": 3, "event": "end", "state": "finished", "step": 8},
        ],
        torn=True,
    )
    (folder / "samples").mkdir()
    for name in ("000000000_0.jpg", "000000008_0.jpg", "notes.txt"):
        (folder / "samples" / name).write_bytes(b"x")
    (folder / "job.safetensors").write_bytes(b"x")
    (folder / "job_000000008.safetensors").write_bytes(b"x")
    status = jobs.job_status(folder)  # made by run.py, not the app: no pid
    assert (status.state, status.step, status.total_steps, status.loss) == ("finished", 8, 8, 0.1)
    assert [p.name for p in status.samples] == ["000000000_0.jpg", "000000008_0.jpg"]
    assert status.final_lora == folder / "job.safetensors" and len(status.loras) == 2
    # Launched by the app (pid recorded), gone without an end event of its own.
    (folder / jobs.JOB_FILE).write_text(json.dumps({"pid": dead_pid(), "config": "c.yaml", "started": 100}))
    assert jobs.job_status(folder).state == "error"
    (folder / jobs.EXIT_FILE).write_text("0")
    assert jobs.job_status(folder).state == "finished"
    (folder / jobs.STOP_FILE).write_text("1")
    assert jobs.job_status(folder).state == "stopped"


def test_job_status_of_a_live_process_checks_it_is_the_run(tmp_path):
    folder = tmp_path / "job"
    write_events(folder, [])
    config = str(tmp_path / "ui_job.yaml")
    proc = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)", config])
    try:
        (folder / jobs.JOB_FILE).write_text(json.dumps({"pid": proc.pid, "config": config, "started": time.time()}))
        assert jobs.job_status(folder).state == "starting"
        write_events(folder, [{"time": time.time(), "event": "start", "state": "running", "step": 0}])
        assert jobs.job_status(folder).state == "running"
        (folder / jobs.STOP_FILE).write_text("1")
        assert jobs.job_status(folder).state == "stopping"
        if Path(f"/proc/{proc.pid}").is_dir():  # a reused pid running something else is not our run
            (folder / jobs.JOB_FILE).write_text(json.dumps({"pid": proc.pid, "config": "other.yaml", "started": 1}))
            assert not jobs.job_status(folder).alive
    finally:
        proc.kill()
        proc.wait()


def test_log_tail_and_loss_curve_tolerate_partial_writes(tmp_path):
    (tmp_path / jobs.LOG_FILE).write_bytes(b"loading\nbar:  10%\rbar:  50%\rbar: 100%\ndone\r\n")
    assert jobs.log_tail(tmp_path).splitlines() == ["loading", "bar: 100%", "done"]
    (tmp_path / "loss_log.csv").write_text("step,loss,lr\n1,0.5,1e-4\n2,0.4,1e-4\n3,")
    assert jobs.loss_curve(tmp_path) == [(1, 0.5), (2, 0.4)]
    assert jobs.loss_curve(tmp_path / "missing") == []


# ------------------------------------------------------------------------ edit (reference) jobs

DEMO_EDIT = ROOT / "config" / "examples" / "demo_edit_dataset"


def edit_job(tmp_path: Path, name: str, targets: list[Path], references: list[Path]) -> str:
    """The YAML the app builds for the edit preset with these uploads."""
    preset = ui_presets.preset_by_label(EDIT_LABEL)
    sample_reference = ui_datasets.first_reference(targets, references)
    raw = ui_presets.build_job_config(
        preset, changed_fields(preset, name=name, steps=5), str(tmp_path / "output"), sample_reference
    )
    return ui_presets.to_yaml(raw, preset)


def demo_edit_uploads() -> tuple[list[tuple[Path, str]], list[Path]]:
    targets = sorted(DEMO_EDIT.glob("edit_*.png"))
    return [(t, t.with_suffix(".txt").read_text()) for t in targets], sorted((DEMO_EDIT / "control").glob("*.png"))


@pytest.mark.slow  # runs a tiny training job
def test_edit_job_writes_each_reference_under_its_targets_name(tmp_path, fake_root):
    images, references = demo_edit_uploads()
    text = edit_job(tmp_path, "edit", [t for t, _ in images], references[::-1])  # upload order does not matter
    job, config = jobs.start_job(text, images, tmp_path / "config", fake_root, references[::-1])
    control = job.job_folder / "dataset" / "control"
    assert sorted(p.name for p in control.iterdir()) == [f"{i:03d}_edit_{i:02d}.png" for i in range(6)]
    for i, ref in enumerate(references):
        assert (control / f"{i:03d}_edit_{i:02d}.png").read_bytes() == ref.read_bytes()
    assert (job.job_folder / "dataset" / "003_edit_03.txt").read_text() == images[3][1].strip() + "\n"
    process = jobs.check_yaml(config.read_text())[0].raw["config"]["process"][0]
    assert process["datasets"][0]["control_path"] == f"{tmp_path}/output/edit/dataset/control"
    assert process["sample"]["ctrl_img"] == str(control / "000_edit_00.png")  # absolute, the first target's
    assert wait_for(job.job_folder, ("finished",)).step == 5


def test_edit_job_refuses_unpaired_or_unreadable_uploads_and_leaves_nothing(tmp_path, fake_root):
    images, references = demo_edit_uploads()
    targets = [t for t, _ in images]
    up = tmp_path / "up"
    up.mkdir()
    stray, broken, twin = up / "stray.png", up / "edit_03.png", up / "edit_02.jpg"
    Image.new("RGB", (16, 16)).save(stray)
    Image.new("RGB", (16, 16)).save(twin)
    broken.write_text("not an image")
    uploads = [r for r in references if r.stem not in ("edit_01", "edit_03")] + [stray, broken, twin]
    config_dir = tmp_path / "config"
    with pytest.raises(jobs.JobError) as refused:
        jobs.start_job(edit_job(tmp_path, "bad", targets, uploads), images, config_dir, fake_root, uploads)
    message = str(refused.value)
    assert "1 target image(s) without a reference of the same file name: edit_01.png" in message
    assert "1 target image(s) with more than one reference: edit_02.png (edit_02.png, edit_02.jpg)" in message
    assert "1 reference image(s) without a target of the same file name: stray.png" in message
    assert "edit_03.png' is not a readable image" in message
    # No references: the preset's placeholder sample.ctrl_img stays, outside every data root (the app says
    # "upload the reference images too" before it gets here: tests/ui/test_flux_train_ui_security.py).
    with pytest.raises(jobs.JobError, match="sample.ctrl_img: '/path/to/a/reference.jpg'.* is outside the folders"):
        jobs.start_job(edit_job(tmp_path, "bad", targets, []), images, config_dir, fake_root, [])
    text = edit_job(tmp_path, "bad", targets, references)
    elsewhere = text.replace("000_edit_00.png", "999_gone.png")  # a sample reference edited in the YAML
    with pytest.raises(jobs.JobError, match=r"sample.ctrl_img: .*999_gone.png does not exist"):
        jobs.start_job(elsewhere, images, config_dir, fake_root, references)
    plain, plain_text = checked_job(tmp_path, name="bad")
    with pytest.raises(jobs.JobError, match="6 reference images were uploaded but no datasets\\[\\].control_path"):
        jobs.start_job(plain_text, images, config_dir, fake_root, references)
    assert not (tmp_path / "output" / "bad").exists() and not list(config_dir.glob("*.yaml"))
