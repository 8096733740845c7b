"""Jobs started from the Gradio app (flux_train_ui.py), without Gradio: config, claim, run, watch.

The app is a front end over the one output contract (DESIGN.md, decision 8): it writes a YAML
under ``config/`` and runs ``python run.py config/ui_<name>.yaml``; everything it shows is read
back from the job folder ``<training_folder>/<name>/``. This module holds the parts that need no
browser, so they are unit-tested on their own:

- **building a job**: a preset's whole config (``toolkit.ui_schema.presets()``) with only the
  person's fields changed (:func:`build_job_config`); memory presets derived from the preset's
  ``model`` section (:func:`vram_options`);
- **checking it**: YAML text parsed exactly as run.py parses it, then ``ui_schema.validate_dict``
  (:func:`check_yaml`: problems by key path);
- **claiming a name**: ``os.mkdir`` of the job folder plus an ``O_EXCL`` create of
  ``config/ui_<name>.yaml``; both are atomic, so of two simultaneous starts with one name exactly
  one wins, and an existing job is never overwritten (:func:`claim`);
- **running**: ``run.py`` in its own session/process group, output to ``<job>/train.log``;
  it outlives the app and the browser (:func:`start_job`, :func:`stop_job`, :func:`resume_job`);
- **watching**: the state of a job from its folder (``progress.jsonl``, samples, LoRA files) and
  the pid the app recorded in ``<job>/ui_job.json`` (:func:`job_status`, :func:`list_jobs`).

Files this module adds to a job folder: ``dataset/`` (the uploaded images and captions),
``ui_job.json`` (config path, pid, launch time), ``train.log``, ``ui_stop_requested`` (Stop was
pressed) and ``ui_exit_code`` (written when the app saw the run exit).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import yaml

from toolkit.config import load_raw_config, parse_job_config
from toolkit.errors import ConfigError
from toolkit.progress import read_events
from toolkit.ui_schema import presets, validate_dict

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
CONFIG_DIR = ROOT / "config"
CONFIG_PREFIX = "ui_"
DATASET_DIR = "dataset"
JOB_FILE, LOG_FILE, STOP_FILE, EXIT_FILE = "ui_job.json", "train.log", "ui_stop_requested", "ui_exit_code"
# The formats the dataset reader takes as they are (toolkit.data.dataset.IMAGE_EXTENSIONS; not
# imported because that module pulls in torch; a test keeps the two equal). Others become PNG.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
FINAL_STATES = ("finished", "stopped", "error")


class JobError(Exception):
    """A start/stop request the app refuses; the message says why and what to do instead.

    ``problems``: config problems by key path (``{"path", "message"}``), when that is the reason.
    """

    def __init__(self, message: str, problems: list[dict] | None = None):
        self.problems = problems or []
        super().__init__(message + ("".join(f"\n  {line}" for line in format_problems(self.problems).splitlines())))


# ---------------------------------------------------------------------------- presets


def form_presets() -> tuple[list[dict], dict[str, str]]:
    """(the presets the form can fill, {label: why not} for the others).

    The form uploads one folder of images with captions. Edit (reference) training also needs a
    reference image per target (``datasets[].control_path``, ``sample.ctrl_img``): those presets
    run with run.py.
    """
    usable, skipped = [], {}
    for preset in presets():
        process = _process(preset["config"])
        sample = process.get("sample") or {}
        if any(d.get("control_path") for d in process.get("datasets") or []) or sample.get("ctrl_img"):
            skipped[preset["label"]] = (f"needs reference images for each target; edit {preset['file']} "
                                        "and run it with run.py")
        else:
            usable.append(preset)
    return usable, skipped


def preset_by_label(label: str) -> dict:
    usable = form_presets()[0]
    for preset in usable:
        if preset["label"] == label:
            return preset
    raise JobError(f"unknown model preset '{label}'; known: {', '.join(p['label'] for p in usable)}")


def _process(raw: dict) -> dict:
    return raw["config"]["process"][0]


def vram_options(preset: dict) -> dict[str, dict]:
    """Memory presets for one model preset: label -> overrides of its ``model`` section
    (plus ``device`` for the tiny model). The first entry is the preset itself.

    Derived from the preset's own settings, never from a per-model table: the shipped examples
    are sized for 24 GB (file name ``*_24gb``), so for a bigger card quantization is relaxed
    one step at a time (int4 -> float8 -> bf16, each roughly doubling the transformer's size),
    and for a smaller one the text encoder moves to the CPU.
    """
    process = typed_process(preset)
    model = process.model
    if process.device == "cpu":
        return {"CPU (tiny demo)": {}, "GPU cuda:0 (tiny demo)": {"device": "cuda:0"}}
    size = re.search(r"_(\d+)gb$", preset["id"])
    gb = int(size.group(1)) if size else None
    options = {f"{gb} GB (example)" if gb else "As the example": {}}
    if not model.low_vram:
        options["Less VRAM: text encoder on the CPU (needs more RAM)"] = {"low_vram": True}
    bf16_gb = 2 * gb if gb else None
    if model.quantize and model.qtype == "qint4" and gb:
        options[f"{2 * gb} GB (qfloat8 transformer)"] = {"qtype": "qfloat8"}
        bf16_gb = 4 * gb
    if model.quantize or model.quantize_te or model.low_vram:
        label = f"{bf16_gb} GB+ (no quantization)" if bf16_gb else "No quantization"
        options[label] = {"quantize": False, "quantize_te": False, "low_vram": False}
    return options


# ---------------------------------------------------------------------------- building


@dataclasses.dataclass
class UserFields:
    """What the person sets in the app; everything else comes from the preset unchanged.

    No defaults here: :meth:`from_preset` fills the form from the preset's typed config, so each
    default stays where it lives (the example file, else the config schema).
    """

    name: str
    trigger_word: str
    default_caption: str
    steps: int
    lr: float
    rank: int
    resolutions: list[int]
    sample_every: int
    sample_prompts: list[str]
    vram: str

    @classmethod
    def from_preset(cls, preset: dict, name: str | None = None) -> "UserFields":
        """The form's initial values: the preset's own."""
        process = typed_process(preset)
        return cls(
            name=name or preset["config"]["config"]["name"],
            trigger_word=process.trigger_word or "",
            default_caption=process.datasets[0].default_caption or "",
            steps=process.train.steps,
            lr=process.train.lr,
            rank=process.network.linear,
            resolutions=process.datasets[0].resolutions,
            sample_every=process.sample.sample_every,
            sample_prompts=[item.prompt for item in process.sample.sample_items()],
            vram=next(iter(vram_options(preset))),
        )


def typed_process(preset: dict):
    """The preset's training process as the typed config (schema defaults filled in)."""
    return parse_job_config(copy.deepcopy(preset["config"]), preset["file"]).config.process[0]


def parse_resolutions(text: str) -> list[int]:
    """``"512, 768 1024"`` -> ``[512, 768, 1024]``; a clear error for anything else."""
    parts = [p for p in re.split(r"[,\s]+", str(text).strip()) if p]
    if not parts or not all(p.isdigit() for p in parts):
        raise JobError(f"resolutions: write whole numbers separated by commas (e.g. 512, 768, 1024), got '{text}'")
    return [int(p) for p in parts]


def _section(raw: dict, key: str) -> dict:
    """``raw[key]`` as a dict to edit (an absent or empty section means the schema defaults)."""
    if not isinstance(raw.get(key), dict):
        raw[key] = {}
    return raw[key]


def build_job_config(preset: dict, fields: UserFields, training_folder: str | None = None) -> dict:
    """The preset's config with only the person's fields changed.

    The dataset is ``<training_folder>/[name]/dataset`` (run.py substitutes ``[name]``), where the
    app writes the uploaded images. ``training_folder`` overrides the preset's (an app option).
    Sample prompts equal to the preset's leave its ``sample`` section as it is.
    """
    typed = typed_process(preset)
    raw = copy.deepcopy(preset["config"])
    raw["config"]["name"] = fields.name
    process = _process(raw)
    if training_folder is not None:
        process["training_folder"] = training_folder
    folder = training_folder if training_folder is not None else typed.training_folder
    process["trigger_word"] = fields.trigger_word.strip() or None
    dataset = process["datasets"][0]
    process["datasets"] = [dataset]  # one folder: the uploaded images
    dataset["folder_path"] = f"{folder.rstrip('/')}/[name]/{DATASET_DIR}"
    dataset.pop("default_caption", None)
    if fields.default_caption.strip():
        dataset["default_caption"] = fields.default_caption.strip()
    dataset["resolution"] = [int(r) for r in fields.resolutions]
    train = _section(process, "train")
    train["steps"], train["lr"] = int(fields.steps), float(fields.lr)
    network = _section(process, "network")
    rank_key = "rank" if "rank" in network else "linear"
    alpha_key = "alpha" if "alpha" in network else "linear_alpha"
    alpha = typed.network.linear_alpha * int(fields.rank) / typed.network.linear  # keep the preset's alpha/rank
    network[rank_key], network[alpha_key] = int(fields.rank), int(alpha) if float(alpha).is_integer() else alpha
    sample = _section(process, "sample")
    sample["sample_every"] = int(fields.sample_every)
    prompts = [p.strip() for p in fields.sample_prompts if p.strip()]
    if prompts != [item.prompt for item in typed.sample.sample_items()]:
        sample.pop("samples", None)
        sample["prompts"] = prompts
    options = vram_options(preset)
    if fields.vram not in options:
        raise JobError(f"unknown memory preset '{fields.vram}' for {preset['label']}; "
                       f"choose one of: {', '.join(options)}")
    for key, value in options[fields.vram].items():
        (process if key == "device" else process["model"])[key] = value
    return raw


def to_yaml(raw: dict, preset: dict | None = None) -> str:
    header = "# Written by flux_train_ui.py"
    if preset is not None:
        header += f" from {preset['file']} ({preset['label']})"
    header += ". This text is what runs: edit it freely.\n"
    return header + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True, width=120)


# ---------------------------------------------------------------------------- checking


@dataclasses.dataclass
class CheckedJob:
    """A valid training job: the resolved raw dict and where its files go."""

    raw: dict
    name: str
    job_folder: Path
    dataset_folders: list[Path]
    caption_ext: str


def resolve_path(path: str | Path, root: Path = ROOT) -> Path:
    """A config path as run.py sees it: relative paths are relative to the project (its cwd)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else root / path


def check_yaml(text: str, root: Path = ROOT) -> tuple[CheckedJob | None, list[dict]]:
    """Parse YAML text as run.py does (``1e-4`` floats, ``${ENV}``, ``[name]``), then validate it.

    Returns ``(job, [])`` or ``(None, problems)``, problems as ``{"path", "message"}``.
    """
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "job.yaml"
        path.write_text(text, encoding="utf-8")
        try:
            raw = load_raw_config(path)
        except ConfigError as exc:
            return None, [{"path": p, "message": m} for p, m in exc.problems]
    result = validate_dict(raw, "<ui>")
    if not result["ok"]:
        return None, result["problems"]
    config = parse_job_config(raw, "<ui>")
    processes = config.config.process
    if config.job != "extension" or len(processes) != 1:
        return None, [{"path": "config.process", "message": "the app runs one training process (job: extension, "
                                                          "one sd_trainer process); use run.py for other jobs"}]
    name = config.config.name
    if not NAME_PATTERN.match(name):
        return None, [{"path": "config.name", "message": f"'{name}' cannot name a job folder: use letters, digits, "
                                                         "'_', '-', '.', starting with a letter or digit (at most 80)"}]
    process = processes[0]
    job = CheckedJob(raw=raw, name=name, job_folder=resolve_path(process.training_folder, root) / name,
                     dataset_folders=[resolve_path(d.folder_path, root) for d in process.datasets],
                     caption_ext=process.datasets[0].caption_ext)
    return job, []


def format_problems(problems: list[dict]) -> str:
    return "\n".join(ConfigError.format_problem(p["path"], p["message"]) for p in problems)


# ---------------------------------------------------------------------------- claiming


def config_path(name: str, config_dir: Path = CONFIG_DIR) -> Path:
    return Path(config_dir) / f"{CONFIG_PREFIX}{name}.yaml"


def name_taken(name: str, job_folder: Path, config_dir: Path = CONFIG_DIR) -> str | None:
    """Why ``name`` cannot start a new job (a message), or None when it is free."""
    if job_folder.exists():
        state = job_status(job_folder).state
        return (f"a job named '{name}' already exists in {job_folder} (state: {state}); "
                f"pick another name{_free_hint(name, job_folder.parent, config_dir)}")
    if config_path(name, config_dir).exists():
        return (f"{config_path(name, config_dir)} already exists; pick another name"
                f"{_free_hint(name, job_folder.parent, config_dir)}")
    return None


def _free_hint(name: str, training_folder: Path, config_dir: Path) -> str:
    return f", e.g. '{suggest_name(name, training_folder, config_dir)}'"


def suggest_name(base: str, training_folder: Path, config_dir: Path = CONFIG_DIR) -> str:
    """``base`` if free, else ``base_2``, ``base_3``... (free = no job folder and no ui config)."""
    def free(name: str) -> bool:
        return not (Path(training_folder) / name).exists() and not config_path(name, config_dir).exists()

    if free(base):
        return base
    numbered = re.match(r"^(.*)_(\d+)$", base)
    stem, first = (numbered.group(1), int(numbered.group(2)) + 1) if numbered else (base, 2)
    for i in range(first, first + 10_000):
        if free(f"{stem}_{i}"):
            return f"{stem}_{i}"
    raise JobError(f"no free job name starting with '{base}'")


def claim(job: CheckedJob, yaml_text: str, config_dir: Path = CONFIG_DIR) -> Path:
    """Reserve the job's name: create its folder and ``config/ui_<name>.yaml``, both atomically.

    ``os.mkdir`` fails when the folder exists, and the config is created with ``O_EXCL``: of two
    starts racing for one name exactly one gets both; the other gets a JobError and changes nothing.
    Returns the config path.
    """
    taken = name_taken(job.name, job.job_folder, config_dir)
    if taken:
        raise JobError(taken)
    job.job_folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(job.job_folder)
    except FileExistsError:
        raise JobError(f"a job named '{job.name}' was just started by someone else; pick another name"
                       f"{_free_hint(job.name, job.job_folder.parent, config_dir)}") from None
    path = config_path(job.name, config_dir)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        os.rmdir(job.job_folder)
        raise JobError(f"{path} already exists; pick another name") from None
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(yaml_text)
    return path


# ---------------------------------------------------------------------------- dataset


def write_dataset(folder: Path, images: list[tuple[str | Path, str]], caption_ext: str = "txt") -> int:
    """Copy ``(image path, caption)`` pairs into ``folder`` as ``000_<stem>.<ext>`` + ``.txt`` captions.

    jpg/png/webp are copied byte for byte; other formats PIL reads become PNG. An empty caption
    writes no caption file (the dataset's ``default_caption`` then applies). Returns the count.
    """
    from PIL import Image, UnidentifiedImageError

    folder.mkdir(parents=True, exist_ok=True)
    for i, (src, caption) in enumerate(images):
        src = Path(src)
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", src.stem)[:60] or "image"
        ext = src.suffix.lower()
        target = folder / f"{i:03d}_{stem}{ext if ext in IMAGE_EXTENSIONS else '.png'}"
        try:
            with Image.open(src) as img:
                img.verify()
            if ext in IMAGE_EXTENSIONS:
                shutil.copyfile(src, target)
            else:
                with Image.open(src) as img:
                    img.save(target, format="PNG")
        except (UnidentifiedImageError, OSError) as exc:
            raise JobError(f"{src.name} is not an image PIL can read ({exc}); remove it") from exc
        if caption.strip():
            target.with_suffix(f".{caption_ext}").write_text(caption.strip() + "\n", encoding="utf-8")
    return len(images)


# ---------------------------------------------------------------------------- running


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _launch(job_folder: Path, config_file: Path, root: Path) -> subprocess.Popen:
    """``python run.py CONFIG`` in its own session: Ctrl-C in the app's terminal, a closed
    browser or the app exiting do not reach it; Stop signals its process group."""
    for marker in (STOP_FILE, EXIT_FILE):
        (job_folder / marker).unlink(missing_ok=True)
    command = [sys.executable, str(root / "run.py"), str(config_file)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(job_folder / LOG_FILE, "ab") as log_file:
        log_file.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n".encode())
        log_file.flush()
        extra = ({"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if os.name == "nt"
                 else {"start_new_session": True})
        proc = subprocess.Popen(command, cwd=root, stdin=subprocess.DEVNULL, stdout=log_file,
                                stderr=subprocess.STDOUT, env=env, **extra)
    _write_json(job_folder / JOB_FILE, {"name": job_folder.name, "config": str(config_file), "pid": proc.pid,
                                        "started": time.time(), "command": command})

    def reap():  # record the exit code (the progress log has no end event when run.py dies early)
        code = proc.wait()
        (job_folder / EXIT_FILE).write_text(str(code))

    threading.Thread(target=reap, name=f"wait-{job_folder.name}", daemon=True).start()
    return proc


def start_job(yaml_text: str, images: list[tuple[str | Path, str]], config_dir: Path = CONFIG_DIR,
              root: Path = ROOT) -> tuple[CheckedJob, Path]:
    """Validate, claim the name, write the dataset and start run.py. Returns (job, config path).

    Raises JobError (with every validation problem by key path) and changes nothing when refused.
    """
    job, problems = check_yaml(yaml_text, root)
    if job is None:
        raise JobError(f"the config has {len(problems)} problem(s):", problems)
    dataset = job.job_folder / DATASET_DIR
    if images and dataset not in job.dataset_folders:
        raise JobError(f"{len(images)} images were uploaded but no datasets[].folder_path is {dataset} "
                       f"(where the app writes them); set folder_path to {job.job_folder.name}'s dataset folder "
                       "or remove the uploads")
    if not images and dataset in job.dataset_folders:
        raise JobError("upload some images first (or point datasets[0].folder_path at a folder of images)")
    config_file = claim(job, yaml_text, config_dir)
    try:
        if images:
            write_dataset(dataset, images, job.caption_ext)
        _launch(job.job_folder, config_file, root)
    except BaseException:
        shutil.rmtree(job.job_folder, ignore_errors=True)  # give the name back: nothing ran
        config_file.unlink(missing_ok=True)
        raise
    return job, config_file


_resume_lock = threading.Lock()


def resume_job(job_folder: Path, root: Path = ROOT) -> None:
    """Run a job's config again: run.py resumes from its last save (a stopped or failed job, or a
    finished one whose train.steps was raised)."""
    with _resume_lock:
        status = job_status(job_folder)
        if status.alive:
            raise JobError(f"'{job_folder.name}' is still running")
        if not status.config:
            raise JobError(f"'{job_folder.name}' was not started from the app; run it with run.py")
        if status.state == "finished":
            config = parse_job_config(load_raw_config(status.config), status.config)
            if config.config.process[0].train.steps <= status.step:
                raise JobError(f"'{job_folder.name}' is finished; to train it further, raise train.steps in "
                               f"{status.config}, then press Resume")
        _launch(job_folder, Path(status.config), root)


def stop_job(job_folder: Path) -> str:
    """SIGTERM the run's process group: the trainer finishes its step, saves, exits ("stopped").

    While the model still loads nothing is saved yet and run.py simply ends; the stop marker makes
    that "stopped" too.
    """
    status = job_status(job_folder)
    if not status.alive:
        return f"'{job_folder.name}' is not running (state: {status.state})"
    again = (job_folder / STOP_FILE).exists()
    (job_folder / STOP_FILE).write_text(str(time.time()))
    if os.name == "nt":
        os.kill(status.pid, signal.SIGTERM)
    else:
        os.killpg(status.pid, signal.SIGTERM)
    if again:  # the trainer takes a second signal as "stop now" (it still saves)
        return f"second stop sent to '{job_folder.name}': it stops now, saving first"
    return f"stop sent to '{job_folder.name}': it finishes the current step, saves a checkpoint, then stops"


def _pid_alive(pid: int, config_file: str) -> bool:
    """The run's process still exists (and, where /proc tells, is still that run, not a reused pid)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    except OSError:
        return False
    proc = Path(f"/proc/{pid}")
    if proc.is_dir():
        try:
            if (proc / "stat").read_text().rsplit(")", 1)[1].split()[0] == "Z":
                return False  # exited, not reaped yet
            return config_file in (proc / "cmdline").read_bytes().decode(errors="replace")
        except (OSError, IndexError):
            return False
    return True


# ---------------------------------------------------------------------------- watching


@dataclasses.dataclass
class JobStatus:
    """What the app shows for one job, read from its folder.

    state: "new" (no run yet), "starting" (loading the model), "running", "stopping",
    "finished", "stopped" or "error".
    """

    name: str
    folder: Path
    state: str = "new"
    alive: bool = False
    pid: int | None = None
    config: str | None = None
    step: int = 0
    total_steps: int | None = None
    loss: float | None = None
    lr: float | None = None
    s_per_it: float | None = None
    error: str | None = None
    samples: list[Path] = dataclasses.field(default_factory=list)
    loras: list[Path] = dataclasses.field(default_factory=list)
    final_lora: Path | None = None
    updated: float = 0.0

    @property
    def eta_s(self) -> float | None:
        if self.s_per_it is None or self.total_steps is None or self.state != "running":
            return None
        return max(self.total_steps - self.step, 0) * self.s_per_it


def summarize_events(events: list[dict]) -> dict:
    """The progress fields of a run from its ``progress.jsonl`` events (the last run's, on resume)."""
    out = {"state": None, "step": 0, "total_steps": None, "loss": None, "lr": None, "s_per_it": None, "error": None}
    recent = []
    for event in events:
        kind = event.get("event")
        out["state"] = event.get("state", out["state"])
        if "step" in event:
            out["step"] = event["step"]
        if event.get("total_steps") is not None:
            out["total_steps"] = event["total_steps"]
        if kind == "start":
            out["error"], recent = None, []
        elif kind == "step":
            out["loss"], out["lr"] = event.get("loss"), event.get("lr")
            if event.get("s_per_it") is not None:
                recent = (recent + [event["s_per_it"]])[-20:]
        elif kind == "end":
            out["error"] = event.get("error")
    if recent:
        out["s_per_it"] = sum(recent) / len(recent)
    return out


def job_status(folder: Path) -> JobStatus:
    folder = Path(folder)
    status = JobStatus(name=folder.name, folder=folder)
    meta = {}
    if (folder / JOB_FILE).is_file():
        try:
            meta = json.loads((folder / JOB_FILE).read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError):
            meta = {}
    status.pid, status.config = meta.get("pid"), meta.get("config")
    started = float(meta.get("started", 0))
    events = read_events(folder)
    # Events written by this launch (a resumed job's log also holds the earlier runs).
    current = [e for e in events if e.get("time", 0) >= started - 1.0]
    summary = summarize_events(events)
    for key in ("step", "total_steps", "loss", "lr", "s_per_it"):
        setattr(status, key, summary[key])
    status.alive = bool(status.pid) and _pid_alive(int(status.pid), status.config or "")
    last = summarize_events(current)["state"] if current else None
    stop_requested = (folder / STOP_FILE).exists()
    if status.alive:
        status.state = "stopping" if stop_requested else ("running" if last == "running" else "starting")
    elif last in FINAL_STATES:
        status.state, status.error = last, summary["error"]
    elif status.pid:  # exited without an end event: killed during setup, or crashed before training
        code = _read_exit_code(folder)
        status.state = "stopped" if stop_requested else ("finished" if code == 0 else "error")
        if status.state == "error":
            status.error = f"run.py exited{f' with code {code}' if code is not None else ''}; see {LOG_FILE}"
    elif summary["state"]:
        status.state = summary["state"]  # a job folder run.py made without the app
    status.samples = sorted(p for p in (folder / "samples").glob("*") if p.suffix.lower() in IMAGE_EXTENSIONS)
    status.loras = sorted(folder.glob("*.safetensors"))
    final = folder / f"{folder.name}.safetensors"
    status.final_lora = final if final.is_file() else None
    status.updated = max([started] + [e.get("time", 0) for e in events[-1:]])
    return status


def _read_exit_code(folder: Path) -> int | None:
    try:
        return int((folder / EXIT_FILE).read_text().strip())
    except (OSError, ValueError):
        return None


def loss_curve(folder: Path) -> list[tuple[int, float]]:
    """``loss_log.csv`` as (step, loss) rows; a torn last line is skipped."""
    path = Path(folder) / "loss_log.csv"
    if not path.is_file():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines()[1:]:
        parts = line.split(",")
        try:
            rows.append((int(parts[0]), float(parts[1])))
        except (ValueError, IndexError):
            continue
    return rows


def log_tail(folder: Path, lines: int = 40) -> str:
    """The last lines of ``train.log`` (tqdm's carriage-return updates collapsed to the latest)."""
    path = Path(folder) / LOG_FILE
    if not path.is_file():
        return ""
    with open(path, "rb") as f:
        f.seek(max(path.stat().st_size - 64_000, 0))
        text = f.read().decode("utf-8", errors="replace")
    out = []
    for line in text.replace("\r\n", "\n").split("\n"):
        pieces = [p for p in line.split("\r") if p.strip()]
        out.append(pieces[-1] if pieces else "")
    return "\n".join(out[-lines:])


def _job_folder_of(config_file: Path, root: Path) -> Path:
    config = parse_job_config(load_raw_config(config_file), str(config_file))
    return resolve_path(config.config.process[0].training_folder, root) / config.config.name


def list_jobs(config_dir: Path = CONFIG_DIR, root: Path = ROOT) -> list[JobStatus]:
    """Jobs the app started (``config/ui_*.yaml``), newest first; state read from each job folder."""
    jobs = []
    for path in Path(config_dir).glob(f"{CONFIG_PREFIX}*.yaml"):
        try:
            status = job_status(_job_folder_of(path, root))
        except (ConfigError, AttributeError, IndexError) as exc:
            log.warning("skipping %s: %s", path, exc)
            continue
        status.updated = max(status.updated, path.stat().st_mtime)
        jobs.append(status)
    return sorted(jobs, key=lambda s: s.updated, reverse=True)


def find_job(name: str, config_dir: Path = CONFIG_DIR, root: Path = ROOT) -> JobStatus:
    """The job started from the app as ``name`` (its config is ``config/ui_<name>.yaml``)."""
    path = config_path(name, config_dir)
    if not (NAME_PATTERN.match(name or "") and path.is_file()):
        raise JobError(f"no job named '{name}' started from the app")
    try:
        return job_status(_job_folder_of(path, root))
    except (ConfigError, AttributeError, IndexError) as exc:
        raise JobError(f"{path} is no longer a valid job config: {exc}") from exc
