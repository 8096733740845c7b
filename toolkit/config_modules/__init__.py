"""Typed, validated job configs with ai-toolkit's key names.

Every section is a pydantic model with ``extra="forbid"``: an unknown key is an
error, never silently ignored. Each default is written once, here; the UIs read
:func:`json_schema` instead of copying them.

Checks that need several keys at once (legacy ``is_flux`` flags against ``arch``,
``prompts`` against ``prompt_file``...) run in :meth:`_Section._check`, on the raw
mapping, *alongside* field validation, so one pass reports every problem in the
file. Known ai-toolkit keys this toolkit does not support are listed in a
section's ``_hints`` and fail with what to write instead.

No torch, diffusers or transformers import here: validating a config must stay
cheap (a test checks ``sys.modules``).

The package's modules, one a part of the job file: :mod:`.base` (the section base class, arch checking, shared
field types), :mod:`.model`, :mod:`.sample`, :mod:`.train`, :mod:`.network`, :mod:`.dataset`, :mod:`.outputs`
(save, logging) and :mod:`.job` (processes and the whole file). Import the names from this package.
"""

from __future__ import annotations

from toolkit.config_modules.base import (
    CONFIG_ERROR_TYPE,
    Dtype,
    ModelArch,
    QType,
    _arch_ids,
    _family,
    canonical_dtype,
)
from toolkit.config_modules.dataset import DatasetConfig
from toolkit.config_modules.job import (
    ADAPTER_TYPES,
    JOB_PROCESS_TYPES,
    PROCESS_TYPE_ALIASES,
    PROCESS_TYPE_HINTS,
    PROCESS_TYPES,
    AdapterConfig,
    GenerateProcessConfig,
    JobConfig,
    JobSection,
    ProcessConfig,
    TrainProcessConfig,
    json_schema,
)
from toolkit.config_modules.model import ModelConfig, ModelKwargs
from toolkit.config_modules.network import LOKR_FULL_RANK, NetworkConfig, NetworkKwargs
from toolkit.config_modules.outputs import LoggingConfig, SaveConfig
from toolkit.config_modules.sample import GenerateConfig, SampleConfig, SampleItem
from toolkit.config_modules.train import EMAConfig, TrainConfig, ValidationConfig, ValidationItem
from toolkit.errors import ConfigError

__all__ = [
    "ConfigError",
    "ModelArch",
    "Dtype",
    "QType",
    "canonical_dtype",
    "ModelConfig",
    "SampleItem",
    "SampleConfig",
    "GenerateConfig",
    "EMAConfig",
    "ValidationItem",
    "ValidationConfig",
    "TrainConfig",
    "NetworkKwargs",
    "NetworkConfig",
    "SaveConfig",
    "DatasetConfig",
    "LoggingConfig",
    "TrainProcessConfig",
    "GenerateProcessConfig",
    "ProcessConfig",
    "PROCESS_TYPES",
    "JobSection",
    "JobConfig",
    "json_schema",
    # Also imported by other modules:
    "CONFIG_ERROR_TYPE",
    "ADAPTER_TYPES",
    "AdapterConfig",
    "JOB_PROCESS_TYPES",
    "PROCESS_TYPE_ALIASES",
    "PROCESS_TYPE_HINTS",
    "ModelKwargs",
    "LOKR_FULL_RANK",
]


def __getattr__(name: str):
    # Computed on use, not at import: the registry discovers extensions (a broken one is an error that
    # must surface as a problem of the job being validated, not as a failure to import this module).
    if name == "MODEL_ARCHS":
        return tuple(_arch_ids())
    if name == "FLUX2_ARCHS":
        return _family("flux2")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
