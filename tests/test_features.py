"""The feature x architecture matrix: every feature is guarded for every arch, and README shows the table."""

from __future__ import annotations


import pytest

from toolkit.config_modules import TrainProcessConfig
from toolkit.features import FEATURES, README_BEGIN, README_END, check_features, markdown_table
from toolkit.util.get_model import model_registry
from toolkit.paths import ROOT


# One way to switch each feature on. A new Feature without an entry here fails test_every_feature_has_an_example.
EXAMPLES = {
    "adapter": {"adapter": {"type": "ip", "name_or_path": "h94/IP-Adapter"}},
    "network.type": {"network": {"type": "lokr"}},
    "train.train_text_encoder": {"train": {"train_text_encoder": True}},
    "datasets[i].control_path": {"datasets": [{"folder_path": "/data", "control_path": "/refs"}]},
    "sample.ctrl_img": {"sample": {"prompts": ["x"], "ctrl_img": "/ref.png"}},
    "model.assistant_lora_path": {"model": {"assistant_lora_path": "ostris/FLUX.1-schnell-training-adapter"}},
}


def process(arch: str, **changes) -> TrainProcessConfig:
    raw = {
        "type": "sd_trainer",
        "datasets": [{"folder_path": "/data"}],
        "model": {"name_or_path": "x", "arch": arch},
        **changes,
    }
    if "model" in changes:
        raw["model"] = {"name_or_path": "x", "arch": arch, **changes["model"]}
    return TrainProcessConfig.model_validate(raw)


def test_every_feature_has_an_example():
    assert set(EXAMPLES) == {f.key for f in FEATURES}


@pytest.mark.parametrize("arch", sorted(model_registry()))
@pytest.mark.parametrize("feature", FEATURES, ids=lambda f: f.key)
def test_matrix(arch, feature):
    registry = model_registry()
    model_cls = registry[arch]
    plain = check_features(process(arch), model_cls, registry, "config.process[0]")
    assert plain == []
    problems = check_features(process(arch, **EXAMPLES[feature.key]), model_cls, registry, "config.process[0]")
    if feature.supported(model_cls.capabilities):
        assert problems == []
    else:
        assert len(problems) == 1, problems
        message = problems[0]
        path = feature.key.replace("[i]", "[0]").replace("adapter", "adapter.type")
        assert message.startswith(f"config.process[0].{path}: ") and f"not supported for {arch}" in message
        assert "supported for:" in message or "not supported for any architecture yet" in message


def test_readme_table_is_in_sync():
    text = (ROOT / "README.md").read_text()
    table = text[text.index(README_BEGIN) + len(README_BEGIN) : text.index(README_END)].strip()
    assert table == markdown_table(model_registry()), "run `python -m toolkit.features` and paste it into README"


def test_unknown_adapter_type_is_a_config_error():
    from toolkit.config import parse_job_config
    from toolkit.errors import ConfigError

    raw = {
        "job": "extension",
        "config": {
            "name": "x",
            "process": [
                {
                    "type": "sd_trainer",
                    "datasets": [{"folder_path": "/d"}],
                    "model": {"name_or_path": "x", "arch": "flux2"},
                    "adapter": {"type": "ipp"},
                }
            ],
        },
    }
    with pytest.raises(ConfigError) as info:
        parse_job_config(raw, "job.yaml")
    assert info.value.problems[0][0] == "config.process[0].adapter.type"


@pytest.mark.parametrize("arch", sorted(model_registry()))
def test_reference_count_is_guarded_per_arch(arch):
    """More control_path folders or ctrl_img paths than the arch conditions on: one problem per key."""
    registry = model_registry()
    model_cls = registry[arch]
    limit = model_cls.capabilities.max_reference_images
    if not model_cls.capabilities.reference_training:
        assert limit == 0
        return
    many = [f"/refs/{i}" for i in range(limit + 1)]
    config = process(
        arch,
        datasets=[{"folder_path": "/data", "control_path": many[:limit]}],
        sample={"ctrl_img": many, "samples": [{"prompt": "x", "ctrl_img": many[0]}, {"prompt": "y"}]},
    )
    problems = check_features(config, model_cls, registry, "config.process[0]")
    assert problems == [
        f"config.process[0].sample.ctrl_img: {limit + 1} reference images, but {arch} conditions on "
        f"at most {limit}; use {limit} or fewer"
    ]
