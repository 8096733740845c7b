"""Names that become paths: ``config.name`` is ``<training_folder>/<name>/`` and ``<name>.safetensors``.

Shared by the config schema (run.py refuses ``config.name: ../../etc``) and the UIs' guard.
"""

from __future__ import annotations

from typing import Any

NAME_MAX = 120


def name_problem(name: Any) -> str | None:
    """Why ``name`` cannot name a folder or file inside another folder (None when it can).

    A plain file name: no path separator, not ``.``/``..``, no control characters, not hidden,
    at most 120 characters. ``config.name`` becomes ``<training_folder>/<name>/<name>.safetensors``.
    """
    if not isinstance(name, str) or not name:
        return "must be a non-empty file name"
    if name in (".", "..") or "/" in name or "\\" in name:
        return (
            f"'{name}' is not a plain file name (it names <training_folder>/<name>/, so it cannot hold '/', "
            "'\\' or be '.' / '..'); use letters, digits, '_', '-' and '.'"
        )
    if any(ord(c) < 32 or ord(c) == 127 for c in name):
        return "must not hold control characters (newline, tab, NUL...)"
    if name.startswith(("-", ".")):
        return f"'{name}' must not start with '-' or '.' (a hidden file or an option); start with a letter or digit"
    if len(name) > NAME_MAX:
        return f"is {len(name)} characters long; use at most {NAME_MAX}"
    return None
