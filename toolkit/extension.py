"""Extension discovery, ai-toolkit style.

An extension is a Python package in `extensions_built_in/` (shipped) or
`extensions/` (the user's own, at the repo root). Its `__init__.py` may export:

- ``AI_TOOLKIT_EXTENSIONS``: a list of `Extension` subclasses, each naming a
  process ``uid`` (the ``type:`` of a ``config.process[i]`` entry);
- ``AI_TOOLKIT_ARCHS``: a list of `toolkit.arch.ArchSpec` declarations, each naming its model
  class by dotted path (``"extensions.mine.model:MyModel"``). Keep this import free of torch:
  config validation discovers the archs and must stay cheap;
- ``AI_TOOLKIT_MODELS``: model classes (`BaseModel` subclasses with a ``spec``); their archs are
  registered too, but importing them imports torch, so prefer ``AI_TOOLKIT_ARCHS``.

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
from toolkit.paths import ROOT

log = logging.getLogger(__name__)

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


def _dirs(dirs) -> tuple[Path, ...]:
    # Read at call time (not bound as a default argument) so one place decides where extensions live.
    return EXTENSION_DIRS if dirs is None else tuple(dirs)


def _load_modules(dirs: tuple[Path, ...] | None = None) -> tuple:
    return _import_packages(_dirs(dirs))


@lru_cache(maxsize=None)
def _import_packages(dirs: tuple[Path, ...]) -> tuple:
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


def get_extensions(dirs: tuple[Path, ...] | None = None) -> dict[str, type[Extension]]:
    """All process extensions by uid. A uid defined twice is an error."""
    found: dict[str, type[Extension]] = {}
    for module in _load_modules(dirs):
        for ext in getattr(module, "AI_TOOLKIT_EXTENSIONS", []):
            if ext.uid in found and found[ext.uid] is not ext:
                raise ExtensionImportError(
                    f"process type '{ext.uid}' is defined twice: by {found[ext.uid].__module__} and by {ext.__module__}"
                )
            found[ext.uid] = ext
    return found


def get_model_classes(dirs: tuple[Path, ...] | None = None) -> list[type]:
    """Model classes exported by extensions (`AI_TOOLKIT_MODELS`)."""
    classes: list[type] = []
    for module in _load_modules(dirs):
        classes.extend(getattr(module, "AI_TOOLKIT_MODELS", []))
    return classes


def get_arch_specs(dirs: tuple[Path, ...] | None = None) -> list:
    """Architecture declarations exported by extensions: ``AI_TOOLKIT_ARCHS`` and the ``spec`` of each
    ``AI_TOOLKIT_MODELS`` class."""
    specs = []
    for module in _load_modules(dirs):
        specs.extend(getattr(module, "AI_TOOLKIT_ARCHS", []))
        for cls in getattr(module, "AI_TOOLKIT_MODELS", []):
            spec = getattr(cls, "spec", None)
            if spec is None:
                raise ExtensionImportError(
                    f"model class {cls.__module__}.{cls.__name__} ({module.__name__}) declares "
                    "no `spec`; give it a toolkit.arch.ArchSpec"
                )
            specs.append(spec)
    return specs
