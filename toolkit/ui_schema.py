"""What the front ends (Gradio app, Next.js UI) read from the Python side, so no default is copied.

    python -m toolkit.ui_schema                 # JSON: the config schema, the presets, the archs
    python -m toolkit.ui_schema validate FILE   # JSON: {"ok": bool, "problems": [{"path", "message"}]}

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
    """Per arch: label, model class, official repo, capabilities, sampling defaults, from the declarations
    (toolkit/arch.py; no torch)."""
    from toolkit.arch import arch_registry, describe

    info = describe(arch_registry())
    for data in info.values():
        data["class"] = data["model_class"].rpartition(":")[2]
        data["sampling"] = data["releases"][0]["sampling"]
    return dict(sorted(info.items()))


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


def main(argv: list[str]) -> int:
    if argv[:1] == ["validate"] and len(argv) == 2:
        result = validate_file(argv[1])
        print(json.dumps(result, indent=1))
        return 0 if result["ok"] else 1
    if argv:
        print("usage: python -m toolkit.ui_schema [validate FILE]", file=sys.stderr)
        return 2
    print(json.dumps(export(), indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
