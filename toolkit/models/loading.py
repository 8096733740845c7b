"""Component loading shared by the model classes: one place for dtype and error wrapping."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from toolkit.models.weights import WeightsError, safetensors_keys, strip_prefix

log = logging.getLogger(__name__)


def read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise WeightsError(f"'{path}' is missing") from None


def subfolder_or_self(path: Path, name: str) -> tuple[Path, str | None]:
    """A component folder may be given directly or as the parent holding `name/`."""
    if (path / name / "config.json").is_file():
        return path, name
    if (path / "config.json").is_file():
        return path, None
    raise WeightsError(f"'{path}' holds neither config.json nor {name}/config.json")


def load_component(cls, folder: Path, subfolder: str | None, dtype: torch.dtype, what: str):
    """`cls.from_pretrained` with a clear error naming the folder."""
    try:
        return cls.from_pretrained(str(folder), subfolder=subfolder, torch_dtype=dtype)
    except (OSError, ValueError, RuntimeError) as exc:
        where = folder / subfolder if subfolder else folder
        raise WeightsError(f"could not load the {what} from '{where}': {exc}") from exc


def check_single_file(path: Path, required: list[str], forbidden: list[str], expected: str) -> None:
    """Fail early when a single file is not the checkpoint the arch needs."""
    keys = set(strip_prefix(safetensors_keys(path)))
    missing = [k for k in required if k not in keys]
    present = [k for k in forbidden if k in keys]
    if missing or present:
        detail = f"missing {missing}" if missing else f"has {present}"
        raise WeightsError(
            f"model.name_or_path: '{path}' is not a {expected} checkpoint ({detail}). "
            "Check model.arch matches the file you gave"
        )


def load_single_file_transformer(cls, path: Path, config_folder: Path, dtype: torch.dtype):
    """diffusers' single-file loader, offline thanks to the explicit config folder."""
    try:
        return cls.from_single_file(str(path), config=str(config_folder), subfolder="transformer", torch_dtype=dtype)
    except (OSError, ValueError, RuntimeError, KeyError) as exc:
        raise WeightsError(
            f"model.name_or_path: '{path}' does not match the transformer config in "
            f"'{config_folder / 'transformer'}' ({type(exc).__name__}: {exc}). Is model.arch right, and "
            "model.extras_name_or_path the same model family?"
        ) from exc


def load_state_dict_file(path: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:  # corrupt or truncated file
        raise WeightsError(f"'{path}' could not be read as safetensors: {exc}") from exc


def load_converted(cls, config_folder: Path, subfolder: str, path: Path, convert, dtype: torch.dtype, error: str):
    """Build `cls` from its diffusers config on the meta device and load `convert(file state dict)` strictly.

    For single files diffusers has no (general enough) loader for; `error` prefixes the WeightsError.
    """
    config = cls.load_config(str(config_folder), subfolder=subfolder)
    with torch.device("meta"):
        model = cls.from_config(config)
    try:
        model.load_state_dict(convert(load_state_dict_file(path), model), strict=True, assign=True)
    except (ValueError, RuntimeError, KeyError) as exc:
        raise WeightsError(f"{error} '{config_folder / subfolder}': {exc}") from exc
    return model.to(dtype)
