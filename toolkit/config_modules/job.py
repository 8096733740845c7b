"""A whole job file (:class:`JobConfig`): its processes (train, generate) and the JSON schema the UIs read."""

from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from toolkit.config_modules.base import _LocProblem, _Section
from toolkit.config_modules.dataset import DatasetConfig
from toolkit.config_modules.model import ModelConfig
from toolkit.config_modules.network import NetworkConfig
from toolkit.config_modules.outputs import LoggingConfig, SaveConfig
from toolkit.config_modules.sample import GenerateConfig, SampleConfig
from toolkit.config_modules.train import TrainConfig
from toolkit.names import name_problem

# ------------------------------------------------------------------------ processes

_EMPTY_IS_DEFAULT = ("network", "save", "train", "sample", "logging")


ADAPTER_TYPES = (
    "ip",
    "ip+",
    "t2i",
    "control_net",
    "controlnet",
    "control_lora",
    "clip",
    "llm_adapter",
    "vd_adapter",
    "subpixel",
    "mean_flow",
    "redux",
    "te_augmenter",
    "lora",
)


class AdapterConfig(BaseModel):
    """ai-toolkit's ``adapter:`` section (IP adapter, ControlNet, ...). Its ``type`` is checked here;
    whether the architecture supports it is checked before loading (toolkit/features.py). The other
    keys are ai-toolkit's per-adapter options, kept as given."""

    model_config = ConfigDict(extra="allow")

    type: Literal[ADAPTER_TYPES]  # type: ignore[valid-type]
    name_or_path: str | None = None


class TrainProcessConfig(_Section):
    """``type: sd_trainer``: train a LoRA. An empty section (``sample:`` with all keys
    commented out) takes the defaults."""

    type: Literal["sd_trainer"]
    training_folder: str = "output"
    device: str = "cuda:0"
    trigger_word: str | None = None
    performance_log_every: int = Field(
        default=0,
        ge=0,
        description="Every N steps, log where the time went since the last report (data, forward, "
        "backward, optimizer, sampling, saving) and write it to progress.jsonl; 0 = off.",
    )
    network: NetworkConfig = Field(default_factory=NetworkConfig)
    save: SaveConfig = Field(default_factory=SaveConfig)
    datasets: list[DatasetConfig] = Field(min_length=1)
    train: TrainConfig = Field(default_factory=TrainConfig)
    model: ModelConfig
    sample: SampleConfig = Field(default_factory=SampleConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    adapter: AdapterConfig | None = None

    _aitk_section: ClassVar[str | None] = "process"
    _legacy_keys: ClassVar[tuple[str, ...]] = ("training_seed",)

    @classmethod
    def _check(cls, data: dict[str, Any]) -> list[_LocProblem]:
        for key in _EMPTY_IS_DEFAULT:
            if key in data and data[key] is None:
                del data[key]
        if "training_seed" in data:  # ai-toolkit's process-level seed is train.seed here
            seed = data.pop("training_seed")
            train = data.get("train")
            if not isinstance(train, dict):
                train = {}
            if "seed" in train:
                return [(("training_seed",), "another name for train.seed; give only one of them")]
            data["train"] = {**train, "seed": seed}
        datasets = data.get("datasets") if isinstance(data.get("datasets"), list) else []
        caching = [isinstance(d, dict) and d.get("cache_text_embeddings") is True for d in datasets]
        problems = _sampling_without_prompts(data)
        if any(caching) and not all(caching):
            problems.append(
                (
                    ("datasets", caching.index(False), "cache_text_embeddings"),
                    "text embeddings are "
                    "cached for all datasets or none (as in ai-toolkit); set cache_text_embeddings: true on "
                    "every dataset, or train.cache_text_embeddings: true",
                )
            )
        return problems

    @model_validator(mode="after")
    def _aitk_derived(self) -> TrainProcessConfig:
        # ai-toolkit's trainer copies train.dtype into the model config before loading: the weights' dtype.
        if "dtype" not in self.model.model_fields_set:
            self.model.dtype = self.train.dtype
        match_target_res = self.model.model_kwargs.match_target_res
        if match_target_res is not None:
            for dataset in self.datasets:
                if "match_target_res" not in dataset.model_fields_set:
                    dataset.match_target_res = match_target_res
        return self

    @property
    def caches_text_embeddings(self) -> bool:
        """``train.cache_text_embeddings``, or ai-toolkit's per-dataset spelling of it."""
        return self.train.cache_text_embeddings or any(d.cache_text_embeddings for d in self.datasets)


def _sampling_without_prompts(process: dict[str, Any]) -> list[_LocProblem]:
    """``sample_every`` given, sampling on, and nothing to sample: an error, not a silent no-op."""
    sample, train = process.get("sample"), process.get("train")
    disabled = isinstance(train, dict) and train.get("disable_sampling") is True
    if not isinstance(sample, dict) or "sample_every" not in sample or disabled:
        return []
    if sample.get("prompts") or sample.get("samples"):
        return []
    return [
        (
            ("sample", "prompts"),
            "sample.sample_every is set but there is no prompt to sample: add prompts "
            "(or samples), or set train.disable_sampling: true",
        )
    ]


class GenerateProcessConfig(_Section):
    """``type: to_folder``: generate images into ``output_folder``."""

    type: Literal["to_folder"]
    output_folder: str
    device: str = "cuda:0"
    generate: GenerateConfig
    model: ModelConfig


ProcessConfig = Annotated[Union[TrainProcessConfig, GenerateProcessConfig], Field(discriminator="type")]
PROCESS_TYPES: dict[str, type[_Section]] = {"sd_trainer": TrainProcessConfig, "to_folder": GenerateProcessConfig}
JOB_PROCESS_TYPES: dict[str, str] = {"extension": "sd_trainer", "generate": "to_folder"}

PROCESS_TYPE_ALIASES: dict[str, str] = {"diffusion_trainer": "sd_trainer", "ui_trainer": "sd_trainer"}
"""ai-toolkit's web UI process types: the same trainer (read as type: sd_trainer)."""
PROCESS_TYPE_HINTS: dict[str, str] = {}
"""Unknown process types -> what to write instead (config.py adds them to the error)."""


def _alias_process_types(section: Any) -> Any:
    """``config:`` with ai-toolkit's process type aliases rewritten (copies; the input is not changed)."""
    if not isinstance(section, dict) or not isinstance(section.get("process"), list):
        return section
    processes = [
        {**p, "type": PROCESS_TYPE_ALIASES[p["type"]]}
        if isinstance(p, dict) and isinstance(p.get("type"), str) and p["type"] in PROCESS_TYPE_ALIASES
        else p
        for p in section["process"]
    ]
    return {**section, "process": processes}


class JobSection(_Section):
    """``config:``: the job's name (its output folder and file names) and processes."""

    name: str = Field(min_length=1)
    process: list[ProcessConfig] = Field(min_length=1)

    @field_validator("name")
    @classmethod
    def _plain_name(cls, value: str) -> str:
        problem = name_problem(value)  # the name becomes <training_folder>/<name>/: never a path
        if problem:
            raise ValueError(problem)
        return value


class JobConfig(_Section):
    """A whole job file: ``job``, ``config``, ``meta``."""

    job: Literal["extension", "generate"]
    config: JobSection
    meta: dict[str, Any] = {}

    @classmethod
    def _check(cls, data: dict[str, Any]) -> list[_LocProblem]:
        job = data.get("job")
        if "config" in data:
            data["config"] = _alias_process_types(data["config"])
        section = data.get("config")
        if job not in JOB_PROCESS_TYPES or not isinstance(section, dict):
            return []
        processes = section.get("process")
        wanted = JOB_PROCESS_TYPES[job]
        other_job = {v: k for k, v in JOB_PROCESS_TYPES.items()}
        problems = []
        for i, process in enumerate(processes if isinstance(processes, list) else []):
            kind = process.get("type") if isinstance(process, dict) else None
            if kind in PROCESS_TYPES and kind != wanted:
                problems.append(
                    (
                        ("job",),
                        f"'{job}' runs only type: {wanted} processes, but config.process[{i}] "
                        f"is type: {kind}; use job: {other_job[kind]} for it",
                    )
                )
        return problems


def json_schema() -> dict:
    """JSON schema of a job file, for the UIs (defaults, enums, descriptions)."""
    return JobConfig.model_json_schema()
