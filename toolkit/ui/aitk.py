"""Importing an ai-toolkit job into a UI: the one implementation behind both UIs' "Import" screens.

A person pastes or uploads the job ai-toolkit wrote (its web UI's JSON, its Advanced view's YAML, one of its
example configs). :func:`plan_import` converts it (``toolkit/aitk_import.py``: ai-toolkit's keys with their
meaning, problems in one pass), then decides where each folder and image the job names comes from in this UI:

- **kept**: the path is already inside the UI's data folders;
- **linked**: a folder of the same name is in one of the UI's data roots (``<data root>/<folder name>``: an
  ai-toolkit dataset copied or uploaded there under its name), or the person chose one (``links``); an image
  under a linked folder follows it;
- **upload**: the Gradio app's uploads (``uploads=True``): the first dataset folder not found becomes the job's
  upload folder ``<training folder>/<name>/dataset`` and its first reference folder ``.../dataset/control``,
  filled from the app's upload boxes when the job starts (a copy of the person's files);
- **missing**: none of these: a problem at the key path saying where to put the folder.

Nothing the job names outside the data folders is ever read or copied here: a job that arrives over HTTP may
have been written by a web page (toolkit/ui/guard.py), so a folder is only used once its owner has put it inside
the UI's data folders. The converted job is then checked exactly as a job written in the UI is checked
(:func:`toolkit.ui.jobs.check_yaml`: the path guard and the one validation path), so the answer lists every
problem at once, and the YAML it returns is what the UI saves and starts.

    python -m toolkit.ui.aitk plan --root DIR [--root DIR ...] --data-root DIR [...] --training-folder DIR
        [--base DIR] [--name NAME] [--filename F] [--link OLD=NEW ...] [--uploads]   < job text
    # prints the plan as JSON (exit 0 when it can start, 1 when it has problems, 2 on usage); the Next.js server
    # calls this the way it calls toolkit.ui.guard.

No torch import.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from pathlib import Path, PurePath
from typing import Literal

from toolkit.aitk_import import ImportedJob, import_aitk_job, relocate
from toolkit.errors import ConfigError
from toolkit.ui.datasets import CONTROL_DIR, DATASET_DIR
from toolkit.ui.guard import path_problem
from toolkit.ui.jobs import check_yaml, resolve_path

__all__ = ["FolderPlan", "ImportPlan", "plan_import"]

How = Literal["kept", "linked", "upload", "missing"]
_MAX_TEXT = 1024 * 1024  # a job file is a few KiB; the config reader's own cap is the same order


@dataclasses.dataclass
class FolderPlan:
    """One path the ai-toolkit job names: as written (``path``), what it is (``kind``: dataset, control, mask,
    reference_image, validation_image), where (``keys``), how this UI gets it (``how``) and the path the
    imported job names instead (``target``; None when missing)."""

    path: str
    kind: str
    keys: list[str]
    how: How
    target: str | None


@dataclasses.dataclass
class ImportPlan:
    """The import's answer. ``yaml``: the job to save and start (None when the text could not be converted);
    ``problems``: every problem by key path (``{"path", "message"}``), [] when the job can start; ``ignored``:
    the ai-toolkit keys accepted as no-ops, with why; ``folders``: :class:`FolderPlan` per path."""

    name: str | None
    yaml: str | None
    folders: list[FolderPlan]
    ignored: list[dict]
    problems: list[dict]

    @property
    def ok(self) -> bool:
        return self.yaml is not None and not self.problems

    def to_dict(self) -> dict:
        return {"ok": self.ok, **dataclasses.asdict(self)}


def _inside(path: str, roots: list[Path], base: Path) -> bool:
    return path_problem("folder_path", path, roots, base) is None


def _name_of(path: str) -> str:
    """The last part of a path as ai-toolkit wrote it (Windows or POSIX separators)."""
    return PurePath(path.replace("\\", "/").rstrip("/")).name


def _under(path: str, folder: str) -> str | None:
    """``path`` relative to ``folder`` (both as written), or None when it is not under it."""
    path, folder = path.replace("\\", "/"), folder.replace("\\", "/").rstrip("/")
    return path[len(folder) + 1 :] if path.startswith(folder + "/") else None


def _plan_folders(job: ImportedJob, roots, data_roots, base, links, upload: Path | None) -> list[FolderPlan]:
    plans: dict[str, FolderPlan] = {}
    uploaded_dataset = None  # key prefix (config.process[i].datasets[j]) of the dataset going to the upload folder
    control_uploaded = False
    for ref in job.paths:
        if ref.kind not in ("dataset", "control", "mask"):
            continue
        if ref.path in plans:
            plans[ref.path].keys.append(ref.key)
            continue
        how, target = "missing", None
        if ref.path in links:
            how, target = "linked", links[ref.path]
        elif _inside(ref.path, roots, base):
            how, target = "kept", ref.path
        else:
            found = [root / _name_of(ref.path) for root in data_roots if _name_of(ref.path)]
            found = [f for f in found if f.is_dir() and _inside(str(f), roots, base)]
            dataset_key = ref.key.rsplit(".", 1)[0]
            if found:
                how, target = "linked", str(found[0])
            elif upload is not None and ref.kind == "dataset" and uploaded_dataset is None:
                how, target, uploaded_dataset = "upload", str(upload), dataset_key
            elif upload is not None and ref.kind == "control" and dataset_key == uploaded_dataset:
                if not control_uploaded:
                    how, target, control_uploaded = "upload", str(upload / CONTROL_DIR), True
        plans[ref.path] = FolderPlan(ref.path, ref.kind, [ref.key], how, target)
    for ref in job.paths:  # images: kept, or following the folder they are in
        if ref.kind in ("dataset", "control", "mask"):
            continue
        if ref.path in plans:
            plans[ref.path].keys.append(ref.key)
            continue
        how, target = "missing", None
        parent = _name_of(ref.path[: -len(_name_of(ref.path)) or None])
        candidates = [
            Path(f.target) / rest
            for f in plans.values()
            if f.how == "linked"
            for rest in [_under(ref.path, f.path)]
            if rest
        ]
        candidates += [root / parent / _name_of(ref.path) for root in data_roots if parent]
        found = [str(c) for c in candidates if c.is_file() and _inside(str(c), roots, base)]
        if ref.path in links:
            how, target = "linked", links[ref.path]
        elif _inside(ref.path, roots, base):
            how, target = "kept", ref.path
        elif found:
            how, target = "linked", found[0]
        plans[ref.path] = FolderPlan(ref.path, ref.kind, [ref.key], how, target)
    return list(plans.values())


def _missing_message(plan: FolderPlan, data_roots: list[Path], uploads: bool) -> str:
    name = _name_of(plan.path) or plan.path
    where = " or ".join(str(root / name) for root in data_roots) or "one of this UI's data folders"
    if plan.kind in ("dataset", "control", "mask"):
        upload = " (the app's uploads fill one dataset and its references)" if uploads else ""
        return (
            f"'{plan.path}' is not in this UI's data folders and no folder named '{name}' is: copy the folder "
            f"to {where} (or upload its images as a dataset named '{name}'){upload}, then import again"
        )
    parent = _name_of(plan.path[: -len(name)] or "") or "<folder>"
    where = " or ".join(str(root / parent / name) for root in data_roots) or "one of this UI's data folders"
    return f"'{plan.path}' is not in this UI's data folders: copy the image to {where}, or remove the key, then import again"


def _same_place(path: str, key: str) -> bool:
    """Whether the validator's problem at ``path`` is about the value at ``key`` (``x.ctrl_img`` and
    ``x.ctrl_img[1]`` are the same list)."""
    return path == key or key.startswith(path + "[") or path.startswith(key + ".")


def _also(keys: list[str]) -> str:
    return (
        f" (the same path is at {len(keys) - 1} more key(s): {', '.join(keys[1:4])}{'...' if len(keys) > 4 else ''})"
        if len(keys) > 1
        else ""
    )


def plan_import(
    text: str,
    *,
    roots: list[str | Path],
    data_roots: list[str | Path],
    training_folder: str | Path,
    base: str | Path,
    filename: str | None = None,
    name: str | None = None,
    links: dict[str, str] | None = None,
    uploads: bool = False,
) -> ImportPlan:
    """An ai-toolkit job's text -> an :class:`ImportPlan` for this UI (module docstring).

    roots: the folders a UI job may name (the path guard's); data_roots: where a dataset folder of the same
    name is looked for; training_folder: this UI's output folder (replaces the job's ``training_folder``);
    base: what relative paths are relative to (where run.py runs); name: replaces ``config.name``; links:
    {path as written: folder chosen in the UI}; uploads: the Gradio app's upload boxes may fill one dataset.
    """
    roots = [Path(r) for r in roots]
    data_roots = [Path(r) for r in data_roots]
    base = Path(base)
    if len(text.encode("utf-8", errors="surrogatepass")) > _MAX_TEXT:
        problem = {"path": "", "message": f"the job text is over {_MAX_TEXT // 1024} KiB; is this a job file?"}
        return ImportPlan(name, None, [], [], [problem])
    try:
        job = import_aitk_job(text, filename=filename, name=name)
    except ConfigError as exc:
        return ImportPlan(name, None, [], [], [{"path": p, "message": m} for p, m in exc.problems])
    job_name = job.config.config.name
    upload = resolve_path(training_folder, base) / job_name / DATASET_DIR if uploads else None
    folders = _plan_folders(job, roots, data_roots, base, dict(links or {}), upload)
    ignored = [{"path": p, "message": m} for p, m in job.ignored]
    values = {
        f"config.process[{i}].training_folder": str(training_folder)
        for i, process in enumerate(job.config.config.process)
        if hasattr(process, "training_folder")
    }
    try:
        job = relocate(job, {f.path: f.target for f in folders if f.target is not None}, values)
    except ConfigError as exc:  # a linked folder that breaks the schema (e.g. a name it refuses)
        return ImportPlan(job_name, None, folders, ignored, [{"path": p, "message": m} for p, m in exc.problems])
    problems = [
        {"path": f.keys[0], "message": _missing_message(f, data_roots, uploads) + _also(f.keys)}
        for f in folders
        if f.how == "missing"
    ]
    _, checked = check_yaml(job.yaml, base, roots)
    seen = {key for f in folders if f.how == "missing" for key in f.keys}
    problems += [p for p in checked if not any(_same_place(p["path"], key) for key in seen)]
    return ImportPlan(job_name, job.yaml, folders, ignored, problems)


def _link(value: str) -> tuple[str, str]:
    old, sep, new = value.rpartition("=")
    if not sep or not old or not new:
        raise argparse.ArgumentTypeError(f"--link takes OLD=NEW, got {value!r}")
    return old, new


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m toolkit.ui.aitk", description="Import an ai-toolkit job (read from stdin) into a UI."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    plan = sub.add_parser("plan", help="print the import plan as JSON")
    plan.add_argument("--root", action="append", required=True, help="a folder a UI job may name (repeat)")
    plan.add_argument("--data-root", action="append", default=[], help="where datasets are looked up by name")
    plan.add_argument("--training-folder", required=True)
    plan.add_argument("--base", default=os.getcwd())
    plan.add_argument("--name")
    plan.add_argument("--filename")
    plan.add_argument("--link", action="append", type=_link, default=[], help="OLD=NEW: use folder NEW for OLD")
    plan.add_argument("--uploads", action="store_true", help="the UI's upload boxes may fill one dataset")
    args = parser.parse_args(argv)
    text = sys.stdin.buffer.read(_MAX_TEXT + 1).decode("utf-8", errors="replace")
    result = plan_import(
        text,
        roots=args.root,
        data_roots=args.data_root,
        training_folder=args.training_folder,
        base=args.base,
        filename=args.filename,
        name=args.name,
        links=dict(args.link),
        uploads=args.uploads,
    )
    print(json.dumps(result.to_dict(), indent=1))
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
