"""Jobs started from the Gradio app (flux_train_ui.py), without Gradio: check, claim, run, watch.

The app is a front end over the one output contract (DESIGN.md, decision 8): it writes a YAML
under ``config/`` and runs ``python run.py config/ui_<name>.yaml``; everything it shows is read
back from the job folder ``<training_folder>/<name>/``. This module holds the parts that need no
browser, so they are unit-tested on their own (the config comes from ``toolkit/ui/presets.py``,
the uploads are written by ``toolkit/ui/datasets.py``):

- **checking a job**: YAML text parsed exactly as run.py parses it, then ``ui_schema.validate_dict``
  (toolkit/validate.py, the one validation path; :func:`check_yaml`: problems by key path);
- **claiming a name**: ``os.mkdir`` of the job folder plus an ``O_EXCL`` create of
  ``config/ui_<name>.yaml``; both are atomic, so of two simultaneous starts with one name exactly
  one wins, and an existing job is never overwritten (:func:`claim`);
- **running**: the uploads checked (edit jobs: one reference per target), then ``run.py`` in its
  own session/process group, output to ``<job>/train.log``; it outlives the app and the browser
  (:func:`start_job`, :func:`stop_job`, :func:`resume_job`);
- **watching**: the state of a job from its folder (``progress.jsonl``, samples, LoRA files) and
  the pid the app recorded in ``<job>/ui_job.json`` (:func:`job_status`, :func:`list_jobs`).

Files this module adds to a job folder: ``dataset/`` (the uploaded images and captions, and for
edit jobs ``dataset/control/``, the references), ``ui_job.json`` (config path, pid, launch time),
``train.log``, ``ui_stop_requested`` (Stop was pressed) and ``ui_exit_code`` (written when the app
saw the run exit).
"""

from __future__ import annotations

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

from toolkit.config import load_raw_config, parse_job_config
from toolkit.errors import ConfigError
from toolkit.paths import CONFIG_DIR, ROOT
from toolkit.progress import read_events
from toolkit.ui.datasets import (
    CONTROL_DIR,
    DATASET_DIR,
    IMAGE_EXTENSIONS,
    UploadError,
    check_references,
    reference_name,
    write_dataset,
    write_references,
)
from toolkit.ui.schema import validate_dict

log = logging.getLogger(__name__)

CONFIG_PREFIX = "ui_"
JOB_FILE, LOG_FILE, STOP_FILE, EXIT_FILE = "ui_job.json", "train.log", "ui_stop_requested", "ui_exit_code"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,79}$")
FINAL_STATES = ("finished", "stopped", "error")


class JobError(Exception):
    """A start/stop request the app refuses; the message says why and what to do instead.

    ``problems``: config problems by key path (``{"path", "message"}``), when that is the reason.
    """

    def __init__(self, message: str, problems: list[dict] | None = None):
        self.problems = problems or []
        super().__init__(message + ("".join(f"\n  {line}" for line in format_problems(self.problems).splitlines())))


# ---------------------------------------------------------------------------- checking


@dataclasses.dataclass
class CheckedJob:
    """A valid training job: the resolved raw dict and where its files go.

    control_folders: every dataset's reference folders (``control_path``); sample_references: the
    samples' reference images (``sample.ctrl_img``, ``sample.samples[].ctrl_img``), key path -> path.
    """

    raw: dict
    name: str
    job_folder: Path
    dataset_folders: list[Path]
    caption_ext: str
    control_folders: list[Path] = dataclasses.field(default_factory=list)
    sample_references: list[tuple[str, Path]] = dataclasses.field(default_factory=list)


def resolve_path(path: str | Path, root: Path = ROOT) -> Path:
    """A config path as run.py sees it: relative paths are relative to the project (its cwd)."""
    path = Path(path).expanduser()
    return path if path.is_absolute() else root / path


def ui_roots(root: Path = ROOT, extra: list[Path] = ()) -> list[Path]:
    """The folders a job started from the app may name (toolkit/ui/guard.py): the training outputs
    (``output/``), the bundled demo datasets (``config/examples/``), local models (``models/``) and
    ``extra`` (the app's ``--training-folder`` and ``--data-root`` folders)."""
    return [Path(root) / "output", Path(root) / "config" / "examples", Path(root) / "models", *map(Path, extra)]


def check_yaml(text: str, root: Path = ROOT, roots: list[Path] | None = None) -> tuple[CheckedJob | None, list[dict]]:
    """Parse YAML text as ``run.py --no-env`` does (``1e-4`` floats, ``[name]``; a ``${ENV}`` is refused),
    confine its paths to ``roots`` (default :func:`ui_roots`), then validate it.

    Returns ``(job, [])`` or ``(None, problems)``, problems as ``{"path", "message"}``.
    """
    from toolkit.ui.guard import guard_raw

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "job.yaml"
        path.write_bytes(text.encode("utf-8", errors="surrogatepass"))
        try:
            raw = load_raw_config(path, expand_env=False)
        except ConfigError as exc:
            return None, [{"path": p, "message": m} for p, m in exc.problems]
    section = raw.get("config") if isinstance(raw, dict) else None
    name = section.get("name") if isinstance(section, dict) else None
    name_problems = (
        []
        if not isinstance(name, str) or NAME_PATTERN.match(name)
        else [
            {
                "path": "config.name",
                "message": f"'{name}' cannot name a job folder: use letters, digits, "
                "'_', '-', '.', starting with a letter or digit (at most 80)",
            }
        ]
    )
    guarded = [{"path": p, "message": m} for p, m in guard_raw(raw, ui_roots(root) if roots is None else roots, root)]
    # Every problem in one answer: the guard's, then the validation's; dataset folders are scanned (read) only
    # once the guard has confined every path to the UI's data roots.
    result = validate_dict(raw, "<ui>", pending=_upload_folders(raw, root), data=not guarded)
    if guarded or name_problems or not result["ok"]:
        seen = {p["path"] for p in guarded}
        return None, guarded + [p for p in name_problems + result["problems"] if p["path"] not in seen]
    config = parse_job_config(raw, "<ui>")
    processes = config.config.process
    if config.job != "extension" or len(processes) != 1:
        return None, [
            {
                "path": "config.process",
                "message": "the app runs one training process (job: extension, "
                "one sd_trainer process); use run.py for other jobs",
            }
        ]
    process = processes[0]
    job = CheckedJob(
        raw=raw,
        name=name,
        job_folder=resolve_path(process.training_folder, root) / name,
        dataset_folders=[resolve_path(d.folder_path, root) for d in process.datasets],
        caption_ext=process.datasets[0].caption_ext,
        control_folders=[resolve_path(c, root) for d in process.datasets for c in d.control_paths],
    )
    where = "config.process[0].sample"
    job.sample_references = [(f"{where}.ctrl_img", resolve_path(p, root)) for p in process.sample.ctrl_imgs] + [
        (f"{where}.samples[{i}].ctrl_img", resolve_path(p, root))
        for i, item in enumerate(process.sample.samples or [])
        for p in item.ctrl_imgs
    ]
    return job, []


def _upload_folders(raw: dict, root: Path) -> list[Path]:
    """Where the app writes a job's uploads (``<job>/dataset``, ``<job>/dataset/control``): not there yet when
    the job is checked, so validation leaves them to the upload checks."""
    section = raw.get("config") if isinstance(raw, dict) else None
    name = section.get("name") if isinstance(section, dict) else None
    processes = section.get("process") if isinstance(section, dict) else None
    if not isinstance(name, str) or not isinstance(processes, list) or not processes:
        return []
    first = processes[0] if isinstance(processes[0], dict) else {}
    folder = first.get("training_folder", "output")
    dataset = resolve_path(folder if isinstance(folder, str) else "output", root) / name / DATASET_DIR
    return [dataset, dataset / CONTROL_DIR]


def format_problems(problems: list[dict]) -> str:
    return "\n".join(ConfigError.format_problem(p["path"], p["message"]) for p in problems)


# ---------------------------------------------------------------------------- claiming


def config_path(name: str, config_dir: Path = CONFIG_DIR) -> Path:
    return Path(config_dir) / f"{CONFIG_PREFIX}{name}.yaml"


def name_taken(name: str, job_folder: Path, config_dir: Path = CONFIG_DIR) -> str | None:
    """Why ``name`` cannot start a new job (a message), or None when it is free."""
    if job_folder.exists():
        state = job_status(job_folder).state
        return (
            f"a job named '{name}' already exists in {job_folder} (state: {state}); "
            f"pick another name{_free_hint(name, job_folder.parent, config_dir)}"
        )
    if config_path(name, config_dir).exists():
        return (
            f"{config_path(name, config_dir)} already exists; pick another name"
            f"{_free_hint(name, job_folder.parent, config_dir)}"
        )
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
        raise JobError(
            f"a job named '{job.name}' was just started by someone else; pick another name"
            f"{_free_hint(job.name, job.job_folder.parent, config_dir)}"
        ) from None
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
    command = [sys.executable, str(root / "run.py"), "--no-env", str(config_file)]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(job_folder / LOG_FILE, "ab") as log_file:
        log_file.write(f"\n==== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(command)}\n".encode())
        log_file.flush()
        extra = (
            {"creationflags": subprocess.CREATE_NEW_PROCESS_GROUP} if os.name == "nt" else {"start_new_session": True}
        )
        proc = subprocess.Popen(
            command, cwd=root, stdin=subprocess.DEVNULL, stdout=log_file, stderr=subprocess.STDOUT, env=env, **extra
        )
    _write_json(
        job_folder / JOB_FILE,
        {
            "name": job_folder.name,
            "config": str(config_file),
            "pid": proc.pid,
            "started": time.time(),
            "command": command,
        },
    )

    def reap():  # record the exit code (the progress log has no end event when run.py dies early)
        code = proc.wait()
        (job_folder / EXIT_FILE).write_text(str(code))

    threading.Thread(target=reap, name=f"wait-{job_folder.name}", daemon=True).start()
    return proc


def start_job(
    yaml_text: str,
    images: list[tuple[str | Path, str]],
    config_dir: Path = CONFIG_DIR,
    root: Path = ROOT,
    references: list[str | Path] = (),
    roots: list[Path] | None = None,
) -> tuple[CheckedJob, Path]:
    """Validate, claim the name, write the dataset (and its references) and start run.py.
    Returns (job, config path).

    ``images``: (image, caption) uploads, written to ``<job>/dataset/``; ``references``: the edit
    jobs' reference uploads, paired with the images by file name and written to
    ``<job>/dataset/control/``. Raises JobError (with every validation problem by key path, or
    every upload problem) and changes nothing when refused. ``roots``: the folders the job may name
    (default :func:`ui_roots`).
    """
    job, problems = check_yaml(yaml_text, root, roots)
    if job is None:
        raise JobError(f"the config has {len(problems)} problem(s):", problems)
    dataset = job.job_folder / DATASET_DIR
    if images and dataset not in job.dataset_folders:
        raise JobError(
            f"{len(images)} images were uploaded but no datasets[].folder_path is {dataset} "
            f"(where the app writes them); set folder_path to {job.job_folder.name}'s dataset folder "
            "or remove the uploads"
        )
    if not images and dataset in job.dataset_folders:
        raise JobError("upload some images first (or point datasets[0].folder_path at a folder of images)")
    pairs = _check_references(job, [src for src, _ in images], list(references))
    config_file = claim(job, yaml_text, config_dir)
    try:
        if images:
            write_dataset(dataset, images, job.caption_ext)
        if pairs is not None:
            write_references(dataset / CONTROL_DIR, [src for src, _ in images], pairs)
        _launch(job.job_folder, config_file, root)
    except UploadError as exc:
        _unclaim(job, config_file)
        raise JobError(str(exc)) from exc
    except BaseException:
        _unclaim(job, config_file)
        raise
    return job, config_file


def _unclaim(job: CheckedJob, config_file: Path) -> None:
    """Give the name back: nothing ran."""
    shutil.rmtree(job.job_folder, ignore_errors=True)
    config_file.unlink(missing_ok=True)


def _check_references(job: CheckedJob, targets: list[str | Path], references: list[str | Path]):
    """An edit job's uploads, before anything is written: {target index: reference} when the job's
    ``control_path`` is the upload folder ``dataset/control`` (None when it is not)."""
    control = job.job_folder / DATASET_DIR / CONTROL_DIR
    if control not in job.control_folders:
        if references:
            raise JobError(
                f"{len(references)} reference images were uploaded but no datasets[].control_path is "
                f"{control} (where the app writes them); set control_path to it or remove the uploads"
            )
        return None
    if not references:
        raise JobError(
            "this is an edit job: upload the reference images too, one per target image with the same "
            f"file name as its target (datasets[].control_path is {control})"
        )
    try:
        pairs = check_references(targets, references)
    except UploadError as exc:
        raise JobError(str(exc)) from exc
    written = {control / reference_name(i, targets[i], ref) for i, ref in pairs.items()}
    missing = [
        f"{key}: {path} does not exist; set it to an image file, or undo the YAML edits to it so the app "
        "sets it to the first target's reference"
        for key, path in job.sample_references
        if path not in written and not path.is_file()
    ]
    if missing:
        raise JobError("the samples' reference images are missing:" + "".join(f"\n  - {m}" for m in missing))
    return pairs


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
        from toolkit.job_lock import JobFolderBusy, holder

        running = holder(job_folder)  # e.g. a run.py started on the command line with this config
        if running is not None:
            raise JobError(str(JobFolderBusy(job_folder, running)))
        if status.state == "finished":
            config = parse_job_config(load_raw_config(status.config, expand_env=False), status.config)
            if config.config.process[0].train.steps <= status.step:
                raise JobError(
                    f"'{job_folder.name}' is finished; to train it further, raise train.steps in "
                    f"{status.config}, then press Resume"
                )
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
    config = parse_job_config(load_raw_config(config_file, expand_env=False), str(config_file))
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


def main(argv: list[str]) -> int:
    """``python -m toolkit.ui.jobs alive PID JOB_FILE`` prints ``{"alive": true|false}``: whether that
    pid still runs that job file. The Next.js UI asks this about trainers a previous server started
    (one liveness check for both UIs)."""
    if len(argv) != 3 or argv[0] != "alive" or not argv[1].isdigit():
        print("usage: python -m toolkit.ui.jobs alive PID JOB_FILE", file=sys.stderr)
        return 2
    print(json.dumps({"alive": _pid_alive(int(argv[1]), argv[2])}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
