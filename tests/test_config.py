"""Config loading (toolkit/config.py) and the typed job configs (toolkit/config_modules/)."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import yaml

from toolkit.config import find_config, load_raw_config, parse_job_config
from toolkit.config_modules import (
    FLUX2_ARCHS,
    MODEL_ARCHS,
    ConfigError,
    DatasetConfig,
    GenerateConfig,
    JobConfig,
    ModelConfig,
    NetworkConfig,
    SampleConfig,
    TrainConfig,
    canonical_dtype,
    json_schema,
)
from toolkit.paths import ROOT


# Same keys and values as ai-toolkit's config/examples/train_lora_flux_24gb.yaml (FLUX.1-dev),
# commented-out options left out, written here by hand.
AI_TOOLKIT_FLUX1_EXAMPLE = """\
---
job: extension
config:
  name: "my_first_flux_lora_v1"
  process:
    - type: 'sd_trainer'
      training_folder: "output"
      device: cuda:0
      network:
        type: "lora"
        linear: 16
        linear_alpha: 16
      save:
        dtype: float16
        save_every: 250
        max_step_saves_to_keep: 4
        push_to_hub: false
      datasets:
        - folder_path: "/path/to/images/folder"
          caption_ext: "txt"
          caption_dropout_rate: 0.05
          shuffle_tokens: false
          cache_latents_to_disk: true
          resolution: [ 512, 768, 1024 ]
      train:
        batch_size: 1
        steps: 2000
        gradient_accumulation_steps: 1
        train_unet: true
        train_text_encoder: false
        gradient_checkpointing: true
        noise_scheduler: "flowmatch"
        optimizer: "adamw8bit"
        lr: 1e-4
        ema_config:
          use_ema: true
          ema_decay: 0.99
        dtype: bf16
      model:
        name_or_path: "black-forest-labs/FLUX.1-dev"
        is_flux: true
        quantize: true
      sample:
        sampler: "flowmatch"
        sample_every: 250
        sample_start_step: 0
        width: 1024
        height: 1024
        prompts:
          - "woman with red hair, playing chess at the park, bomb going off in the background"
          - "a woman holding a coffee cup, in a beanie, sitting at a cafe"
        neg: ""
        seed: 42
        walk_seed: true
        guidance_scale: 4
        sample_steps: 20
meta:
  name: "[name]"
  version: '1.0'
"""


def train_raw(**model) -> dict:
    """A minimal valid training job as a dict; ``model`` keys replace the default model section."""
    return {
        "job": "extension",
        "config": {
            "name": "run",
            "process": [
                {
                    "type": "sd_trainer",
                    "datasets": [{"folder_path": "/data"}],
                    "model": model or {"name_or_path": "black-forest-labs/FLUX.2-dev", "arch": "flux2"},
                }
            ],
        },
    }


def problems_of(raw: dict) -> dict[str, str]:
    with pytest.raises(ConfigError) as info:
        parse_job_config(raw, "job.yaml")
    return dict(info.value.problems)


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text))
    return path


# ----------------------------------------------------------------------- finding


@pytest.mark.parametrize("filename", ["myjob", "myjob.yaml", "myjob.yml", "myjob.json"])
def test_find_config_bare_name_in_config_dir(tmp_path, filename):
    target = tmp_path / filename
    target.write_text("{}")
    assert find_config("myjob", tmp_path) == target


def test_find_config_existing_path_wins(tmp_path, monkeypatch):
    file = tmp_path / "elsewhere.yaml"
    file.write_text("{}")
    assert find_config(str(file), tmp_path / "config") == file


def test_find_config_missing_names_what_was_tried(tmp_path):
    with pytest.raises(ConfigError) as info:
        find_config("nope", tmp_path)
    message = str(info.value)
    for tried in ("nope", "nope.yaml", "nope.yml", "nope.json"):
        assert str(tmp_path / tried) in message


# ----------------------------------------------------------------------- reading


def test_env_var_expansion_set_and_default(tmp_path, monkeypatch):
    monkeypatch.setenv("AITK_DATA", "/mnt/data")
    monkeypatch.delenv("AITK_UNSET", raising=False)
    monkeypatch.setenv("AITK_EMPTY", "")
    path = write(
        tmp_path / "job.yaml",
        """\
        job: extension
        config:
          name: run
          folder: "${AITK_DATA}/images"
          fallback: "${AITK_UNSET:-/default}"
          empty: "${AITK_EMPTY:-used}"
        """,
    )
    raw = load_raw_config(path)
    assert raw["config"]["folder"] == "/mnt/data/images"
    assert raw["config"]["fallback"] == "/default"
    assert raw["config"]["empty"] == "used"


def test_env_var_unset_without_default_names_key_path(tmp_path, monkeypatch):
    monkeypatch.delenv("AITK_MISSING", raising=False)
    path = write(
        tmp_path / "job.yaml",
        """\
        job: extension
        config:
          name: run
          process:
            - type: sd_trainer
              datasets:
                - folder_path: ${AITK_MISSING}/images
        """,
    )
    with pytest.raises(ConfigError) as info:
        load_raw_config(path)
    ((path_, message),) = info.value.problems
    assert path_ == "config.process[0].datasets[0].folder_path"
    assert "AITK_MISSING" in message
    assert "job.yaml" in str(info.value)


def test_name_substitution_and_trigger_left_alone(tmp_path):
    path = write(
        tmp_path / "job.yaml",
        """\
        job: generate
        config:
          name: fox
          process:
            - output_folder: output/[name]/images
              prompt: "[trigger] in the snow"
        meta:
          name: "[name]"
        """,
    )
    raw = load_raw_config(path)
    assert raw["meta"]["name"] == "fox"
    assert raw["config"]["process"][0]["output_folder"] == "output/fox/images"
    assert raw["config"]["process"][0]["prompt"] == "[trigger] in the snow"


def test_name_override_sets_config_name_before_substitution(tmp_path):
    path = write(tmp_path / "job.yaml", "job: extension\nconfig:\n  name: old\nmeta:\n  name: '[name]'\n")
    raw = load_raw_config(path, name_override="new")
    assert raw["config"]["name"] == "new"
    assert raw["meta"]["name"] == "new"


def test_yaml_exponent_without_dot_is_a_float(tmp_path):
    raw = load_raw_config(write(tmp_path / "job.yaml", "a: 1e-4\nb: 2E5\nc: '1e-4'\nd: 1.5e-3\n"))
    assert raw == {"a": 1e-4, "b": 2e5, "c": "1e-4", "d": 1.5e-3}
    assert yaml.safe_load("a: 1e-4") == {"a": "1e-4"}  # the stock loader is left untouched


def test_duplicate_yaml_key_is_an_error(tmp_path):
    with pytest.raises(ConfigError, match="line 3.*duplicate key 'name'"):
        load_raw_config(write(tmp_path / "job.yaml", "config:\n  name: a\n  name: b\n"))


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    with pytest.raises(ConfigError, match=r"bad\.yaml.*line 2"):
        load_raw_config(write(tmp_path / "bad.yaml", "job: extension\n  config: [\n"))


def test_top_level_must_be_a_mapping(tmp_path):
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_raw_config(write(tmp_path / "job.yaml", "- a\n- b\n"))
    with pytest.raises(ConfigError, match="empty"):
        load_raw_config(write(tmp_path / "empty.yaml", "# nothing\n"))


def test_json_config_loads_and_validates(tmp_path):
    raw = train_raw()
    raw["meta"] = {"name": "[name]"}
    path = tmp_path / "job.json"
    path.write_text(json.dumps(raw))
    config = parse_job_config(load_raw_config(path), str(path))
    assert config.meta["name"] == "run"
    assert config.config.process[0].model.arch == "flux2"


def test_duplicate_json_key_is_an_error(tmp_path):
    path = tmp_path / "job.json"
    path.write_text('{"job": "extension", "job": "generate"}')
    with pytest.raises(ConfigError, match="duplicate key 'job'"):
        load_raw_config(path)


# ---------------------------------------------------------------- ai-toolkit files


def test_ai_toolkit_flux1_example_validates_unchanged(tmp_path):
    path = write(tmp_path / "train_lora_flux_24gb.yaml", AI_TOOLKIT_FLUX1_EXAMPLE)
    config = parse_job_config(load_raw_config(path), str(path))
    process = config.config.process[0]
    assert config.job == "extension" and config.meta == {"name": "my_first_flux_lora_v1", "version": "1.0"}
    assert process.type == "sd_trainer"
    assert process.model.arch == "flux" and process.model.is_flux and not process.model.is_flux2
    assert process.model.quantize is True
    assert process.train.lr == pytest.approx(1e-4)
    assert process.train.ema_config.use_ema and process.train.ema_config.ema_decay == 0.99
    assert process.datasets[0].resolutions == [512, 768, 1024]
    assert process.network.linear == 16 and process.network.linear_alpha == 16
    assert process.sample.guidance_scale == 4.0 and process.sample.sample_steps == 20
    assert len(process.sample.sample_items()) == 2


@pytest.mark.parametrize("path", sorted((ROOT / "config" / "examples").glob("*.y*ml")), ids=lambda p: p.name)
def test_shipped_examples_validate(path):
    parse_job_config(load_raw_config(path), str(path))


def test_ai_toolkit_older_key_names_are_accepted():
    raw = train_raw()
    process = raw["config"]["process"][0]
    process["train"] = {"gradient_accumulation": 4, "optimizer": "AdamW8bit"}
    process["network"] = {"rank": 8, "alpha": 4}
    process["datasets"][0]["caption_ext"] = ".txt"
    process = parse_job_config(raw, "job.yaml").config.process[0]
    assert process.train.gradient_accumulation_steps == 4
    assert process.train.optimizer == "adamw8bit"
    assert (process.network.linear, process.network.linear_alpha) == (8, 4)
    assert process.datasets[0].caption_ext == "txt"


def test_alias_and_name_together_is_one_error():
    raw = train_raw()
    raw["config"]["process"][0]["train"] = {"gradient_accumulation": 2, "gradient_accumulation_steps": 2}
    problems = problems_of(raw)
    assert list(problems) == ["config.process[0].train.gradient_accumulation"]
    assert "another name for 'gradient_accumulation_steps'" in problems["config.process[0].train.gradient_accumulation"]


def test_known_unsupported_ai_toolkit_key_says_what_to_write():
    raw = train_raw()
    raw["config"]["process"][0]["train"] = {"linear_timesteps": True}
    raw["config"]["process"][0]["model"]["is_xl"] = True
    problems = problems_of(raw)
    assert "timestep_type" in problems["config.process[0].train.linear_timesteps"]
    assert "set arch" in problems["config.process[0].model.is_xl"]


def test_empty_sections_take_defaults():
    raw = train_raw()
    raw["config"]["process"][0].update(sample=None, train=None, save=None, logging=None)
    process = parse_job_config(raw, "job.yaml").config.process[0]
    assert process.sample == SampleConfig() and process.train == TrainConfig()


# ----------------------------------------------------------------- model / arch


@pytest.mark.parametrize(("flags", "arch"), [({"is_flux": True}, "flux"), ({"is_flux2": True}, "flux2")])
def test_legacy_flags_map_to_arch(flags, arch):
    model = ModelConfig(name_or_path="x", **flags)
    assert model.arch == arch


def test_is_flux2_flag_agrees_with_any_flux2_family_arch():
    assert ModelConfig(name_or_path="x", arch="flux2_klein_4b", is_flux2=True).arch == "flux2_klein_4b"
    assert ModelConfig(name_or_path="x", arch="flux", is_flux=True, is_flux2=False).arch == "flux"


@pytest.mark.parametrize("arch", MODEL_ARCHS)
def test_is_flux_and_is_flux2_are_derived_from_arch(arch):
    model = ModelConfig(name_or_path="x", arch=arch)
    assert model.is_flux == (arch == "flux")
    assert model.is_flux2 == (arch in FLUX2_ARCHS)
    assert model.is_flux2 == arch.startswith("flux2")


def test_model_dump_has_arch_and_no_legacy_flags():
    model = ModelConfig(name_or_path="x", is_flux=True)
    dumped = model.model_dump()
    assert dumped["arch"] == "flux"
    assert "is_flux" not in dumped and "is_flux2" not in dumped
    assert ModelConfig(**dumped) == model  # a dump validates back to the same config
    assert "is_flux" not in ModelConfig.model_fields


def test_arch_missing_is_an_error_listing_choices():
    problems = problems_of(train_raw(name_or_path="x"))
    message = problems["config.process[0].model.arch"]
    assert message.startswith("is required")
    assert all(repr(arch) in message for arch in MODEL_ARCHS)


def test_arch_missing_reads_as_a_sentence():
    with pytest.raises(ConfigError) as info:
        parse_job_config(train_raw(name_or_path="x"), "job.yaml")
    assert "config.process[0].model.arch is required: one of 'flux', 'flux2'" in str(info.value)


@pytest.mark.parametrize(
    ("model", "path", "named"),
    [
        ({"is_flux": True, "arch": "flux2"}, "is_flux", ["is_flux", "arch"]),
        ({"is_flux2": True, "arch": "flux"}, "is_flux2", ["is_flux2", "arch"]),
        ({"is_flux": True, "is_flux2": True}, "is_flux2", ["is_flux", "is_flux2"]),
    ],
)
def test_legacy_flag_conflicts_are_errors(model, path, named):
    problems = problems_of(train_raw(name_or_path="x", **model))
    message = problems[f"config.process[0].model.{path}"]
    assert all(key in message for key in named)
    assert "config.process[0].model.arch" not in problems  # a conflict, not also "missing"


def test_legacy_flag_must_be_boolean():
    problems = problems_of(train_raw(name_or_path="x", is_flux="maybe"))
    assert "true or false" in problems["config.process[0].model.is_flux"]


def test_unknown_key_suggests_close_match():
    problems = problems_of(train_raw(name_or_path="x", arch="flux", quantise=True))
    message = problems["config.process[0].model.quantise"]
    assert "unknown key 'quantise'" in message and "did you mean 'quantize'?" in message


def test_unknown_key_without_close_match_lists_valid_keys():
    problems = problems_of(train_raw(name_or_path="x", arch="flux", zzz=1))
    assert "name_or_path" in problems["config.process[0].model.zzz"]


def test_legacy_flags_are_did_you_mean_candidates():
    problems = problems_of(train_raw(name_or_path="x", is_flux_2=True))
    assert "did you mean 'is_flux2'?" in problems["config.process[0].model.is_flux_2"]


def test_invalid_literal_suggests_close_match():
    problems = problems_of(train_raw(name_or_path="x", arch="flux2_klien_4b", qtype="qint9"))
    assert "did you mean 'flux2_klein_4b'?" in problems["config.process[0].model.arch"]
    assert "'qint8'" in problems["config.process[0].model.qtype"]


def test_wrong_type_says_expected_type_and_value():
    raw = train_raw()
    raw["config"]["process"][0]["train"] = {"steps": "many", "gradient_checkpointing": "sometimes"}
    raw["config"]["process"][0]["datasets"] = {"folder_path": "/d"}
    problems = problems_of(raw)
    assert problems["config.process[0].train.steps"] == "expected an integer, got 'many'"
    assert problems["config.process[0].train.gradient_checkpointing"] == "expected true or false, got 'sometimes'"
    assert problems["config.process[0].datasets"] == "expected a list of mappings, got a mapping"


@pytest.mark.parametrize(
    ("section", "key", "value", "bound"),
    [
        ("model", "layer_offloading_transformer_percent", 1.5, "<= 1"),
        ("train", "batch_size", 0, ">= 1"),
        ("train", "lr", 0, "> 0"),
        ("sample", "width", 8, ">= 16"),
    ],
)
def test_out_of_range_values(section, key, value, bound):
    raw = train_raw()
    process = raw["config"]["process"][0]
    process.setdefault(section, {})[key] = value
    message = problems_of(raw)[f"config.process[0].{section}.{key}"]
    assert bound in message and str(value) in message


def test_union_value_reports_once_or_at_the_element():
    raw = train_raw()
    raw["config"]["process"][0]["datasets"] = [
        {"folder_path": "/a", "resolution": "big"},
        {"folder_path": "/b", "resolution": [512, "x"]},
        {"folder_path": "/c", "resolution": 8},
    ]
    problems = problems_of(raw)
    assert problems == {
        "config.process[0].datasets[0].resolution": "expected an integer or a list of integers, got 'big'",
        "config.process[0].datasets[1].resolution[1]": "expected an integer, got 'x'",
        "config.process[0].datasets[2].resolution": "must be >= 16, got 8",
    }


def test_several_problems_in_one_error():
    raw = train_raw(name_or_path="x", quantise=True)  # unknown key + missing arch in one section
    process = raw["config"]["process"][0]
    process["train"] = {"optimizer": "adam_w"}
    process["datasets"] = [{"caption_dropout_rate": 2}]
    raw["extra"] = 1
    with pytest.raises(ConfigError) as info:
        parse_job_config(raw, "my_job.yaml")
    paths = [path for path, _ in info.value.problems]
    assert set(paths) == {
        "config.process[0].model.quantise",
        "config.process[0].model.arch",
        "config.process[0].train.optimizer",
        "config.process[0].datasets[0].folder_path",
        "config.process[0].datasets[0].caption_dropout_rate",
        "extra",
    }
    text = str(info.value)
    assert text.splitlines()[0] == "Invalid config my_job.yaml (6 problems):"
    assert all(path in text for path in paths)


def test_unknown_process_type_lists_known_types():
    raw = train_raw()
    raw["config"]["process"][0]["type"] = "sd_trainr"
    message = problems_of(raw)["config.process[0].type"]
    assert "'sd_trainer'" in message and "'to_folder'" in message and "did you mean 'sd_trainer'" in message


@pytest.mark.parametrize("alias", ["diffusion_trainer", "ui_trainer"])
def test_ai_toolkit_ui_process_types_are_sd_trainer(alias):
    raw = train_raw()
    raw["config"]["process"][0]["type"] = alias
    assert parse_job_config(raw, "job.yaml").config.process[0].type == "sd_trainer"
    assert raw["config"]["process"][0]["type"] == alias  # the caller's mapping is not changed
    raw["job"] = "generate"
    assert "runs only type: to_folder" in problems_of(raw)["job"]


def test_missing_process_type():
    raw = train_raw()
    del raw["config"]["process"][0]["type"]
    assert problems_of(raw)["config.process[0].type"].startswith("is required")


def test_job_kind_must_match_process_types():
    raw = train_raw()
    raw["job"] = "generate"
    message = problems_of(raw)["job"]
    assert "to_folder" in message and "config.process[0]" in message and "job: extension" in message


def test_process_list_must_not_be_empty():
    raw = train_raw()
    raw["config"]["process"] = []
    assert "at least 1" in problems_of(raw)["config.process"]


def test_missing_required_sections():
    problems = problems_of({"config": {"process": [{"type": "sd_trainer"}]}})
    for path in ("job", "config.name", "config.process[0].datasets", "config.process[0].model"):
        assert problems[path] == "is required"


# ------------------------------------------------------------------ generate


def generate_raw(**generate) -> dict:
    return {
        "job": "generate",
        "config": {
            "name": "gen",
            "process": [
                {
                    "type": "to_folder",
                    "output_folder": "out",
                    "generate": generate,
                    "model": {"name_or_path": "black-forest-labs/FLUX.2-klein-base-4B", "arch": "flux2_klein_4b"},
                }
            ],
        },
    }


def test_generate_with_prompts_or_prompt_file():
    config = parse_job_config(generate_raw(prompts=["a fox"]), "g.yaml")
    generate = config.config.process[0].generate
    assert generate.prompts == ["a fox"] and generate.seed == -1 and generate.suffix == ".png"
    assert (
        parse_job_config(generate_raw(prompt_file="p.txt"), "g.yaml").config.process[0].generate.prompt_file == "p.txt"
    )


def test_generate_needs_exactly_one_prompt_source():
    assert "no prompt" in problems_of(generate_raw())["config.process[0].generate.prompts"]
    both = problems_of(generate_raw(prompts=["a"], prompt_file="p.txt"))
    assert "not both" in both["config.process[0].generate.prompt_file"]


def test_generate_ai_toolkit_prompt_forms():
    # ai-toolkit: prompts may be a path string; prompt_file: false meant "no .txt beside images".
    generate = GenerateConfig(prompts="prompts.txt", prompt_file=False)
    assert generate.prompt_file == "prompts.txt" and generate.prompts == []
    assert GenerateConfig(prompts=["a"], prompt_file=False, ext="jpg").suffix == ".jpg"
    with pytest.raises(Exception, match="prompt_file"):
        GenerateConfig(prompts=["a"], prompt_file=True)


# -------------------------------------------------------------------- sections


def test_sample_items_resolve_defaults_and_walk_seed():
    sample = SampleConfig(
        seed=10, width=768, samples=[{"prompt": "a"}, {"prompt": "b", "seed": 3, "width": 512}, {"prompt": "c"}]
    )
    items = sample.sample_items()
    assert [(i.prompt, i.seed, i.width, i.height) for i in items] == [
        ("a", 10, 768, 1024),
        ("b", 3, 512, 1024),
        ("c", 12, 768, 1024),
    ]
    assert [i.seed for i in SampleConfig(prompts=["a", "b"], walk_seed=False, seed=5).sample_items()] == [5, 5]
    # Unset: left to the architecture's sampling defaults (model.sample_defaults()), not filled in here.
    assert all(i.sample_steps is None and i.guidance_scale is None for i in items)
    set_here = SampleConfig(prompts=["a"], sample_steps=7, guidance_scale=2.5).sample_items()
    assert (set_here[0].sample_steps, set_here[0].guidance_scale) == (7, 2.5)


def test_sample_prompts_and_samples_together_is_an_error():
    with pytest.raises(Exception, match="not both"):
        SampleConfig(prompts=["a"], samples=[{"prompt": "b"}])


def test_push_to_hub_needs_repo_id():
    raw = train_raw()
    raw["config"]["process"][0]["save"] = {"push_to_hub": True}
    assert "hf_repo_id" in problems_of(raw)["config.process[0].save.hf_repo_id"]


def test_dataset_helpers():
    data = DatasetConfig(folder_path="/d", resolution=1024, control_path="")
    assert data.resolutions == [1024] and data.control_path is None and data.control_paths == []
    assert DatasetConfig(folder_path="/d", control_path=["/a", "/b"]).control_paths == ["/a", "/b"]
    assert data.match_target_res is False


def test_ctrl_img_is_a_path_or_a_list():
    sample = SampleConfig(prompts=["a", "b"], ctrl_img="/r.png")
    assert [item.ctrl_imgs for item in sample.sample_items()] == [["/r.png"], ["/r.png"]]
    own = SampleConfig(ctrl_img="/r.png", samples=[{"prompt": "a", "ctrl_img": ["/x.png", "/y.png"]}, {"prompt": "b"}])
    assert [item.ctrl_imgs for item in own.sample_items()] == [["/x.png", "/y.png"], ["/r.png"]]
    assert SampleConfig(prompts=["a"], ctrl_img="").ctrl_img is None and SampleConfig(prompts=["a"]).ctrl_imgs == []


def test_defaults():
    model = ModelConfig(name_or_path="x", arch="flux2")
    assert (model.dtype, model.quantize, model.qtype, model.quantize_te, model.layer_offloading) == (
        "bf16",
        False,
        "qfloat8",
        False,
        False,
    )
    assert NetworkConfig().type == "lora" and NetworkConfig().linear == 16
    train = TrainConfig()
    assert (train.optimizer, train.timestep_type, train.noise_scheduler) == (
        "adamw8bit",
        None,
        "flowmatch",
    )  # None: the architecture picks
    data = DatasetConfig(folder_path="/d")
    assert data.resolution == [512, 768, 1024] and data.caption_dropout_rate == 0.05
    assert canonical_dtype("bf16") == "bfloat16" and canonical_dtype("fp32") == "float32"


def test_layer_offloading_accepts_auto():
    assert ModelConfig(name_or_path="x", arch="flux", layer_offloading="auto").layer_offloading == "auto"
    raw = train_raw(name_or_path="x", arch="flux", layer_offloading="sometimes")
    assert "'auto'" in problems_of(raw)["config.process[0].model.layer_offloading"]


def test_json_schema_for_uis():
    schema = json_schema()
    assert schema["title"] == "JobConfig"
    model = schema["$defs"]["ModelConfig"]
    assert model["additionalProperties"] is False
    assert set(MODEL_ARCHS) <= set(json.dumps(model["properties"]["arch"]).replace('"', " ").split())
    assert schema["$defs"]["TrainConfig"]["properties"]["optimizer"]["default"] == "adamw8bit"
    assert JobConfig.model_json_schema() == schema


def test_config_error_carries_problems_and_pickles():
    error = ConfigError([("config.name", "is required"), ("job", "bad")], source="a.yaml")
    assert error.problems == [("config.name", "is required"), ("job", "bad")]
    assert "a.yaml" in str(error) and "config.name is required" in str(error) and "job: bad" in str(error)
    again = pickle.loads(pickle.dumps(error))
    assert again.problems == error.problems and str(again) == str(error)
    assert ConfigError("plain").problems == [("", "plain")]


def test_validation_does_not_import_torch(tmp_path):
    path = write(tmp_path / "job.yaml", AI_TOOLKIT_FLUX1_EXAMPLE)
    code = textwrap.dedent(
        f"""
        import sys
        from toolkit.config import load_raw_config, parse_job_config
        parse_job_config(load_raw_config({str(path)!r}), "job.yaml")
        heavy = [m for m in ("torch", "diffusers", "transformers") if m in sys.modules]
        assert not heavy, heavy
        """
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True)


def test_locon_is_lora_on_flux():
    assert NetworkConfig(type="LoCon").type == "lora"


def test_resolved_config_dump_validates_back(tmp_path):
    config = parse_job_config(load_raw_config(write(tmp_path / "job.yaml", AI_TOOLKIT_FLUX1_EXAMPLE)), "job.yaml")
    dumped = yaml.safe_dump(config.model_dump(mode="json"))
    again = parse_job_config(yaml.safe_load(dumped), "resolved.yaml")
    assert again == config
    assert "is_flux" not in dumped


def test_compile_keys_keep_ai_toolkit_meanings_and_refuse_what_cannot_work():
    from pydantic import ValidationError

    from toolkit.config_modules import ModelConfig

    config = ModelConfig(
        name_or_path="x",
        arch="flux2",
        compile=True,
        block_compile=True,
        compile_mode="max-autotune-no-cudagraphs",
        compile_dynamic=True,
        cache_size_limit=16,
    )
    assert config.compile and config.compile_dynamic is True and config.compile_fullgraph is False
    assert ModelConfig(name_or_path="x", arch="flux2").compile_dynamic is None  # automatic dynamic shapes
    for bad, message in (
        ({"block_compile": True}, "does nothing without compile: true"),
        ({"compile": True, "compile_mode": "reduce-overhead"}, "captures CUDA graphs"),
        ({"compile": True, "compile_mode": "max-autotune"}, "max-autotune-no-cudagraphs"),
    ):
        with pytest.raises(ValidationError, match=message):
            ModelConfig(name_or_path="x", arch="flux2", **bad)
