"""What the front ends (Gradio app, Next.js UI) read from the Python side, so no default is copied.

    python -m toolkit.ui_schema                 # JSON: the config schema, the presets, the archs
    python -m toolkit.ui_schema validate FILE   # JSON: {"ok": bool, "problems": [{"path", "message"}]}
    python -m toolkit.ui_schema validate FILE --root DIR [--root DIR ...] [--base DIR]
                                                # the same for a UI-submitted job: paths confined, no ${ENV}

Presets are the shipped training examples (`config/examples/train_lora_*.yaml`, each with
`meta.label`): a UI starts a new job from a preset's config and changes only what the user
edits. `validate` never imports torch (it is the same validator run.py uses first).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import yaml

from toolkit.config import load_raw_config, parse_job_config
from toolkit.config_modules import MODEL_ARCHS, json_schema
from toolkit.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "config" / "examples"


def presets() -> list[dict]:
    """One entry per training example: label, arch, file, and its whole (raw) job config."""
    out = []
    for path in sorted(EXAMPLES.glob("train_lora_*.yaml")):
        raw = yaml.safe_load(path.read_text())
        process = raw["config"]["process"][0]
        out.append({
            "id": path.stem.removeprefix("train_lora_"),
            "label": raw.get("meta", {}).get("label", path.stem),
            "arch": process["model"]["arch"],
            "name_or_path": process["model"]["name_or_path"],
            "file": str(path.relative_to(ROOT)),
            "config": raw,
        })
    return out


def arch_info() -> dict[str, dict]:
    """Per arch: capabilities and official repo, from the model classes (imports torch)."""
    import dataclasses

    from toolkit.util.get_model import model_registry

    registry = model_registry()
    return {
        arch: {"class": cls.__name__, "official_repo": cls.official_repo,
               "capabilities": dataclasses.asdict(cls.capabilities)}
        for arch, cls in sorted(registry.items())
    }


def validate_file(path: str | Path) -> dict:
    """Validate a job file exactly as run.py does first; problems by key path."""
    try:
        parse_job_config(load_raw_config(path), str(path))
    except ConfigError as exc:
        return {"ok": False, "problems": [{"path": p, "message": m} for p, m in exc.problems]}
    return {"ok": True, "problems": []}


def validate_dict(raw: dict, source: str = "<ui>") -> dict:
    try:
        parse_job_config(raw, source)
    except ConfigError as exc:
        return {"ok": False, "problems": [{"path": p, "message": m} for p, m in exc.problems]}
    return {"ok": True, "problems": []}


def export(with_archs: bool = True) -> dict:
    data = {"schema": json_schema(), "archs_known": list(MODEL_ARCHS), "presets": presets()}
    if with_archs:
        data["archs"] = arch_info()
    return data


def validate_ui_file(path: str | Path, roots: list[str], base: str | Path) -> dict:
    """A job file submitted from a UI: the path guard (toolkit/ui_guard.py: paths inside ``roots``, no
    ``${ENV}``, plain names, bounded reading), then the schema as ``run.py --no-env`` reads the file."""
    from toolkit.ui_guard import guard_file, validation_problems

    problems = guard_file(path, roots, base) or validation_problems(path)
    return {"ok": not problems, "problems": [{"path": p, "message": m} for p, m in problems]}


def main(argv: list[str]) -> int:
    if argv[:1] == ["validate"] and len(argv) == 2:
        result = validate_file(argv[1])
        print(json.dumps(result, indent=1))
        return 0 if result["ok"] else 1
    if argv[:1] == ["validate"] and len(argv) > 2:  # validate FILE --root DIR [--root DIR ...] [--base DIR]
        import argparse

        parser = argparse.ArgumentParser(prog="python -m toolkit.ui_schema validate")
        parser.add_argument("file")
        parser.add_argument("--root", action="append", required=True)
        parser.add_argument("--base", default=str(Path.cwd()))
        args = parser.parse_args(argv[1:])
        result = validate_ui_file(args.file, args.root, args.base)
        print(json.dumps(result, indent=1))
        return 0 if result["ok"] else 1
    if argv:
        print("usage: python -m toolkit.ui_schema [validate FILE [--root DIR ...] [--base DIR]]", file=sys.stderr)
        return 2
    print(json.dumps(export(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
