"""The ``tiny:`` cache: each tiny model built once per machine (``TINY_ROOT/<id>/<layout>/``), rebuilt when
what it depends on changes."""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from toolkit.tiny.builders import build_tiny_pipeline
from toolkit.tiny.layouts import LAYOUTS, write_diffusers, write_single_files
from toolkit.tiny.specs import TinySpec, tiny_spec

logger = logging.getLogger(__name__)

COMPLETE_MARKER = ".tiny_complete"


def ensure_tiny(arch: str, root, layout: str) -> Path:
    """Build the tiny ``arch`` once under ``root/<arch>/<layout>/`` and return that folder.

    layout: ``"diffusers"`` (a diffusers folder) or ``"single_file"`` (the two BFL files). A folder is reused
    only if its completion marker (written last) holds the fingerprint of the current builder, converters,
    tiny spec and library versions; otherwise it is rebuilt. Safe when several processes call this at once: each
    builds in its own temporary folder and renames it into place; the first rename wins.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout '{layout}'; expected one of {', '.join(LAYOUTS)}")
    spec = tiny_spec(arch)
    fingerprint = _fingerprint(spec)
    target = Path(root) / arch / layout
    if _is_current(target, fingerprint):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("building tiny %s (%s layout) in %s", arch, layout, target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{layout}-", dir=target.parent))
    try:
        pipe = build_tiny_pipeline(arch, seed=0)
        if layout == "diffusers":
            write_diffusers(pipe, spec, tmp)
        else:
            write_single_files(pipe, spec, tmp)
        (tmp / COMPLETE_MARKER).write_text(fingerprint)
        _publish(tmp, target, fingerprint)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _fingerprint(spec: TinySpec) -> str:
    """What a cached build depends on: every source file of this package (sizes, tokenizers, builders,
    layouts; globbed, so that a module added later is covered too), the key conversions, the model's spec
    (read from its architecture's declaration) and the library versions."""
    import diffusers
    import tokenizers
    import transformers

    from toolkit.convert import flux_keys

    digest = hashlib.sha1()
    for source in (*sorted(Path(__file__).parent.glob("*.py")), Path(flux_keys.__file__)):
        digest.update(source.read_bytes())
    digest.update(repr(spec).encode())
    for lib in (diffusers, transformers, tokenizers):
        digest.update(lib.__version__.encode())
    return digest.hexdigest()


def _is_current(folder: Path, fingerprint: str) -> bool:
    marker = folder / COMPLETE_MARKER
    return marker.is_file() and marker.read_text() == fingerprint


def _publish(tmp: Path, target: Path, fingerprint: str) -> None:
    """Rename ``tmp`` to ``target`` unless another process already published a current one."""
    try:
        os.rename(tmp, target)
        return
    except OSError:
        if _is_current(target, fingerprint):
            return  # another process won the race
    # A leftover that is incomplete or from an older builder: move it aside, then publish ours.
    stale = Path(tempfile.mkdtemp(prefix=".stale-", dir=target.parent))
    try:
        os.rename(target, stale / "old")
    except OSError:
        pass  # someone else moved it first
    try:
        os.rename(tmp, target)
    except OSError:
        if not _is_current(target, fingerprint):
            raise
    finally:
        shutil.rmtree(stale, ignore_errors=True)
