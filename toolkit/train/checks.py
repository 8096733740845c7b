"""Problems with the training options of toolkit/train/ that can be found before any weights load."""

from __future__ import annotations

import importlib.util

from toolkit.data.images import unreadable_images


def training_problems(process_config, key: str) -> list[str]:
    """Every problem, each naming its key path and the fix."""
    cfg = process_config
    problems = preservation_problems(cfg, key)
    if all(d.is_reg for d in cfg.datasets):
        problems.append(
            f"{key}.datasets: every dataset has is_reg: true; regularisation images are drawn on "
            "alternate steps besides the training images, so at least one dataset must not be is_reg"
        )
    validation = cfg.train.validation_config
    if validation is not None:
        for i, item in enumerate(validation.validation_items):
            where = f"{key}.train.validation_config.validation_items[{i}].image_path"
            problems += [f"{where}: {problem}" for problem in unreadable_images([item.image_path])]
    if cfg.logging.use_wandb and importlib.util.find_spec("wandb") is None:
        problems.append(
            f"{key}.logging.use_wandb: the wandb client is not installed; pip install wandb (or set use_wandb: false)"
        )
    return problems


def preservation_problems(process_config, key: str) -> list[str]:
    """What a preservation loss needs that the job lacks (checked before loading)."""
    train = process_config.train
    if not train.diff_output_preservation:
        return []
    has_trigger = process_config.trigger_word or any(d.trigger_word for d in process_config.datasets)
    if has_trigger:
        return []
    return [
        (
            f"{key}.train.diff_output_preservation replaces the trigger word with "
            f"'{train.diff_output_preservation_class}' in each caption, but no trigger_word is set; set "
            "trigger_word (or datasets[].trigger_word), or turn diff_output_preservation off"
        )
    ]
