"""The ai-toolkit key table: README in sync, and every key handled as the table says."""

from __future__ import annotations

import ast
import copy
import logging
import os
import subprocess
from pathlib import Path

import pytest

from toolkit import aitk_keys
from toolkit.config import parse_job_config
from toolkit.config_modules import JobConfig, JobSection, TrainProcessConfig
from toolkit.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent
AITK_REPO = Path(os.environ.get("AITK_REPO", "/work/.mirror/ostris+ai-toolkit/repo"))

BASE = {
    "job": "extension",
    "config": {
        "name": "t",
        "process": [
            {
                "type": "sd_trainer",
                "datasets": [{"folder_path": "/data"}],
                "model": {"name_or_path": "x", "arch": "flux2"},
                "sample": {"samples": [{"prompt": "p"}]},
                "network": {"network_kwargs": {}},
                "train": {"ema_config": {}, "validation_config": {}},
            }
        ],
    },
}


def section_mapping(raw: dict, section: str) -> dict:
    """The mapping of ``raw`` where the table's ``section`` lives (first process, dataset, sample)."""
    process = raw["config"]["process"][0]
    return {
        "job": raw,
        "config": raw["config"],
        "process": process,
        "model": process["model"],
        "train": process["train"],
        "ema": process["train"]["ema_config"],
        "validation": process["train"]["validation_config"],
        "network": process["network"],
        "network_kwargs": process["network"]["network_kwargs"],
        "save": process.setdefault("save", {}),
        "logging": process.setdefault("logging", {}),
        "sample": process["sample"],
        "sample_item": process["sample"]["samples"][0],
        "dataset": process["datasets"][0],
    }[section]


def key_path(section: str, key: str) -> str:
    where = aitk_keys.SECTION_PATHS[section].replace("[i]", "[0]").replace("[j]", "[0]")
    return f"{where}.{key}" if where else key


def section_class(section: str):
    """The schema class that takes ``section``'s keys."""
    fields = {
        "model": "model",
        "train": "train",
        "network": "network",
        "save": "save",
        "logging": "logging",
        "sample": "sample",
        "dataset": "datasets",
    }
    if section == "job":
        return JobConfig
    if section == "config":
        return JobSection
    if section == "process":
        return TrainProcessConfig
    from typing import get_args

    from toolkit.config import _unwrap

    def field_class(model, name):
        tp = _unwrap(model.model_fields[name].annotation)
        args = get_args(tp)
        return _unwrap(args[0]) if args else tp

    if section in fields:
        return field_class(TrainProcessConfig, fields[section])
    parent, name = {
        "ema": ("train", "ema_config"),
        "validation": ("train", "validation_config"),
        "network_kwargs": ("network", "network_kwargs"),
        "sample_item": ("sample", "samples"),
    }[section]
    parent_cls = section_class(parent)
    assert name in parent_cls.model_fields, f"{parent_cls.__name__} has no field {name}"
    return field_class(parent_cls, name)


def rows(status: str) -> list[tuple[str, str, dict]]:
    return [
        (section, key, found)
        for section, keys in aitk_keys.table().items()
        for key, found in keys.items()
        if found["status"] == status
    ]


def ids(row) -> str:
    return f"{row[0]}.{row[1]}"


def not_default(found: dict):
    """A value ai-toolkit would act on (different from its default)."""
    defaults = found.get("default", [])
    for candidate in (True, False, "other", 5, ["x"], {"a": 1}):
        if not aitk_keys._is_default(candidate, defaults):
            if defaults and isinstance(defaults[0], bool) != isinstance(candidate, bool):
                continue
            return candidate
    raise AssertionError(defaults)


def test_readme_table_is_in_sync():
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert aitk_keys.readme_with_table(readme) == readme, "run `python -m toolkit.aitk_keys`"


def test_every_status_has_a_reason():
    for section, key, found in rows("noop") + rows("refused"):
        assert found.get("note"), f"{section}.{key}: a no-op or refused key says why"


@pytest.mark.parametrize("row", rows("same"), ids=ids)
def test_same_keys_are_schema_keys(row):
    section, key, _ = row
    cls = section_class(section)
    assert key in cls.accepted_keys(), (
        f"{key_path(section, key)} is 'same' in the table but {cls.__name__} does not take it"
    )


@pytest.mark.parametrize("row", rows("noop"), ids=ids)
def test_noop_keys_are_accepted_and_logged(row):
    section, key, found = row
    raw = copy.deepcopy(BASE)
    section_mapping(raw, section)[key] = "anything"
    config = _parse_without_validation_config(raw, section)
    assert (key_path(section, key), found["note"]) in aitk_keys.ignored_keys(config)


@pytest.mark.parametrize("row", rows("refused"), ids=ids)
def test_refused_keys_are_errors_at_their_path(row):
    section, key, found = row
    raw = copy.deepcopy(BASE)
    section_mapping(raw, section)[key] = not_default(found)
    with pytest.raises(ConfigError) as caught:
        _parse_without_validation_config(raw, section)
    problems = dict(caught.value.problems)
    assert key_path(section, key) in problems, caught.value
    assert found["note"] in problems[key_path(section, key)]


@pytest.mark.parametrize("row", [r for r in rows("refused") if "default" in r[2]], ids=ids)
def test_refused_keys_at_aitk_default_are_noops(row):
    section, key, found = row
    raw = copy.deepcopy(BASE)
    section_mapping(raw, section)[key] = copy.deepcopy(found["default"][0])
    config = _parse_without_validation_config(raw, section)
    assert key_path(section, key) in dict(aitk_keys.ignored_keys(config))


def _parse_without_validation_config(raw: dict, section: str):
    # validation_config is helper-C's section; keep it out unless the key under test lives there
    if section != "validation":
        raw["config"]["process"][0]["train"].pop("validation_config")
    return parse_job_config(raw, "job.yaml")


def test_table_covers_every_aitk_config_key():
    """Every kwargs.get key of ai-toolkit's config classes is in the table (needs its source: AITK_REPO)."""
    git_dir = AITK_REPO
    if not git_dir.is_dir():
        pytest.skip(f"ai-toolkit's git dir not at {git_dir} (set AITK_REPO)")
    source = subprocess.run(
        ["git", f"--git-dir={git_dir}", "show", "HEAD:toolkit/config_modules.py"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    classes = {
        "SaveConfig": "save",
        "LoggingConfig": "logging",
        "SampleItem": "sample_item",
        "SampleConfig": "sample",
        "NetworkConfig": "network",
        "TrainConfig": "train",
        "ModelConfig": "model",
        "EMAConfig": "ema",
        "DatasetConfig": "dataset",
        "ValidationConfig": "validation",
    }
    missing = []
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef) and node.name in classes:
            for call in ast.walk(node):
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute)
                    and call.func.attr == "get"
                    and isinstance(call.func.value, ast.Name)
                    and call.func.value.id == "kwargs"
                ):
                    key = call.args[0].value
                    if aitk_keys.entry(classes[node.name], key) is None:
                        missing.append(f"{classes[node.name]}.{key}")
    assert not missing, f"add to toolkit/aitk_keys.yaml: {missing}"


def test_noop_keys_are_logged_once_at_info(tmp_path, caplog):
    from toolkit.job import load_job_config

    raw = copy.deepcopy(BASE)
    raw["config"]["process"][0]["train"].pop("validation_config")
    raw["config"]["process"][0]["sample"]["num_frames"] = 1
    raw["config"]["process"][0]["logging"] = {"use_ui_logger": True}
    path = tmp_path / "job.json"
    import json

    path.write_text(json.dumps(raw))
    with caplog.at_level(logging.INFO, logger="toolkit.aitk_keys"):
        load_job_config(str(path))
    lines = [r for r in caplog.records if r.name == "toolkit.aitk_keys"]
    assert [r.levelno for r in lines] == [logging.INFO, logging.INFO]
    assert (
        "config.process[0].logging.use_ui_logger" in lines[1].getMessage()
        or "config.process[0].logging.use_ui_logger" in lines[0].getMessage()
    )


def test_refused_noop_and_typo_come_back_in_one_error():
    raw = copy.deepcopy(BASE)
    process = raw["config"]["process"][0]
    process["train"].pop("validation_config")
    process["train"].update(min_snr_gamma=5, xformers=True, lrr=1e-4)
    process["model"]["is_xl"] = True
    with pytest.raises(ConfigError) as caught:
        parse_job_config(raw, "job.yaml")
    problems = dict(caught.value.problems)
    assert set(problems) == {
        "config.process[0].train.min_snr_gamma",
        "config.process[0].model.is_xl",
        "config.process[0].train.lrr",
    }
    assert "did you mean 'lr'" in problems["config.process[0].train.lrr"]


@pytest.mark.parametrize(
    "given, not_offered",
    [
        ("force_first_sampl", "skip_first_sample"),
        ("skip_first_sampel", "force_first_sample"),
        ("only_if_contain", "ignore_if_contains"),
    ],
)
def test_did_you_mean_never_offers_the_opposite(given, not_offered):
    from toolkit.config import _did_you_mean, _opposite

    assert _opposite("force_first_sample", "skip_first_sample")
    assert _opposite("min_snr_gamma", "max_snr_gamma") and not _opposite("linear", "linear_alpha")
    choices = ["skip_first_sample", "force_first_sample", "ignore_if_contains", "only_if_contains", "disable_sampling"]
    hint = _did_you_mean(given, choices)
    assert not_offered not in hint and hint  # the right key is offered, never its opposite
