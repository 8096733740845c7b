"""Extension discovery, ai-toolkit style.

An extension is a Python package in `extensions_built_in/` (shipped) or
`extensions/` (the user's own, at the repo root). Its `__init__.py` may export:

- ``AI_TOOLKIT_EXTENSIONS``: a list of `Extension` subclasses, each naming a
  process ``uid`` (the ``type:`` of a ``config.process[i]`` entry);
- ``AI_TOOLKIT_MODELS``: a list of `BaseModel` subclasses, each with an ``arch``.

A package that fails to import is an error naming it: silently skipping it
would make a user's model or trainer vanish and another one run instead.
"""

from __future__ import annotations

import importlib
import logging
import sys
from functools import lru_cache
from pathlib import Path

from toolkit.errors import ToolkitError

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
EXTENSION_DIRS = (ROOT / "extensions_built_in", ROOT / "extensions")


class ExtensionImportError(ToolkitError, ImportError):
    """An extension package exists but cannot be imported."""


class Extension:
    """Base class for a process provider. Subclasses set `uid` and `name`."""

    uid: str = ""
    name: str = ""

    @classmethod
    def get_process(cls):
        """Return the process class (imported lazily: torch is only needed to run)."""
        raise NotImplementedError(f"{cls.__name__} must implement get_process()")


def _packages(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if (p / "__init__.py").is_file())


@lru_cache(maxsize=None)
def _load_modules(dirs: tuple[Path, ...] = EXTENSION_DIRS) -> tuple:
    modules = []
    for folder in dirs:
        if str(folder.parent) not in sys.path:
            sys.path.insert(0, str(folder.parent))
        for pkg in _packages(folder):
            module_name = f"{folder.name}.{pkg.name}"
            try:
                modules.append(importlib.import_module(module_name))
            except Exception as exc:  # any failure inside the user's package
                raise ExtensionImportError(
                    f"extension '{pkg.name}' ({pkg}) failed to import: {type(exc).__name__}: {exc}. "
                    f"Fix the extension or move it out of {folder}."
                ) from exc
    return tuple(modules)


def get_extensions(dirs: tuple[Path, ...] = EXTENSION_DIRS) -> dict[str, type[Extension]]:
    """All process extensions by uid. A uid defined twice is an error."""
    found: dict[str, type[Extension]] = {}
    for module in _load_modules(dirs):
        for ext in getattr(module, "AI_TOOLKIT_EXTENSIONS", []):
            if ext.uid in found and found[ext.uid] is not ext:
                raise ExtensionImportError(
                    f"process type '{ext.uid}' is defined twice: by {found[ext.uid].__module__} "
                    f"and by {ext.__module__}"
                )
            found[ext.uid] = ext
    return found


def get_model_classes(dirs: tuple[Path, ...] = EXTENSION_DIRS) -> list[type]:
    """Model classes exported by extensions (`AI_TOOLKIT_MODELS`)."""
    classes: list[type] = []
    for module in _load_modules(dirs):
        classes.extend(getattr(module, "AI_TOOLKIT_MODELS", []))
    return classes
