"""ai-toolkit's config semantics and YAML habits, checked on the typed config (no model loads)."""

from __future__ import annotations

import copy
import json

import pytest

from toolkit.config import load_raw_config, parse_job_config
from toolkit.errors import ConfigError

BASE = {
    "job": "extension",
    "config": {
        "name": "t",
        "process": [
            {
                "type": "sd_trainer",
                "datasets": [{"folder_path": "/data"}],
                "model": {"name_or_path": "x", "arch": "flux2"},
            }
        ],
    },
}


def process_of(**changes):
    raw = copy.deepcopy(BASE)
    for section, value in changes.items():
        target = raw["config"]["process"][0]
        if isinstance(value, dict) and isinstance(target.get(section), dict):
            target[section] = {**target[section], **value}
        else:
            target[section] = value
    return parse_job_config(raw, "job.yaml").config.process[0]


def problems_of(**changes) -> dict[str, str]:
    with pytest.raises(ConfigError) as caught:
        process_of(**changes)
    return dict(caught.value.problems)


# --- train.dtype is the weights' dtype, model.dtype overrides -------------------------------------------


def test_train_dtype_sets_the_weights_dtype():
    assert process_of(train={"dtype": "fp32"}).model.dtype == "fp32"
    assert process_of(train={"dtype": "fp16"}).model.dtype == "fp16"
    assert process_of().model.dtype == "bf16"  # both defaults


def test_model_dtype_is_an_explicit_override():
    process = process_of(train={"dtype": "fp32"}, model={"dtype": "bf16"})
    assert process.model.dtype == "bf16" and process.train.dtype == "fp32"


def test_quantize_te_follows_quantize_when_absent():
    assert process_of(model={"quantize": True}).model.quantize_te is True
    assert process_of(model={"quantize": True, "quantize_te": False}).model.quantize_te is False
    assert process_of().model.quantize_te is False


# --- qtype names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given, ours",
    [
        ("qfloat8", "qfloat8"),
        ("float8", "qfloat8"),
        ("int8", "qint8"),
        ("uint8", "qint8"),
        ("qint8", "qint8"),
        ("uint4", "qint4"),
        ("int4", "qint4"),
        ("qint4", "qint4"),
        ("uint2", "qint2"),
        ("", "qfloat8"),
    ],
)
def test_aitk_qtype_names(given, ours):
    model = process_of(model={"qtype": given, "qtype_te": given}).model
    assert (model.qtype, model.qtype_te) == (ours, ours)


@pytest.mark.parametrize(
    "given, says",
    [
        ("uint3", "2-, 4- and 8-bit"),
        ("uint6", "2-, 4- and 8-bit"),
        ("convrot4", "ai-toolkit's own quantizers"),
        ("uint4|ostris/accuracy_recovery_adapters/x.safetensors", "'qint4'"),
    ],
)
def test_qtypes_quanto_cannot_store_are_refused(given, says):
    assert says in problems_of(model={"qtype": given})["config.process[0].model.qtype"]


def test_qint2_is_quantized_by_quanto():
    import torch

    from toolkit.models.quantize import quantize_blocks, quantized_nbytes

    block = torch.nn.Sequential(torch.nn.Linear(256, 128)).to(torch.bfloat16)
    expected = quantized_nbytes(block, "qint2")
    quantize_blocks([block], "qint2")
    assert type(block[0].weight).__name__ == "WeightQBitsTensor"
    assert expected < quantized_nbytes(torch.nn.Sequential(torch.nn.Linear(256, 128)).to(torch.bfloat16), "qint4")


# --- numbered reference keys ----------------------------------------------------------------------------


def test_control_path_n_becomes_the_control_path_list():
    dataset = {"folder_path": "/d", "control_path_2": "/b", "control_path_1": "/a", "control_path_3": None}
    assert process_of(datasets=[dataset]).datasets[0].control_paths == ["/a", "/b"]


def test_control_path_and_numbered_together_is_one_error():
    dataset = {"folder_path": "/d", "control_path": "/x", "control_path_1": "/a"}
    problems = problems_of(datasets=[dataset])
    assert list(problems) == ["config.process[0].datasets[0].control_path_1"]


def test_ctrl_img_n_in_samples_and_section():
    sample = {
        "samples": [{"prompt": "p", "ctrl_img_1": "/1.png", "ctrl_img_2": "/2.png", "ctrl_img_3": ""}],
        "ctrl_img_1": "/s.png",
    }
    process = process_of(sample=sample)
    assert process.sample.samples[0].ctrl_imgs == ["/1.png", "/2.png"]
    assert process.sample.ctrl_imgs == ["/s.png"]


def test_model_kwargs_match_target_res_sets_datasets_that_do_not():
    datasets = [{"folder_path": "/a"}, {"folder_path": "/b", "match_target_res": False}]
    process = process_of(model={"model_kwargs": {"match_target_res": True}}, datasets=datasets)
    assert [d.match_target_res for d in process.datasets] == [True, False]


def test_model_kwargs_of_other_families_are_refused():
    problems = problems_of(model={"model_kwargs": {"train_high_noise": True}})
    assert "Wan 2.2" in problems["config.process[0].model.model_kwargs.train_high_noise"]


# --- network ---------------------------------------------------------------------------------------------


def test_lokr_full_rank_is_aitk_default():
    from toolkit.config_modules import LOKR_FULL_RANK

    network = process_of(network={"type": "lokr", "linear": 32, "linear_alpha": 16}).network
    assert network.lokr_full_rank and network.adapter_rank == LOKR_FULL_RANK
    assert network.adapter_alpha / network.adapter_rank == 1.0  # ai-toolkit: alpha = rank, scale 1
    network = process_of(network={"type": "lokr", "linear": 32, "linear_alpha": 16, "lokr_full_rank": False}).network
    assert (network.adapter_rank, network.adapter_alpha) == (32, 16)
    network = process_of(network={"type": "lora", "linear": 8, "linear_alpha": 4}).network
    assert (network.adapter_rank, network.adapter_alpha) == (8, 4)  # LoRA ignores lokr_full_rank


def test_transformer_only_false_is_refused():
    assert (
        "not supported"
        in problems_of(network={"transformer_only": False})["config.process[0].network.transformer_only"]
    )
    assert process_of(network={"transformer_only": True}).network.transformer_only


# --- train keys ------------------------------------------------------------------------------------------


def test_training_seed_is_train_seed():
    raw = copy.deepcopy(BASE)
    raw["config"]["process"][0]["training_seed"] = 7
    assert parse_job_config(raw, "job.yaml").config.process[0].train.seed == 7
    raw["config"]["process"][0]["train"] = {"seed": 3}
    with pytest.raises(ConfigError, match="training_seed: another name for train.seed"):
        parse_job_config(raw, "job.yaml")


@pytest.mark.parametrize("kind", ["next_sample", "one_step", "four_step", "flux_shift"])
def test_aitk_only_timestep_types_say_what_to_use(kind):
    message = problems_of(train={"timestep_type": kind})["config.process[0].train.timestep_type"]
    assert f"ai-toolkit's timestep_type '{kind}' is not supported here" in message


def test_unet_lr_is_a_logged_noop():
    from toolkit.aitk_keys import ignored_keys

    raw = copy.deepcopy(BASE)
    raw["config"]["process"][0]["train"] = {"lr": 2e-4, "unet_lr": 5e-4}
    config = parse_job_config(raw, "job.yaml")
    assert config.config.process[0].train.lr == 2e-4
    assert "config.process[0].train.unet_lr" in dict(ignored_keys(config))


# --- YAML habits -----------------------------------------------------------------------------------------


def test_yaml_numbers_written_without_a_dot_are_floats_everywhere(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text("""
job: extension
config:
  name: t
  process:
    - type: sd_trainer
      datasets: [{folder_path: /d, caption_dropout_rate: 5e-2}]
      model: {name_or_path: x, arch: flux2}
      train:
        lr: 1e-4
        optimizer_params: {weight_decay: 1e-2, betas: [0.9, 0.999], eps: 1E-8}
        lr_scheduler: cosine
        lr_scheduler_params: {eta_min: 1e-7}
""")
    train = parse_job_config(load_raw_config(path), str(path)).config.process[0].train
    assert train.lr == 1e-4
    assert train.optimizer_params == {"weight_decay": 1e-2, "betas": [0.9, 0.999], "eps": 1e-8}
    assert train.lr_scheduler_params == {"eta_min": 1e-7}


def test_numbers_in_strings_are_numbers_in_free_form_params(tmp_path, monkeypatch):
    monkeypatch.setenv("WD", "1e-2")
    path = tmp_path / "job.yaml"
    path.write_text("""
job: extension
config:
  name: t
  process:
    - type: sd_trainer
      datasets: [{folder_path: /d}]
      model: {name_or_path: x, arch: flux2}
      train: {lr: "${LR:-3e-4}", steps: "${STEPS:-20}", optimizer_params: {weight_decay: "${WD}", amsgrad: "x"}}
""")
    train = parse_job_config(load_raw_config(path), str(path)).config.process[0].train
    assert (train.lr, train.steps) == (3e-4, 20)
    assert train.optimizer_params == {"weight_decay": 1e-2, "amsgrad": "x"}


def test_name_and_env_are_substituted_as_aitk(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_ROOT", "/mnt/data")
    path = tmp_path / "job.yaml"
    path.write_text("""
job: extension
config:
  name: my_lora
  process:
    - type: sd_trainer
      training_folder: ${DATA_ROOT}/out
      datasets: [{folder_path: "${DATA_ROOT}/[name]"}]
      model: {name_or_path: x, arch: flux2}
      sample: {prompts: ["[name] in a garden"]}
meta: {name: "[name]"}
""")
    config = parse_job_config(load_raw_config(path), str(path))
    process = config.config.process[0]
    assert process.training_folder == "/mnt/data/out" and process.datasets[0].folder_path == "/mnt/data/my_lora"
    assert process.sample.prompts == ["my_lora in a garden"] and config.meta == {"name": "my_lora"}


@pytest.mark.parametrize("suffix", [".json", ".jsonc"])
def test_json_job_files_run_like_yaml(tmp_path, suffix):
    raw = copy.deepcopy(BASE)
    raw["config"]["process"][0]["type"] = "diffusion_trainer"
    raw["config"]["process"][0]["train"] = {"lr": 1e-4}
    json_path = tmp_path / f".job_config{suffix}"
    json_path.write_text(json.dumps(raw))
    import yaml

    yaml_path = tmp_path / "job.yaml"
    yaml_path.write_text(yaml.safe_dump(raw))
    from_json = parse_job_config(load_raw_config(json_path), str(json_path))
    from_yaml = parse_job_config(load_raw_config(yaml_path), str(yaml_path))
    assert from_json.model_dump() == from_yaml.model_dump()


@pytest.mark.parametrize("train_dtype, expected", [("fp32", "float32"), ("bf16", "bfloat16")])
def test_train_dtype_is_the_dtype_the_weights_load_in(tiny, train_dtype, expected):
    """As the trainer builds its model (BaseSDTrainProcess: model_cls(cfg.model, device)), without model.dtype."""
    import torch

    from toolkit.util.get_model import get_model_class

    tiny("flux2_klein_4b")
    process = process_of(
        model={"name_or_path": "tiny:flux2_klein_4b", "arch": "flux2_klein_4b"}, train={"dtype": train_dtype}
    )
    model = get_model_class(process.model)(process.model, device="cpu")
    model.load_model()
    assert model.transformer.dtype == getattr(torch, expected)
