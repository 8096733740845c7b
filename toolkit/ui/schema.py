"""What the front ends (Gradio app, Next.js UI) read from the Python side, so no default is copied.

    python -m toolkit.ui.schema                 # JSON: the config schema, the presets, the archs
    python -m toolkit.ui.schema validate FILE   # JSON: {"ok": bool, "problems": [{"path", "message"}]}
    python -m toolkit.ui.schema validate --machine FILE   # also the device / optimizer on this machine
    python -m toolkit.ui.schema validate FILE --root DIR [--root DIR ...] [--base DIR]
                                                # the same for a UI-submitted job: paths confined, no ${ENV}

Presets are the shipped training examples (`config/examples/train_lora_*.yaml`, each with
`meta.label`): a UI starts a new job from a preset's config and changes only what the user
edits. `validate` is toolkit/validate.py, the one validation path run.py and the trainer use; without
`--machine` it never imports torch.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from toolkit.config_modules import MODEL_ARCHS, json_schema
from toolkit.paths import EXAMPLES_DIR, ROOT

EXAMPLES = EXAMPLES_DIR


def presets() -> list[dict]:
    """One entry per training example: label, arch, file, and its whole (raw) job config."""
    out = []
    for path in sorted(EXAMPLES.glob("train_lora_*.yaml")):
        raw = yaml.safe_load(path.read_text())
        process = raw["config"]["process"][0]
        out.append(
            {
                "id": path.stem.removeprefix("train_lora_"),
                "label": raw.get("meta", {}).get("label", path.stem),
                "arch": process["model"]["arch"],
                "name_or_path": process["model"]["name_or_path"],
                "file": str(path.relative_to(ROOT)),
                "config": raw,
            }
        )
    return out


def arch_info() -> dict[str, dict]:
    """Per arch: label, model class, official repo, capabilities, sampling defaults, from the declarations
    (toolkit/arch.py; no torch)."""
    from toolkit.arch_registry import arch_registry, describe

    info = describe(arch_registry())
    for data in info.values():
        data["class"] = data["model_class"].rpartition(":")[2]
        data["sampling"] = data["releases"][0]["sampling"]
    return dict(sorted(info.items()))


def _result(problems: list[tuple[str, str]]) -> dict:
    return {"ok": not problems, "problems": [{"path": p, "message": m} for p, m in problems]}


def validate_file(path: str | Path, machine: bool = False) -> dict:
    """Validate a job file through the one validation path (toolkit/validate.py); problems by key path.
    Without ``machine`` no torch is imported (device and optimizer availability are checked at start)."""
    from toolkit.validate import validate_job

    return _result(validate_job(Path(path), machine=machine))


def validate_dict(raw: dict, source: str = "<ui>", machine: bool = False, pending=(), data: bool = True) -> dict:
    """`validate_file` for a raw mapping (``${ENV}`` / ``[name]`` already substituted). ``pending``: dataset
    folders the UI writes once the job is accepted (not scanned: the UI checks the uploads). ``data=False``:
    scan no dataset folder (a UI job whose paths the guard refused)."""
    from toolkit.validate import validate_job

    return _result(validate_job(raw, machine=machine, pending=pending, data=data))


def export(with_archs: bool = True) -> dict:
    data = {"schema": json_schema(), "archs_known": list(MODEL_ARCHS), "presets": presets()}
    if with_archs:
        data["archs"] = arch_info()
    return data


def validate_ui_file(path: str | Path, roots: list[str], base: str | Path) -> dict:
    """A job file submitted from a UI, every problem in one answer as the Gradio app's check gives them
    (toolkit/ui/jobs.py:check_yaml): the path guard's (toolkit/ui/guard.py: paths inside ``roots``, no
    ``${ENV}``, plain names, bounded reading), then the one validation path's (toolkit/validate.py, the file
    read as ``run.py --no-env`` reads it) for the keys the guard did not already name. Dataset folders are
    scanned (read) only when the guard passed: until then their paths may lie outside ``roots``."""
    from toolkit.ui.guard import guard_file
    from toolkit.validate import validate_job

    guarded = guard_file(path, roots, base)
    seen = {p for p, _ in guarded}
    checked = validate_job(str(path), expand_env=False, machine=False, data=not guarded)
    return _result(guarded + [(p, m) for p, m in checked if p not in seen])


def main(argv: list[str]) -> int:
    machine = "--machine" in argv
    argv = [a for a in argv if a != "--machine"]
    if argv[:1] == ["validate"] and len(argv) == 2:
        result = validate_file(argv[1], machine=machine)
        print(json.dumps(result, indent=1))
        return 0 if result["ok"] else 1
    if argv[:1] == ["validate"] and len(argv) > 2:  # validate FILE --root DIR [--root DIR ...] [--base DIR]
        import argparse

        parser = argparse.ArgumentParser(prog="python -m toolkit.ui.schema validate")
        parser.add_argument("file")
        parser.add_argument("--root", action="append", required=True)
        parser.add_argument("--base", default=str(Path.cwd()))
        args = parser.parse_args(argv[1:])
        result = validate_ui_file(args.file, args.root, args.base)
        print(json.dumps(result, indent=1))
        return 0 if result["ok"] else 1
    if argv:
        print(
            "usage: python -m toolkit.ui.schema [validate [--machine] FILE [--root DIR ...] [--base DIR]]",
            file=sys.stderr,
        )
        return 2
    print(json.dumps(export(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
