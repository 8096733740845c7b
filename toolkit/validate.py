"""One validation path: every problem of a job file, by key path, in one pass, before any weights load.

    problems = validate_job("config/my_job.yaml")        # [(key path, message), ...]; [] = runnable
    job_config = check_job("config/my_job.yaml")        # the same, raising one ConfigError listing them all

The trainer, the generate job, ``run.py --check`` and both UIs' "Check" call this module; nothing else
refuses a config before loading. Stages, all run (a failing stage does not hide the next one):

1. reading: the file found, YAML/JSON parsed, ``${ENV}`` and ``[name]`` substituted (toolkit/config.py);
2. schema: every section against the typed config (toolkit/config_modules/). A process of an unknown
   ``type`` is reported and its body is still checked as the job's usual process type, so a file with
   ``type: <typo>`` gets all its other problems in the same answer;
3. architecture: ``model.arch`` against the open registry (toolkit/arch.py), the features the process uses
   against the architecture's capabilities (toolkit/features.py), model options that contradict each other;
4. process: sample / generate prompts and their flags, reference images, generate sizes, distributed
   settings (FSDP, read from accelerate's environment), the training folder;
5. data (``data=True``): every dataset folder scanned and decoded, references paired (toolkit/data);
6. machine (``machine=True``): the device exists here and the optimizer can run here.

Stages 1-5 import no torch (the UIs' Check runs them, ``machine=False``: fast); 6 asks torch about the
devices and optimizers of this machine (the trainer, the generate job and ``run.py --check`` run it).
"""

from __future__ import annotations

import copy
import dataclasses
import os
import re
from collections.abc import Collection
from pathlib import Path
from typing import Any

from toolkit.arch_registry import UnknownArchError, arch_registry
from toolkit.config import find_config, load_raw_config, parse_job_config
from toolkit.config_modules import JOB_PROCESS_TYPES, PROCESS_TYPES, JobConfig
from toolkit.data.errors import DatasetError
from toolkit.data.images import unreadable_images
from toolkit.data.items import build_items
from toolkit.errors import ConfigError, Problem, ToolkitError
from toolkit.features import check_features, too_many_references
from toolkit.paths import CONFIG_DIR
from toolkit.prompt import PromptError, apply_trigger, parse_prompt
from toolkit.train.checks import training_problems

__all__ = [
    "Problem",
    "TrainPlan",
    "GeneratePlan",
    "validate_job",
    "check_job",
    "plan_job",
    "plan_train",
    "plan_generate",
    "distributed_from_env",
]


@dataclasses.dataclass
class TrainPlan:
    """What checking a training process produced, for the trainer to use (None where a stage did not run)."""

    spec: Any = None  # toolkit.arch.ArchSpec
    items: list | None = None  # toolkit.data.dataset.TrainItem, every dataset's
    sample_specs: list = dataclasses.field(default_factory=list)  # (SampleItem, PromptSpec) per sample
    device: Any = None  # torch.device


@dataclasses.dataclass
class GeneratePlan:
    spec: Any = None
    prompt_specs: list = dataclasses.field(default_factory=list)  # PromptSpec per prompt
    device: Any = None


# ----------------------------------------------------------------------------- public API


def validate_job(
    source: str | Path | dict | Any,
    *,
    name: str | None = None,
    data: bool = True,
    machine: bool = True,
    world: int | None = None,
    shards_model: bool | None = None,
    pending: Collection[str | Path] = (),
    expand_env: bool = True,
) -> list[Problem]:
    """Every problem of a job, as (key path, message); [] when it can run.

    source: a job file path (or a bare name looked up in ``config/``), a raw mapping as read from YAML/JSON
        (``${ENV}`` / ``[name]`` already substituted), or a validated JobConfig.
    name: run.py's ``--name``. data: scan the dataset folders. machine: check the device and the optimizer on
        this machine (imports torch). world / shards_model: process count and FSDP, by default from
        accelerate's environment (`distributed_from_env`). pending: dataset folders a UI writes after the
        check (their uploads are checked by the UI). expand_env: False refuses ``${...}`` in a job file
        instead of reading the environment (``run.py --no-env``; jobs submitted through a UI).
    """
    problems, _, _ = _validate(source, name, data, machine, world, shards_model, pending, expand_env)
    return problems


def check_job(source: str | Path | dict | Any, **options) -> Any:
    """`validate_job`, raising one ConfigError that lists every problem; returns the validated JobConfig."""
    job_config, _ = plan_job(source, **options)
    return job_config


def plan_job(
    source: str | Path | dict | Any,
    *,
    name: str | None = None,
    data: bool = True,
    machine: bool = True,
    world: int | None = None,
    shards_model: bool | None = None,
    pending: Collection[str | Path] = (),
    expand_env: bool = True,
) -> tuple[Any, list]:
    """(JobConfig, one TrainPlan / GeneratePlan per process), or one ConfigError listing every problem of every
    process: a multi-process job is refused whole before its first process starts."""
    problems, job_config, plans = _validate(source, name, data, machine, world, shards_model, pending, expand_env)
    if problems:
        raise ConfigError(problems, _source_label(source))
    return job_config, plans


def distributed_from_env() -> tuple[int, bool]:
    """(process count, FSDP on) as `accelerate launch` sets them in the environment; (1, False) for run.py."""
    world = os.environ.get("WORLD_SIZE", "1")
    fsdp = os.environ.get("ACCELERATE_USE_FSDP", "").strip().lower() in ("1", "true", "yes", "y", "on")
    return (int(world) if world.isdigit() and int(world) > 0 else 1), fsdp


# ----------------------------------------------------------------------------- reading and schema


def _source_label(source) -> str | None:
    return str(source) if isinstance(source, (str, Path)) else None


def _validate(
    source, name, data, machine, world, shards_model, pending=(), expand_env=True
) -> tuple[list[Problem], Any, list]:
    if isinstance(source, JobConfig):
        problems, job_config = [], source
    else:
        try:
            raw = _read(source, name, expand_env)
        except ConfigError as exc:
            return exc.problems, None, []
        label = _source_label(source) or "<job>"
        problems, job_config, checked = _schema(raw, label)
        if job_config is None and problems:
            # The unknown process types were already replaced for this check; their problems stay reported.
            type_problems = {p for p in problems if re.fullmatch(r"config\.process\[\d+\]\.type", p[0])}
            job_config = _without_bad_keys(checked, [p for p in problems if p not in type_problems], label)
    if job_config is None:
        return problems, None, []
    env_world, env_fsdp = distributed_from_env()
    world = env_world if world is None else world
    shards_model = env_fsdp if shards_model is None else shards_model
    plans = []
    for index, process in enumerate(job_config.config.process):
        key = f"config.process[{index}]"
        if process.type == "to_folder":
            found, plan = plan_generate(process, key, machine=machine)
        else:
            found, plan = plan_train(
                process, key, data=data, machine=machine, world=world, shards_model=shards_model, pending=pending
            )
        problems += found
        plans.append(plan)
    problems = list(dict.fromkeys(problems))
    # With problems, job_config is only what was left to check (keys removed, types replaced): never run it.
    return problems, (None if problems else job_config), plans


def _read(source, name, expand_env: bool = True) -> dict:
    if isinstance(source, dict):
        raw = copy.deepcopy(source)
        if name is not None and isinstance(raw.get("config"), dict):
            raw["config"]["name"] = name
        return raw
    return load_raw_config(find_config(str(source), CONFIG_DIR), name, expand_env=expand_env)


def _schema(raw: dict, label: str) -> tuple[list[Problem], Any, dict]:
    """Schema problems, and the JobConfig when the schema holds (with unknown process types replaced by the
    job's usual one, so the later stages still run: the type problems are already in the list), and the raw
    mapping with those types replaced."""
    try:
        return [], parse_job_config(raw, label), raw
    except ConfigError as exc:
        problems = exc.problems
    section = raw.get("config") if isinstance(raw, dict) else None
    processes = section.get("process") if isinstance(section, dict) else None
    usual = JOB_PROCESS_TYPES.get(raw.get("job")) if isinstance(raw, dict) else None
    if usual is None or not isinstance(processes, list):
        return problems, None, raw
    unknown = [i for i, p in enumerate(processes) if isinstance(p, dict) and p.get("type") not in PROCESS_TYPES]
    if not unknown:
        return problems, None, raw
    retry = copy.deepcopy(raw)
    for i in unknown:
        retry["config"]["process"][i]["type"] = usual
    type_paths = {f"config.process[{i}].type" for i in unknown}
    kept = [p for p in problems if p[0] in type_paths]
    try:
        return kept, parse_job_config(retry, label), retry
    except ConfigError as exc:
        return kept + [p for p in exc.problems if p[0] not in type_paths], None, retry


def _without_bad_keys(raw: dict, problems: list[Problem], label: str) -> Any:
    """The JobConfig of `raw` with every key a schema problem points at removed (its default applies), so
    the later stages can still check the rest of the file in the same pass; None when that is not enough
    (a required key is missing or wrong)."""
    pruned = copy.deepcopy(raw)
    for _ in range(3):
        paths = [_parts(path) for path, _ in problems]
        if not paths or any(not parts or parts == ["config"] for parts in paths):
            return None
        # Deepest and highest list index first, so one removal does not shift the next one's path.
        for parts in sorted(paths, key=lambda ps: [(1, p) if isinstance(p, int) else (0, p) for p in ps], reverse=True):
            if not _remove(pruned, parts):
                return None
        try:
            return parse_job_config(pruned, label)
        except ConfigError as exc:
            problems = exc.problems
    return None


def _parts(path: str) -> list[str | int]:
    parts: list[str | int] = []
    for piece in path.replace("]", "").replace("[", ".").split("."):
        if piece:
            parts.append(int(piece) if piece.isdigit() else piece)
    return parts


def _remove(data: Any, parts: list) -> bool:
    for part in parts[:-1]:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return False
    try:
        del data[parts[-1]]
    except (KeyError, IndexError, TypeError):
        return False
    return True


# ----------------------------------------------------------------------------- shared checks


def _split(text: str) -> Problem:
    """'config.process[0].x: message' -> (path, message)."""
    path, sep, message = text.partition(": ")
    return (path, message) if sep and " " not in path else ("", text)


def _arch(model_config, key: str) -> tuple[list[Problem], Any, dict]:
    try:
        registry = arch_registry()
    except ToolkitError as exc:  # a broken extension: the error names it
        return [(f"{key}.model.arch", str(exc))], None, {}
    spec = registry.get(model_config.arch)
    if spec is None:
        return [(f"{key}.model.arch", str(UnknownArchError(f"unknown arch '{model_config.arch}'")))], None, registry
    return [], spec, registry


def model_option_problems(model_config, key: str) -> list[Problem]:
    """Model options that contradict each other: errors, never silently ignored."""
    if model_config.layer_offloading is True and model_config.vram_budget_gb is not None:
        return [
            (
                f"{key}.vram_budget_gb",
                "plans layer offloading automatically, but layer_offloading: true streams "
                "the fixed layer_offloading_*_percent; set layer_offloading: auto (or remove vram_budget_gb)",
            )
        ]
    return []


def fsdp_problems(model_config, key: str, world: int) -> list[Problem]:
    """Options that cannot be combined with sharding the transformer across processes (FSDP)."""
    share = f"FSDP already splits the transformer across the {world} processes (1/{world} each)"
    problems = []
    if model_config.quantize:
        problems.append(
            (
                f"{key}.quantize",
                f"quantized (optimum-quanto) weights cannot be sharded by FSDP; set "
                f"quantize: false ({share}) or train without the FSDP accelerate config",
            )
        )
    if model_config.layer_offloading or model_config.vram_budget_gb is not None:
        option = "layer_offloading" if model_config.layer_offloading else "vram_budget_gb"
        problems.append((f"{key}.{option}", f"layer offloading cannot stream FSDP-sharded blocks; remove it ({share})"))
    return problems


def _device(value: str, key: str) -> tuple[list[Problem], Any]:
    from toolkit.util.device import resolve_device  # imports torch: only the machine stage does

    try:
        return [], resolve_device(value, key)
    except ToolkitError as exc:
        return [_split(str(exc)) if str(exc).startswith(f"{key}:") else (key, str(exc).removeprefix(f"{key} "))], None


def _writable(folder: Path) -> str | None:
    """Why `folder` cannot be created or written (without creating it), or None."""
    probe = folder
    while not probe.exists():
        if probe.parent == probe:
            return f"no existing parent of '{folder}'"
        probe = probe.parent
    if not probe.is_dir():
        return f"'{probe}' is a file, not a folder"
    if not os.access(probe, os.W_OK | os.X_OK):
        return f"'{probe}' is not writable"
    return None


# ----------------------------------------------------------------------------- training


def plan_train(
    cfg,
    key: str,
    *,
    data: bool = True,
    machine: bool = True,
    world: int = 1,
    shards_model: bool = False,
    pending: Collection[str | Path] = (),
) -> tuple[list[Problem], TrainPlan]:
    """Every problem of one ``sd_trainer`` process (`cfg`: TrainProcessConfig at `key`), and what checking it
    produced (the architecture, the training items, the parsed sample prompts, the device). ``pending``:
    dataset / control folders a UI writes after the check (not scanned)."""
    plan = TrainPlan()
    problems, plan.spec, registry = _arch(cfg.model, key)
    problems += model_option_problems(cfg.model, f"{key}.model")
    if plan.spec is not None:
        problems += [_split(p) for p in check_features(cfg, plan.spec, registry, key)]
    if cfg.model.lora_path:
        problems.append(
            (
                f"{key}.model.lora_path",
                "applies a LoRA when generating; it cannot be merged into a training run yet. Remove it",
            )
        )
    if shards_model:
        problems += fsdp_problems(cfg.model, f"{key}.model", world)
    if not cfg.train.train_unet:
        problems.append((f"{key}.train.train_unet", "false would train nothing; set it to true"))
    problems += [_split(p) for p in training_problems(cfg, key)]
    pending_paths = frozenset(Path(p).expanduser().resolve() for p in pending)
    found, plan.sample_specs = _sample_prompts(cfg, key, pending_paths)
    problems += found
    why = _writable(Path(cfg.training_folder).expanduser() / "x")
    if why:
        problems.append((f"{key}.training_folder", f"cannot write to '{cfg.training_folder}': {why}"))
    if data and plan.spec is not None:
        found, plan.items = _datasets(cfg, key, plan.spec, pending_paths)
        problems += found
    if machine:
        found, plan.device = _device(cfg.device, f"{key}.device")
        problems += found
        problems += _optimizer(cfg.train.optimizer, cfg.train.optimizer_params, f"{key}.train")
        if plan.spec is not None:
            problems += _weights(plan.spec, cfg.model, f"{key}.model")
        if shards_model:
            problems += _fsdp_settings()
    return problems, plan


def _sample_prompts(cfg, key: str, pending: frozenset[Path] = frozenset()) -> tuple[list[Problem], list]:
    problems, specs = [], []
    sample = cfg.sample
    # A UI edit job's references are uploads written after the check; the UI checks the samples' ones with them.
    uploads_pending = any(_pending(d, pending) for d in cfg.datasets if d.control_paths)
    for i, item in enumerate(sample.sample_items()):
        try:
            specs.append((item, parse_prompt(apply_trigger(item.prompt, cfg.trigger_word))))
        except PromptError as exc:
            problems.append((f"{key}.sample.prompts[{i}]", str(exc)))
        own = sample.samples is not None and sample.samples[i].ctrl_img is not None
        where = f"{key}.sample." + (f"samples[{i}].ctrl_img" if own else "ctrl_img")
        if not uploads_pending:
            problems += [(where, problem) for problem in unreadable_images(item.ctrl_imgs)]
    return problems, specs


def _pending(dataset, pending: frozenset[Path]) -> bool:
    folders = [dataset.folder_path, *dataset.control_paths]
    return any(Path(f).expanduser().resolve() in pending for f in folders)


def _datasets(cfg, key: str, spec, pending: frozenset[Path]) -> tuple[list[Problem], list | None]:
    caps = spec.capabilities
    keys = [f"{key}.datasets[{i}]" for i in range(len(cfg.datasets))]
    datasets = list(cfg.datasets)
    if pending:  # a UI writes these folders once the job is accepted; its upload checks cover them
        keep = [i for i, d in enumerate(datasets) if not _pending(d, pending)]
        datasets, keys = [datasets[i] for i in keep], [keys[i] for i in keep]
        if not datasets:
            return [], None
    try:
        return [], build_items(
            datasets, cfg.trigger_word, caps.bucket_divisibility, keys, reference_max_pixels=caps.reference_max_pixels
        )
    except DatasetError as exc:
        lines = str(exc).splitlines()
        if len(lines) > 1 and lines[0].endswith("dataset problems:"):
            return [_split(line.strip().removeprefix("- ")) for line in lines[1:]], None
        return [_split(str(exc))], None


def _fsdp_settings() -> list[Problem]:
    """accelerate's FSDP settings (its config file, through the environment) that this trainer cannot honour."""
    from toolkit.distributed import DistributedConfigError, FsdpSettings  # imports torch: machine stage only

    try:
        FsdpSettings.from_accelerate_env()
    except DistributedConfigError as exc:
        return [("", str(exc))]
    return []


def _optimizer(name: str, params: dict, key: str) -> list[Problem]:
    """The optimizer can run here, and ``optimizer_params`` are options its constructor takes (`key`: the
    ``train`` section's path)."""
    from toolkit.optim import check_optimizer  # imports torch: only the machine stage does

    try:
        check_optimizer(name, params)
    except ConfigError as exc:  # problems at train.optimizer_params.<name>
        return [
            (f"{key.removesuffix('.train')}.{path}" if path.startswith("train.") else f"{key}.optimizer", message)
            for path, message in exc.problems
        ]
    except ToolkitError as exc:
        return [(f"{key}.optimizer", str(exc))]
    return []


def _weights(spec, model_config, key: str) -> list[Problem]:
    """Local weights (a diffusers folder's transformer config, a single file's tensor names) that are not the
    architecture ``model.arch`` names: refused before minutes of loading."""
    from toolkit.arch_registry import model_class  # imports the model class (torch): machine stage only

    return [_split(p) for p in model_class(spec).weights_problems(model_config, key)]


# ----------------------------------------------------------------------------- generating


def plan_generate(cfg, key: str, *, machine: bool = True) -> tuple[list[Problem], GeneratePlan]:
    """Every problem of one ``to_folder`` process: prompts and their flags, sizes against the architecture's
    bucket divisibility, reference images, model options, the device."""
    plan = GeneratePlan()
    gen = cfg.generate
    problems, plan.spec, registry = _arch(cfg.model, key)
    problems += model_option_problems(cfg.model, f"{key}.model")
    if plan.spec is not None:
        # The model section's features (assistant_lora_path...) mean the same when generating.
        problems += [_split(p) for p in check_features(cfg, plan.spec, registry, key, only="model.")]
    texts = list(gen.prompts)
    if gen.prompt_file:
        path = Path(gen.prompt_file).expanduser()
        if path.is_file():
            texts += [line.strip() for line in path.read_text().splitlines() if line.strip()]
        else:
            problems.append((f"{key}.generate.prompt_file", f"'{path}' does not exist"))
    for i, text in enumerate(texts):
        try:
            plan.prompt_specs.append(parse_prompt(text))
        except PromptError as exc:
            problems.append((f"{key}.generate.prompts[{i}]", str(exc)))
    if plan.spec is not None:
        caps, arch = plan.spec.capabilities, plan.spec.arch
        if gen.ctrl_imgs:
            where = f"{key}.generate.ctrl_img"
            if not caps.reference_training:
                problems.append((where, f"{arch} does not take reference images (FLUX.2 models do); remove it"))
            else:
                problems += [_split(p) for p in too_many_references(plan.spec, len(gen.ctrl_imgs), where)]
        div = caps.bucket_divisibility
        for spec in plan.prompt_specs:
            for side, value in (("width", spec.width or gen.width), ("height", spec.height or gen.height)):
                if value % div:
                    problems.append(
                        (
                            f"{key}.generate",
                            f"{side} {value} for {spec.prompt!r} is not a multiple of "
                            f"{div} ({arch} needs it); use {value // div * div} or {(value // div + 1) * div}",
                        )
                    )
    if gen.ctrl_imgs:
        problems += [(f"{key}.generate.ctrl_img", p) for p in unreadable_images(gen.ctrl_imgs)]
    if machine:
        found, plan.device = _device(cfg.device, f"{key}.device")
        problems += found
        if plan.spec is not None:
            problems += _weights(plan.spec, cfg.model, f"{key}.model")
    return problems, plan
