"""Does a local ``model.name_or_path`` hold the architecture ``model.arch`` names? Checked before loading.

A FLUX.2-dev folder trained as ``arch: flux2_klein_4b`` used to fail only after the weights
loaded (minutes on a big model). The local facts are cheap to read: a diffusers folder's
``transformer/config.json`` (``_class_name``, ``guidance_embeds``) and a single file's tensor names
(the safetensors header, no tensor is read). Each model class says what it expects
(:meth:`toolkit.models.base_model.BaseModel.weights_problems`); this module compares. Hub ids and
``tiny:`` ids are not read here (nothing is downloaded or built before loading).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from toolkit.models.weights import (
    TINY_SCHEME,
    WeightsError,
    safetensors_keys,
    strip_prefix,
)


@dataclass(frozen=True)
class TransformerExpectation:
    """What an architecture's transformer looks like on disk.

    class_name: diffusers ``_class_name`` in ``transformer/config.json``; guidance_embeds: the
    config flag (None: either); required_keys / forbidden_keys: single-file tensor names
    (prefixes such as ``model.diffusion_model.`` stripped).
    """

    arch: str
    class_name: str
    guidance_embeds: bool | None
    required_keys: tuple[str, ...]
    forbidden_keys: tuple[str, ...] = ()


def weights_problems(model_config, key: str, expected: TransformerExpectation) -> list[str]:
    """Why the local weights at ``model_config.name_or_path`` are not ``expected.arch`` ([] when they are,
    or when they are not local). ``key``: the model section's key path (``config.process[0].model``)."""
    name = model_config.name_or_path
    if name.startswith(TINY_SCHEME):
        return []
    path = Path(name).expanduser()
    where = f"{key}.name_or_path: '{name}'"
    fix = f"set {key}.arch to the architecture of these weights, or point name_or_path at {expected.arch} weights"
    if path.is_dir():
        config_file = path / "transformer" / "config.json"
        if not config_file.is_file():
            return []  # the loader says what is missing
        try:
            config = json.loads(config_file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return [f"{where}: {config_file} is not readable JSON ({exc})"]
        found = config.get("_class_name")
        if found and found != expected.class_name:
            return [f"{where} holds a {found} transformer; arch '{expected.arch}' needs {expected.class_name}. {fix}"]
        guidance = config.get("guidance_embeds")
        if expected.guidance_embeds is not None and guidance is not None and bool(guidance) != expected.guidance_embeds:
            kind = "has a guidance embedding" if guidance else "has no guidance embedding"
            return [
                f"{where}: its transformer {kind}, which arch '{expected.arch}' does not "
                f"({'needs one' if expected.guidance_embeds else 'has none'}). {fix}"
            ]
        return []
    if path.is_file() and path.suffix in (".safetensors", ".sft"):
        try:
            keys = set(strip_prefix(safetensors_keys(path)))
        except WeightsError as exc:
            return [f"{key}.name_or_path: {exc}"]
        missing = [k for k in expected.required_keys if k not in keys]
        present = [k for k in expected.forbidden_keys if k in keys]
        if missing or present:
            detail = f"missing {missing}" if missing else f"has {present}"
            return [f"{where} is not a {expected.arch} transformer checkpoint ({detail}). {fix}"]
    return []
