"""ai-toolkit's job-file keys and what this toolkit does with each (data: ``toolkit/aitk_keys.yaml``).

Every key ai-toolkit reads is ``same`` (a schema field or alias with ai-toolkit's meaning), ``noop``
(accepted, cannot change a FLUX LoRA run, logged once) or ``refused`` (an error at its key path saying what
to write instead; with ``default:``, ai-toolkit's default value, which changes nothing, is accepted as a
no-op). The config sections (toolkit/config_modules/) call :func:`apply` on their raw mapping while
validating; :func:`ignored_keys` lists what a validated job accepted as a no-op, for the log and the UIs.

``python -m toolkit.aitk_keys`` writes the README's "Coming from ai-toolkit" key table between its markers;
a test keeps both in sync. No torch import here.
"""

from __future__ import annotations

import functools
import logging
from pathlib import Path
from typing import Any

import yaml

log = logging.getLogger(__name__)

TABLE_PATH = Path(__file__).with_name("aitk_keys.yaml")
README_BEGIN = "<!-- aitk-key-table:begin -->"
README_END = "<!-- aitk-key-table:end -->"
STATUSES = ("same", "noop", "refused")

SECTION_PATHS: dict[str, str] = {
    "job": "",
    "config": "config",
    "process": "config.process[i]",
    "model": "config.process[i].model",
    "train": "config.process[i].train",
    "ema": "config.process[i].train.ema_config",
    "validation": "config.process[i].train.validation_config",
    "network": "config.process[i].network",
    "network_kwargs": "config.process[i].network.network_kwargs",
    "save": "config.process[i].save",
    "logging": "config.process[i].logging",
    "sample": "config.process[i].sample",
    "sample_item": "config.process[i].sample.samples[j]",
    "dataset": "config.process[i].datasets[j]",
}
"""Where each table section sits in a job file."""

_MISSING = object()


@functools.cache
def table() -> dict[str, dict[str, dict[str, Any]]]:
    """``{section: {key: {status, note?, default?}}}`` as in aitk_keys.yaml."""
    data = yaml.safe_load(TABLE_PATH.read_text(encoding="utf-8"))
    for section, keys in data.items():
        if section not in SECTION_PATHS:
            raise ValueError(f"{TABLE_PATH.name}: unknown section '{section}'")
        for key, entry in keys.items():
            if entry.get("status") not in STATUSES:
                raise ValueError(f"{TABLE_PATH.name}: {section}.{key}: status must be one of {STATUSES}")
    return data


def entry(section: str, key: str) -> dict[str, Any] | None:
    return table().get(section, {}).get(key)


def _is_default(value: Any, defaults: list) -> bool:
    # 0 == False in Python; a boolean default must not accept 0 or 1, nor a number accept true.
    return any(value == d and isinstance(value, bool) == isinstance(d, bool) for d in defaults)


def _show(value: Any) -> str:
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()


def apply(section: str | None, data: dict, accepted: set[str]) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Handle the ai-toolkit keys of ``data`` (a section's raw mapping) that are not ``accepted`` fields.

    Removes every ``noop`` key, ``refused`` key and ``refused`` key at its default from ``data``.
    Returns ``(ignored, problems)``: ``(key, why)`` for what is accepted as a no-op, ``(key, message)``
    for what is refused. ``same`` keys are left for the schema (a field or alias takes them).
    """
    ignored: list[tuple[str, str]] = []
    problems: list[tuple[str, str]] = []
    if section is None:
        return ignored, problems
    for key in [k for k in data if isinstance(k, str) and k not in accepted]:
        found = entry(section, key)
        if found is None or found["status"] == "same":
            continue
        value = data.pop(key)
        note = found.get("note", "")
        if found["status"] == "noop":
            ignored.append((key, note))
        elif "default" in found and _is_default(value, found["default"]):
            ignored.append((key, f"{_show(value)} is ai-toolkit's default, which changes nothing here"))
        else:
            problems.append((key, f"ai-toolkit option not supported here: {note}"))
    return ignored, problems


def ignored_keys(config: Any, path: str = "") -> list[tuple[str, str]]:
    """``(key path, why)`` for every ai-toolkit key a validated config accepted as a no-op, in file order."""
    from pydantic import BaseModel

    found: list[tuple[str, str]] = []
    if isinstance(config, BaseModel):
        for key, why in getattr(config, "_ignored_keys", None) or []:
            found.append((f"{path}.{key}" if path else key, why))
        for name in type(config).model_fields:
            found += ignored_keys(getattr(config, name), f"{path}.{name}" if path else name)
    elif isinstance(config, list):
        for i, item in enumerate(config):
            found += ignored_keys(item, f"{path}[{i}]")
    return found


def log_ignored(config: Any) -> None:
    """Log, once per key, the ai-toolkit keys a job sets that cannot change the run (info level)."""
    for key_path, why in ignored_keys(config):
        log.info("%s: ai-toolkit option accepted, no effect here: %s", key_path, why)


# --------------------------------------------------------------------------- README


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def _status_text(found: dict) -> str:
    status = found["status"]
    if status == "refused" and "default" in found:
        shown = ", ".join(f"`{_show(d)}`" for d in found["default"])
        return f"refused (no-op at {shown})"
    return {"same": "same", "noop": "no-op", "refused": "refused"}[status]


def markdown_table() -> str:
    """The README table: one row per key, grouped by section."""
    lines = []
    for section, keys in table().items():
        where = SECTION_PATHS[section] or "(top level)"
        counts = {s: sum(e["status"] == s for e in keys.values()) for s in STATUSES}
        summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
        lines += [
            f"<details><summary><code>{where}</code> ({summary})</summary>",
            "",
            "| key | here | note |",
            "|---|---|---|",
        ]
        for key, found in keys.items():
            lines.append(f"| `{key}` | {_status_text(found)} | {_cell(found.get('note', ''))} |")
        lines += ["", "</details>", ""]
    return "\n".join(lines).rstrip() + "\n"


def readme_with_table(readme: str) -> str:
    """``readme`` with the generated table between the markers (which must be present)."""
    start, end = readme.index(README_BEGIN) + len(README_BEGIN), readme.index(README_END)
    return readme[:start] + "\n" + markdown_table() + readme[end:]


if __name__ == "__main__":
    readme_path = Path(__file__).resolve().parent.parent / "README.md"
    readme_path.write_text(readme_with_table(readme_path.read_text(encoding="utf-8")), encoding="utf-8")
    print(f"wrote the ai-toolkit key table into {readme_path}")
