"""Find the model class for a config's architecture, through the declarations (`toolkit.arch`)."""

from __future__ import annotations

from toolkit.arch_registry import UnknownArchError, arch_registry, model_class

__all__ = ["UnknownArchError", "model_registry", "get_model_class"]


def model_registry(dirs=None) -> dict[str, type]:
    """arch -> model class, from the toolkit's own declarations plus every extension's (imports them)."""
    return {arch: model_class(spec) for arch, spec in arch_registry(dirs).items()}


def get_model_class(model_config, dirs=None) -> type:
    """The class declared for `model_config.arch`; never a fallback."""
    registry = arch_registry(dirs)
    spec = registry.get(model_config.arch)
    if spec is None:
        raise UnknownArchError(
            f"no model class for arch '{model_config.arch}'; known archs: {', '.join(sorted(registry))}"
        )
    return model_class(spec)
