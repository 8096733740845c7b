"""Import an ai-toolkit job (pasted or uploaded, YAML or JSON) for the Gradio app and the Next.js job UI.

:func:`import_aitk_job` turns the text into this toolkit's job YAML, validated in one pass (every problem
by key path in one :class:`~toolkit.errors.ConfigError`), and lists the folders and images it names
(:class:`PathRef`) so the UI can link or copy them into its data roots; :func:`relocate` then points the
job at the copies. Nothing here reads the files the job names, and ``${ENV}`` is not expanded (a UI job
must not read the server's environment): a job that uses it is refused with the key path.

No torch import: importing a job is as cheap as validating one.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path
from typing import Any, Literal

import yaml

from toolkit.aitk_keys import ignored_keys
from toolkit.config import _parse_text, _substitute, parse_job_config
from toolkit.config_modules import JobConfig, TrainProcessConfig
from toolkit.errors import ConfigError

__all__ = ["ImportedJob", "PathRef", "import_aitk_job", "job_paths", "relocate"]

PathKind = Literal["dataset", "control", "mask", "reference_image", "validation_image"]
_ENV = re.compile(r"\$\{[^}]*\}")


@dataclasses.dataclass(frozen=True)
class PathRef:
    """A path the job names: where (``key``, a key path), what it is (``kind``) and the path as written.

    kind: ``dataset`` (a folder of images and captions), ``control`` (a folder of reference images),
    ``mask`` (a folder of masks), ``reference_image`` / ``validation_image`` (an image file).
    """

    key: str
    kind: PathKind
    path: str


@dataclasses.dataclass
class ImportedJob:
    """The converted job: ``yaml`` (our job file text), ``config`` (validated), ``paths`` it names, and
    ``ignored``: (key path, why) of the ai-toolkit keys accepted as no-ops, for the UI to show."""

    yaml: str
    config: JobConfig
    paths: list[PathRef]
    ignored: list[tuple[str, str]]

    @property
    def folders(self) -> list[str]:
        """The distinct folders (datasets, references, masks), in file order."""
        return list(dict.fromkeys(p.path for p in self.paths if p.kind in ("dataset", "control", "mask")))


def _env_problems(value: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _env_problems(v, f"{path}.{k}" if path else str(k))]
    if isinstance(value, list):
        return [p for i, v in enumerate(value) for p in _env_problems(v, f"{path}[{i}]")]
    if isinstance(value, str) and _ENV.search(value):
        message = (
            f"{_ENV.search(value).group(0)}: environment variables are not expanded in an imported job; "
            "write the value itself"
        )
        return [(path, message)]
    return []


def _parse(text: str, filename: str | None) -> dict:
    if filename:
        name = Path(filename).name
    else:  # ai-toolkit's UI hands out JSON; its Advanced view shows YAML
        name = "job.json" if text.lstrip().startswith("{") else "job.yaml"
    raw = _parse_text(text, Path(name))
    if not isinstance(raw, dict):
        raise ConfigError("an ai-toolkit job is a mapping with job:, config: and meta:", name)
    return raw


def _dump(config: JobConfig) -> str:
    data = config.model_dump(mode="json", exclude_none=True)
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True, width=120)


def job_paths(config: JobConfig) -> list[PathRef]:
    """Every dataset / reference / mask folder and reference image a validated job names, in file order."""
    refs: list[PathRef] = []
    for i, process in enumerate(config.config.process):
        key = f"config.process[{i}]"
        if isinstance(process, TrainProcessConfig):
            for j, dataset in enumerate(process.datasets):
                where = f"{key}.datasets[{j}]"
                refs.append(PathRef(f"{where}.folder_path", "dataset", dataset.folder_path))
                for n, folder in enumerate(dataset.control_paths):
                    suffix = f"[{n}]" if isinstance(dataset.control_path, list) else ""
                    refs.append(PathRef(f"{where}.control_path{suffix}", "control", folder))
                mask = getattr(dataset, "mask_path", None)  # the masked-loss feature's key
                if isinstance(mask, str) and mask:
                    refs.append(PathRef(f"{where}.mask_path", "mask", mask))
            sample = process.sample
            refs += _image_refs(f"{key}.sample.ctrl_img", sample.ctrl_img)
            for n, item in enumerate(sample.samples or []):
                refs += _image_refs(f"{key}.sample.samples[{n}].ctrl_img", item.ctrl_img)
            validation = getattr(process.train, "validation_config", None)
            for n, item in enumerate(getattr(validation, "validation_items", None) or []):
                image = getattr(item, "image_path", None)
                if image:
                    refs.append(
                        PathRef(
                            f"{key}.train.validation_config.validation_items[{n}].image_path", "validation_image", image
                        )
                    )
        else:
            refs += _image_refs(f"{key}.generate.ctrl_img", process.generate.ctrl_img)
    return refs


def _image_refs(key: str, value: str | list[str] | None) -> list[PathRef]:
    if value is None:
        return []
    if isinstance(value, str):
        return [PathRef(key, "reference_image", value)]
    return [PathRef(f"{key}[{n}]", "reference_image", path) for n, path in enumerate(value)]


def import_aitk_job(text: str, *, filename: str | None = None, name: str | None = None) -> ImportedJob:
    """An ai-toolkit job file's text -> our validated job (see the module docstring).

    text: the job as YAML or JSON (``filename``'s suffix decides when given, else JSON when it starts
        with ``{``). name: replaces ``config.name`` (the output folder's name), as ``run.py --name``.
    Raises ConfigError listing every problem by key path (syntax, ``${ENV}``, schema, ai-toolkit keys
    refused here) in one pass.
    """
    raw = _parse(text, filename)
    problems = _env_problems(raw, "")
    if problems:
        raise ConfigError(problems, filename)
    section = raw.get("config")
    if name is not None and isinstance(section, dict):
        section["name"] = name
    job_name = section.get("name") if isinstance(section, dict) else None
    if isinstance(job_name, (str, int)) and not isinstance(job_name, bool):
        raw = _substitute(raw, "[name]", str(job_name))
    config = parse_job_config(raw, filename or "imported job")
    return ImportedJob(yaml=_dump(config), config=config, paths=job_paths(config), ignored=ignored_keys(config))


def relocate(job: ImportedJob, new_paths: dict[str, str], values: dict[str, Any] | None = None) -> ImportedJob:
    """``job`` with every path it names replaced by ``new_paths[path]`` (e.g. the UI's linked copies) and
    each key path of ``values`` set (e.g. ``config.process[0].training_folder``), re-validated. Paths not in
    ``new_paths`` stay as they are."""
    data = copy.deepcopy(job.config.model_dump(mode="json", exclude_none=True))
    for ref in job.paths:
        if ref.path in new_paths:
            _set(data, ref.key, new_paths[ref.path])
    for key, value in (values or {}).items():
        _set(data, key, value)
    config = parse_job_config(data, "imported job")
    return ImportedJob(yaml=_dump(config), config=config, paths=job_paths(config), ignored=job.ignored)


_PART = re.compile(r"([^.\[\]]+)|\[(\d+)\]")


def _set(data: Any, key: str, value: str) -> None:
    parts = [int(index) if index else name for name, index in _PART.findall(key)]
    for part in parts[:-1]:
        data = data[part]
    data[parts[-1]] = value
