"""What a job submitted from a UI may name: its paths stay inside the UI's data roots, no ``${ENV}``.

``run.py`` from the command line runs what its user wrote (any path, environment variables
expanded). A job that arrives over HTTP is different: whoever can reach the UI (a web page using
DNS rebinding, a shared link) would otherwise read any image folder, write ``_latent_cache/`` or a
LoRA anywhere, and read environment variables (tokens) back from the served ``config.yaml``.
Both UIs (the Gradio app and the Next.js server) call this one module before a job is saved:

- :func:`guard_raw` checks a parsed job (a dict, before environment expansion): every path a
  process names (see :data:`PATH_KEYS`) must resolve, after ``~`` and symlinks, inside one of
  ``roots``; model keys may instead be a hub repo id (``org/name`` that is not a local path) and
  ``model.name_or_path`` a ``tiny:<arch>`` id; ``config.name`` must be a plain file name; no string
  may hold ``${...}`` (UI jobs are never expanded, so the file, the served copy and what runs agree);
- :func:`guard_text` reads job text exactly as ``run.py --no-env`` does (size cap, encoding,
  bounded aliases; :func:`toolkit.config.parse_text_checked`) and then runs :func:`guard_raw`;
- ``python -m toolkit.ui.guard check FILE --root DIR [--root DIR ...] [--base DIR] [--validate]``
  prints ``{"ok": bool, "problems": [{"path", "message"}]}`` (exit 0 when ok, 1 when not, 2 on
  usage), for the Next.js server, which calls Python the way it calls ``toolkit.ui.schema validate``;
  ``--validate`` adds the schema's problems (as ``run.py --no-env`` reads the file) once the guard passes.

Relative paths are relative to ``base``: the working directory ``run.py`` runs in (the project
root for both UIs). Nothing here imports torch.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from toolkit.config_read import env_problems, read_config_bytes
from toolkit.errors import ConfigError, Problem
from toolkit.names import name_problem

__all__ = ["MODEL_KEYS", "PATH_KEYS", "env_problems", "guard_file", "guard_raw", "guard_text", "name_problem"]

# Keys whose value is a path (or a list of paths) wherever they appear under config.process[i].
PATH_KEYS = frozenset({
    "training_folder", "folder_path", "control_path", "mask_path", "ctrl_img", "vae_path", "lora_path",
    "text_encoder_path", "extras_name_or_path", "assistant_lora_path", "name_or_path", "output_folder",
    "prompt_file",
})  # fmt: skip
# Model keys the loader also reads as hub repo ids (toolkit/models/weights.py: is_repo_id).
MODEL_KEYS = frozenset({
    "name_or_path", "extras_name_or_path", "vae_path", "text_encoder_path", "lora_path", "assistant_lora_path",
})  # fmt: skip
TINY_SCHEME = "tiny:"
_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def _roots_text(roots: list[Path]) -> str:
    return ", ".join(str(r) for r in roots)


def _resolve(value: str, base: Path) -> Path:
    path = Path(value).expanduser()
    return Path(os.path.realpath(path if path.is_absolute() else base / path))


def _is_repo_id(value: str, base: Path) -> bool:
    if not _REPO_ID.match(value) or any(part in (".", "..") for part in value.split("/")):
        return False
    return not (base / value).exists() and not os.path.lexists(base / value)


def path_problem(key: str, value: Any, roots: list[Path], base: Path) -> str | None:
    """Why the value of ``key`` (its last part, e.g. ``folder_path``) is refused, or None."""
    if value is None or value == "" or isinstance(value, (bool, int, float)):
        return None  # not a path: the schema says what it must be
    if not isinstance(value, str):
        return None
    if "\x00" in value:
        return "holds a NUL character"
    if key in MODEL_KEYS and _is_repo_id(value, base):
        return None
    if key == "name_or_path" and value.startswith(TINY_SCHEME):
        return None
    resolved = _resolve(value, base)
    if any(resolved == root or root in resolved.parents for root in roots):
        return None
    via = f" (resolves to {resolved})" if str(resolved) != value else ""
    hub = " or a hub repo id 'org/name'" if key in MODEL_KEYS else ""
    return (
        f"'{value}'{via} is outside the folders this UI may use ({_roots_text(roots)}); put the files under "
        f"one of them{hub}. Paths outside are only for run.py on the command line"
    )


def _path_values(process: dict, where: str) -> Iterable[tuple[str, str, Any]]:
    """(key path, last key, value) of every path-like value under one process (lists expanded)."""
    for key, value in process.items():
        path = f"{where}.{key}"
        if isinstance(value, dict):
            yield from _path_values(value, path)
        elif isinstance(value, list) and key not in PATH_KEYS:
            for i, item in enumerate(value):
                if isinstance(item, dict):
                    yield from _path_values(item, f"{path}[{i}]")
        elif key in PATH_KEYS:
            if isinstance(value, list):
                for i, item in enumerate(value):
                    yield f"{path}[{i}]", key, item
            else:
                yield path, key, value
        elif key == "prompts" and isinstance(value, str):  # generate: a string prompts is a prompt file
            yield path, "prompt_file", value


def guard_raw(raw: Any, roots: Iterable[str | Path], base: str | Path) -> list[Problem]:
    """Every problem of a UI-submitted job (parsed, not expanded), by key path; [] when it may run.

    roots: folders the job may read and write (resolved here, symlinks included); base: the
    directory relative paths are relative to (where run.py runs).
    """
    roots = [Path(os.path.realpath(Path(r).expanduser())) for r in roots]
    base = Path(os.path.realpath(Path(base).expanduser()))
    if not isinstance(raw, dict):
        return [("", "the top level must be a mapping with job:, config: and meta:")]
    problems = env_problems({k: v for k, v in raw.items() if k != "meta"})
    section = raw.get("config")
    if not isinstance(section, dict):
        return problems
    if "name" in section:
        problem = name_problem(section["name"])
        if problem:
            problems.append(("config.name", problem))
    processes = section.get("process")
    for i, process in enumerate(processes if isinstance(processes, list) else []):
        if not isinstance(process, dict):
            continue
        where = f"config.process[{i}]"
        if process.get("type", "sd_trainer") == "sd_trainer" and "training_folder" not in process:
            process = {**process, "training_folder": "output"}  # the default, confined like any other
        for path, key, value in _path_values(process, where):
            problem = path_problem(key, value, roots, base)
            if problem:
                problems.append((path, problem))
    return list(dict.fromkeys(problems))


def guard_text(
    text: str | bytes, roots: Iterable[str | Path], base: str | Path, source: str = "<ui>", suffix: str = ".yaml"
) -> list[Problem]:
    """:func:`guard_raw` on job text (YAML, or JSON when ``suffix`` is ``.json``), read as run.py reads it."""
    from toolkit.config import parse_text_checked

    try:
        raw = parse_text_checked(text, Path(source).with_suffix(suffix) if source == "<ui>" else Path(source))
    except ConfigError as exc:
        return exc.problems
    return guard_raw(raw, roots, base)


def guard_file(path: str | Path, roots: Iterable[str | Path], base: str | Path) -> list[Problem]:
    """:func:`guard_text` on a job file (size-capped read; the file's suffix picks YAML or JSON)."""
    try:
        data = read_config_bytes(Path(path))
    except ConfigError as exc:
        return exc.problems
    return guard_text(data, roots, base, source=str(path), suffix=Path(path).suffix)


def validation_problems(path: str | Path) -> list[Problem]:
    """Every problem of a UI job file before loading (toolkit/validate.py: schema, architecture, datasets...),
    read as ``run.py --no-env`` reads it; the device and optimizer are the trainer's to check (``machine=False``)."""
    from toolkit.validate import validate_job

    return validate_job(str(path), expand_env=False, machine=False)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m toolkit.ui.guard", description="Check a UI-submitted job file: paths confined, no ${ENV}."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="print {ok, problems} as JSON")
    check.add_argument("file")
    check.add_argument("--root", action="append", required=True, help="a folder the job may use (repeat)")
    check.add_argument("--base", default=os.getcwd(), help="what relative paths are relative to (default: cwd)")
    check.add_argument(
        "--validate",
        action="store_true",
        help="when the guard passes, also validate the job as run.py --no-env does (schema)",
    )
    args = parser.parse_args(argv)
    problems = guard_file(args.file, args.root, args.base)
    if not problems and args.validate:
        problems = validation_problems(args.file)
    print(json.dumps({"ok": not problems, "problems": [{"path": p, "message": m} for p, m in problems]}, indent=1))
    return 0 if not problems else 1


if __name__ == "__main__":
    sys.exit(main())
