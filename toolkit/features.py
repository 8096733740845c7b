"""Which training features work with which architecture, declared once and checked before loading.

Each `Feature` names its config key, how to tell it is used, and what it requires of a
model class (its `capabilities`); `check_features` turns every used-but-unsupported
feature into a problem naming the key path, the architecture and where it is supported
instead. The README's feature table is generated from the same list
(`python -m toolkit.features`) and a test keeps the two in sync.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

README_BEGIN = "<!-- feature-table:begin -->"
README_END = "<!-- feature-table:end -->"


@dataclasses.dataclass(frozen=True)
class Feature:
    key: str  # relative to config.process[i]; "[i]" marks a list item
    label: str
    used: Callable[[object], list[str]]  # process config -> key paths (relative) where it is used
    supported: Callable[[object], bool]  # model capabilities -> supported?
    instead: str  # what to do when it is not supported


def _flag(getter: Callable[[object], object], key: str) -> Callable[[object], list[str]]:
    return lambda cfg: [key] if getter(cfg) else []


def _per_dataset(attr: str) -> Callable[[object], list[str]]:
    return lambda cfg: [f"datasets[{i}].{attr}" for i, d in enumerate(cfg.datasets) if getattr(d, attr)]


def _never(caps) -> bool:
    return False


def _uses_ctrl_img(cfg) -> list[str]:
    keys = ["sample.ctrl_img"] if cfg.sample.ctrl_img else []
    return keys + [f"sample.samples[{i}].ctrl_img" for i, s in enumerate(cfg.sample.samples or []) if s.ctrl_img]


FEATURES: tuple[Feature, ...] = (
    Feature(
        "adapter",
        "adapters (`adapter.type`: ip, control_net, control_lora, vd_adapter, subpixel, mean_flow...)",
        lambda c: ["adapter.type"] if c.adapter is not None else [],
        _never,
        "remove the adapter section; train a plain LoRA / LoKr",
    ),
    Feature(
        "network.type",
        "LoKr (`network.type: lokr`)",
        lambda c: ["network.type"] if c.network.type == "lokr" else [],
        lambda caps: caps.lokr,
        "use network.type: lora",
    ),
    Feature(
        "train.train_text_encoder",
        "text-encoder training",
        _flag(lambda c: c.train.train_text_encoder, "train.train_text_encoder"),
        lambda caps: caps.text_encoder_trainable,
        "set it to false",
    ),
    Feature(
        "datasets[i].control_path",
        "reference / edit images (`control_path`)",
        _per_dataset("control_path"),
        lambda caps: caps.reference_training,
        "remove it",
    ),
    Feature(
        "sample.ctrl_img",
        "sampling with reference images (`ctrl_img`)",
        _uses_ctrl_img,
        lambda caps: caps.reference_training,
        "remove it",
    ),
    Feature(
        "model.assistant_lora_path",
        "assistant (training adapter) LoRA",
        _flag(lambda c: c.model.assistant_lora_path, "model.assistant_lora_path"),
        _never,
        "remove it, or train on FLUX.1-dev instead of schnell",
    ),
)


def check_features(process_config, model_cls, registry: dict, key: str, only: str = "") -> list[str]:
    """Problems for every feature `process_config` uses that `model_cls` does not support.

    `model_cls` and the `registry` values: anything with `arch` and `capabilities`, i.e. the architecture
    declarations (`toolkit.arch.ArchSpec`, no torch) or the model classes. `only`: check only the features
    whose key starts with it (``"model."`` for a generate process, which has no training sections).
    """
    problems = []
    for feature in FEATURES:
        if not feature.key.startswith(only):
            continue
        paths = feature.used(process_config)
        if not paths or feature.supported(model_cls.capabilities):
            continue
        where = sorted(arch for arch, cls in registry.items() if feature.supported(cls.capabilities))
        elsewhere = f"supported for: {', '.join(where)}" if where else "not supported for any architecture yet"
        for path in paths:
            problems.append(
                f"{key}.{path}: {feature.label} is not supported for {model_cls.arch} ({elsewhere}); {feature.instead}"
            )
    if model_cls.capabilities.reference_training and not only:
        problems += reference_count_problems(process_config, model_cls, key)
    return problems


def reference_count_problems(process_config, model_cls, key: str) -> list[str]:
    """More reference images (control_path folders, ctrl_img paths) than the architecture conditions on."""
    counts = [(f"datasets[{i}].control_path", len(d.control_paths)) for i, d in enumerate(process_config.datasets)]
    sample = process_config.sample
    counts.append(("sample.ctrl_img", len(sample.ctrl_imgs)))
    counts += [(f"sample.samples[{i}].ctrl_img", len(s.ctrl_imgs)) for i, s in enumerate(sample.samples or [])]
    return [problem for path, n in counts for problem in too_many_references(model_cls, n, f"{key}.{path}")]


def too_many_references(model_cls, count: int, where: str) -> list[str]:
    """[the problem] when `count` reference images at `where` exceed what `model_cls` conditions on, else []."""
    limit = model_cls.capabilities.max_reference_images
    if count <= limit:
        return []
    return [
        f"{where}: {count} reference images, but {model_cls.arch} conditions on at most {limit}; use {limit} or fewer"
    ]


def markdown_table(registry: dict[str, type]) -> str:
    archs = sorted(registry)
    lines = ["| feature | key | " + " | ".join(f"`{a}`" for a in archs) + " |", "|---|---|" + "---|" * len(archs)]
    for feature in FEATURES:
        cells = ["yes" if feature.supported(registry[a].capabilities) else "no" for a in archs]
        lines.append(f"| {feature.label} | `{feature.key}` | " + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    from toolkit.arch_registry import arch_registry

    print(markdown_table(arch_registry()))  # the CLI's output: paste into README
