"""Find the model class for a config's architecture."""

from __future__ import annotations

from toolkit.errors import ToolkitError
from toolkit.extension import EXTENSION_DIRS, get_model_classes


class UnknownArchError(ToolkitError, ValueError):
    pass


def model_registry(dirs=EXTENSION_DIRS) -> dict[str, type]:
    """arch -> model class, from the toolkit's own models plus every extension's."""
    from toolkit.stable_diffusion_model import StableDiffusion

    registry: dict[str, type] = {}
    for cls in [StableDiffusion, *get_model_classes(dirs)]:
        arch = getattr(cls, "arch", None)
        if not arch:
            raise UnknownArchError(f"model class {cls.__module__}.{cls.__name__} declares no `arch`")
        if arch in registry and registry[arch] is not cls:
            other = registry[arch]
            raise UnknownArchError(
                f"arch '{arch}' is claimed by two classes: {other.__module__}.{other.__name__} "
                f"and {cls.__module__}.{cls.__name__}"
            )
        registry[arch] = cls
    return registry


def get_model_class(model_config, dirs=EXTENSION_DIRS) -> type:
    """The class whose `arch` equals `model_config.arch`; never a fallback."""
    registry = model_registry(dirs)
    try:
        return registry[model_config.arch]
    except KeyError:
        raise UnknownArchError(
            f"no model class for arch '{model_config.arch}'; known archs: {', '.join(sorted(registry))}"
        ) from None
