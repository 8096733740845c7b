"""Where a model's weights come from: hub repo id, local diffusers folder, or single files.

Every layout is reduced to local paths before anything is loaded:

- ``name_or_path`` a hub repo id  -> huggingface_hub snapshot (HF_TOKEN honoured) -> diffusers folder
- ``name_or_path`` a folder       -> diffusers folder (model_index.json / transformer/config.json)
- ``name_or_path`` a .safetensors -> Black Forest Labs single file for the transformer; the configs,
  tokenizer, text encoder and scheduler come from ``extras_name_or_path`` (a folder or repo id,
  default the architecture's official repo); the VAE from ``vae_path``, else an ``ae.safetensors``
  beside the single file, else the extras folder's ``vae/``.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
from pathlib import Path

from toolkit.errors import ToolkitError

log = logging.getLogger(__name__)

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# Files a diffusers-folder snapshot needs; skips the BFL single files that the
# official repos also hold (tens of GB we would never read).
DIFFUSERS_PATTERNS = ["model_index.json", "*/*.json", "*/*.safetensors", "*/*.txt", "*/*.model", "*/*.jinja"]
CONFIG_PATTERNS = ["model_index.json", "*/*.json", "*/*.txt", "*/*.model", "*/*.jinja"]


class WeightsError(ToolkitError, ValueError):
    """A weights path is missing, of the wrong kind, or not the expected model."""


@dataclasses.dataclass(frozen=True)
class WeightSources:
    """Local paths for each component.

    transformer_file: the BFL single file, or None when the transformer is in `base_folder`.
    base_folder: a diffusers folder giving configs, tokenizer(s), text encoder(s), scheduler (and VAE).
    vae: a VAE folder / single file overriding `base_folder/vae`, or None.
    text_encoder: a text-encoder folder overriding `base_folder/text_encoder`, or None.
    """

    base_folder: Path
    transformer_file: Path | None = None
    vae: Path | None = None
    text_encoder: Path | None = None


def is_repo_id(value: str) -> bool:
    return bool(_REPO_ID.match(value)) and not Path(value).exists() and not value.startswith((".", "/"))


def download_repo(repo_id: str, key: str, allow_patterns=DIFFUSERS_PATTERNS, revision=None) -> Path:
    """Snapshot a hub repo (or reuse the local cache) and return its folder.

    Honours HF_TOKEN and HF_HUB_OFFLINE; errors name the YAML key and what to do.
    """
    from huggingface_hub import snapshot_download
    from huggingface_hub import errors as hf_errors

    try:
        return Path(
            snapshot_download(
                repo_id,
                revision=revision,
                allow_patterns=allow_patterns,
                token=os.environ.get("HF_TOKEN") or None,
            )
        )
    except hf_errors.GatedRepoError as exc:
        raise WeightsError(
            f"{key}: '{repo_id}' is a gated repo. Accept its license on huggingface.co, then set "
            f"HF_TOKEN to a token with read access ({exc.__class__.__name__})"
        ) from exc
    except hf_errors.RepositoryNotFoundError as exc:
        raise WeightsError(
            f"{key}: hub repo '{repo_id}' not found (or HF_TOKEN lacks access). "
            "Give an existing repo id, a local diffusers folder, or a .safetensors file"
        ) from exc
    except (hf_errors.LocalEntryNotFoundError, OSError) as exc:
        raise WeightsError(
            f"{key}: could not get '{repo_id}' from the hub or the local cache "
            f"({exc.__class__.__name__}: {exc}). Check the network / HF_HUB_OFFLINE, or point {key} "
            "at a local folder"
        ) from exc


def resolve_folder(value: str, key: str, revision=None, allow_patterns=DIFFUSERS_PATTERNS) -> Path:
    """A local folder or a repo id -> local folder."""
    path = Path(value).expanduser()
    if path.is_dir():
        return path
    if path.exists():
        raise WeightsError(f"{key}: '{value}' is a file; a diffusers folder or hub repo id is expected here")
    if is_repo_id(value):
        return download_repo(value, key, allow_patterns=allow_patterns, revision=revision)
    raise WeightsError(f"{key}: '{value}' does not exist (expected a local folder or a hub repo id 'org/name')")


def _check_diffusers_folder(folder: Path, key: str) -> None:
    if not (folder / "model_index.json").is_file() and not (folder / "transformer" / "config.json").is_file():
        raise WeightsError(
            f"{key}: '{folder}' is not a diffusers model folder: expected model_index.json and "
            "transformer/config.json in it"
        )


def _optional_path(value: str | None, key: str) -> Path | None:
    if value is None:
        return None
    path = Path(value).expanduser()
    if path.exists():
        return path
    if is_repo_id(value):
        return resolve_folder(value, key)
    raise WeightsError(f"{key}: '{value}' does not exist")


TINY_SCHEME = "tiny:"


def resolve_tiny(value: str, key: str) -> Path:
    """`tiny:<id>` -> a tiny random model the project builds (once, cached in TINY_ROOT).

    The README's demo and the tests use it: real architecture, real on-disk layout, random weights.
    """
    from toolkit.paths import TINY_ROOT
    from toolkit.tiny import TINY_IDS, ensure_tiny

    tiny_id = value[len(TINY_SCHEME) :]
    if tiny_id not in TINY_IDS:
        raise WeightsError(
            f"{key}: unknown tiny model '{tiny_id}'; known: {', '.join(TINY_SCHEME + a for a in TINY_IDS)}"
        )
    return ensure_tiny(tiny_id, TINY_ROOT, "diffusers")


def resolve_weights(model_config, default_extras: str, key_prefix: str = "model") -> WeightSources:
    """Reduce a ModelConfig to local paths (downloads hub repos when needed).

    `default_extras`: the repo id giving configs/text encoders when name_or_path is a single file.
    """
    name = model_config.name_or_path
    if name.startswith(TINY_SCHEME):
        name = str(resolve_tiny(name, f"{key_prefix}.name_or_path"))
    path = Path(name).expanduser()
    vae = _optional_path(model_config.vae_path, f"{key_prefix}.vae_path")
    te = _optional_path(model_config.text_encoder_path, f"{key_prefix}.text_encoder_path")
    if path.is_file():
        if path.suffix not in (".safetensors", ".sft"):
            raise WeightsError(
                f"{key_prefix}.name_or_path: '{path}' is not a .safetensors file; single-file "
                "checkpoints must be safetensors (e.g. flux2-dev.safetensors)"
            )
        extras_value = model_config.extras_name_or_path or default_extras
        extras = resolve_folder(
            extras_value, f"{key_prefix}.extras_name_or_path", allow_patterns=_extras_patterns(vae, path, te)
        )
        _check_diffusers_folder(extras, f"{key_prefix}.extras_name_or_path")
        if vae is None and (path.parent / "ae.safetensors").is_file():
            vae = path.parent / "ae.safetensors"
        return WeightSources(base_folder=extras, transformer_file=path, vae=vae, text_encoder=te)
    if path.suffix in (".safetensors", ".sft", ".ckpt", ".pt", ".bin") and not path.exists():
        raise WeightsError(f"{key_prefix}.name_or_path: file '{path}' does not exist")
    folder = resolve_folder(name, f"{key_prefix}.name_or_path", revision=model_config.revision)
    _check_diffusers_folder(folder, f"{key_prefix}.name_or_path")
    return WeightSources(base_folder=folder, vae=vae, text_encoder=te)


def _extras_patterns(vae: Path | None, transformer_file: Path, te: Path | None) -> list[str]:
    """Only fetch from the extras repo what the single-file layout does not already give."""
    patterns = list(CONFIG_PATTERNS)
    if te is None:
        patterns += ["text_encoder*/*.safetensors"]
    if vae is None and not (transformer_file.parent / "ae.safetensors").is_file():
        patterns += ["vae/*.safetensors"]
    return patterns


def safetensors_keys(path: Path) -> list[str]:
    """Tensor names of a safetensors file without reading the tensors."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return list(f.keys())
    except Exception as exc:  # safetensors raises its own error types for corrupt headers
        raise WeightsError(f"'{path}' is not a readable safetensors file: {exc}") from exc


def strip_prefix(keys: list[str], prefixes=("model.diffusion_model.", "diffusion_model.")) -> list[str]:
    for prefix in prefixes:
        if keys and all(k.startswith(prefix) for k in keys):
            return [k[len(prefix) :] for k in keys]
    return keys
