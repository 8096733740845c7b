"""The architecture registry: every declared `ArchSpec` (built-ins plus extensions), by arch id.

Imports no torch: declarations are data. `model_class` imports a declaration's model class, which is
where torch comes in. `python -m toolkit.arch_registry` prints the README's architecture table.
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from toolkit.arch import ArchSpec, UnknownArchError
from toolkit.extension import get_arch_specs
from toolkit.stable_diffusion_arch import FLUX1

__all__ = [
    "UnknownArchError",
    "arch_registry",
    "arch_ids",
    "family_archs",
    "get_arch",
    "model_class",
    "markdown_table",
    "describe",
    "README_BEGIN",
    "README_END",
]

BUILTIN: tuple[ArchSpec, ...] = (FLUX1,)
"""Declared by the toolkit itself; the FLUX.2 family comes from extensions_built_in/diffusion_models."""


def arch_registry(dirs=None) -> dict[str, ArchSpec]:
    """arch -> declaration: the toolkit's own plus every extension's. An arch declared twice is an error."""
    registry: dict[str, ArchSpec] = {}
    for spec in [*BUILTIN, *get_arch_specs(dirs)]:
        if not isinstance(spec, ArchSpec):
            raise UnknownArchError(f"AI_TOOLKIT_ARCHS holds {spec!r}; expected toolkit.arch.ArchSpec instances")
        other = registry.get(spec.arch)
        if other is not None and other != spec:
            raise UnknownArchError(
                f"arch '{spec.arch}' is declared twice: by {other.model_class} and by {spec.model_class}"
            )
        registry[spec.arch] = spec
    return registry


def arch_ids(dirs=None) -> list[str]:
    """Every known arch id, built-ins first."""
    return list(arch_registry(dirs))


def family_archs(family: str, dirs=None) -> frozenset[str]:
    """The arch ids of one model family (``"flux2"`` -> flux2, flux2_klein_4b, flux2_klein_9b, ...)."""
    return frozenset(arch for arch, spec in arch_registry(dirs).items() if spec.family == family)


def get_arch(arch: str, dirs=None) -> ArchSpec:
    registry = arch_registry(dirs)
    try:
        return registry[arch]
    except KeyError:
        raise UnknownArchError(f"unknown arch '{arch}'; known archs: {', '.join(sorted(registry))}") from None


def model_class(spec: ArchSpec) -> type:
    """Import the model class a declaration names (this is where torch gets imported)."""
    module_name, _, class_name = spec.model_class.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as exc:
        raise UnknownArchError(
            f"arch '{spec.arch}': cannot import its model class '{spec.model_class}': {exc}"
        ) from exc
    if getattr(cls, "spec", None) is not spec:
        raise UnknownArchError(
            f"arch '{spec.arch}': {spec.model_class} declares spec "
            f"{getattr(getattr(cls, 'spec', None), 'arch', None)!r}, not this declaration"
        )
    return cls


# ---------------------------------------------------------------------------- README table

README_BEGIN = "<!-- arch-table:begin -->"
README_END = "<!-- arch-table:end -->"


def _guidance(spec: ArchSpec) -> str:
    parts = []
    for release in spec.releases:
        kind = (
            "embedded guidance"
            if release.guidance_embeds
            else "none: real CFG"
            if spec.capabilities.real_cfg
            else "none"
        )
        s = release.sampling
        parts.append(f"{release.name}: {kind} (samples at {s.sample_steps} steps, guidance {s.guidance_scale:g})")
    return "; ".join(parts)


def markdown_table(registry: dict[str, ArchSpec]) -> str:
    """The README's architecture table, generated from the declarations (`python -m toolkit.arch_registry`)."""
    lines = ["| `arch` | model | text encoder | guidance, sampling defaults | official repo |", "|---|---|---|---|---|"]
    for spec in registry.values():
        layers = "/".join(str(n) for n in spec.hidden_state_layers)
        encoder = f"{spec.text_encoder_label} (`{spec.text_encoder}`)" + (f", hidden states {layers}" if layers else "")
        repos = ", ".join(f"`{r.official_repo}`" for r in spec.releases)
        model = spec.label + (f" ({spec.size_label})" if spec.size_label else "")
        lines.append(f"| `{spec.arch}` | {model} | {encoder} | {_guidance(spec)} | {repos} |")
    return "\n".join(lines)


def describe(registry: dict[str, ArchSpec]) -> dict[str, dict[str, Any]]:
    """Per arch, what a UI shows: label, official repo, capabilities, sampling defaults (JSON-ready)."""
    return {
        arch: {
            "label": spec.label,
            "official_repo": spec.official_repo,
            "model_class": spec.model_class,
            "capabilities": dataclasses.asdict(spec.capabilities),
            "releases": [
                {"name": r.name, "official_repo": r.official_repo, "sampling": dataclasses.asdict(r.sampling)}
                for r in spec.releases
            ],
        }
        for arch, spec in registry.items()
    }


if __name__ == "__main__":
    print(markdown_table(arch_registry()))  # the CLI's output: paste into README
