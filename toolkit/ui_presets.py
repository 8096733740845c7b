"""The model presets of the Gradio app (flux_train_ui.py) and the job configs built from them.

A job starts as a preset's whole config (``toolkit.ui_schema.presets()``, the shipped examples) with
only the person's fields changed (:func:`build_job_config`); the memory choices are derived from the
preset's ``model`` section (:func:`vram_options`). Edit presets (a dataset with ``control_path``)
train on the uploaded targets and their uploaded references: the job's ``control_path`` is the
dataset's ``control/`` folder and ``sample.ctrl_img`` the first target's reference
(``toolkit/ui_datasets.py`` names those files).
"""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path

import yaml

from toolkit.config import parse_job_config
from toolkit.ui_datasets import CONTROL_DIR, DATASET_DIR
from toolkit.ui_jobs import ROOT, JobError, resolve_path
from toolkit.ui_schema import presets


def form_presets() -> tuple[list[dict], dict[str, str]]:
    """(the presets the form can fill, {label: why not} for the others).

    The form uploads one folder of targets with captions and, for edit presets, one reference per
    target. A preset whose targets take several references (a list of control folders) runs with run.py.
    """
    usable, skipped = [], {}
    for preset in presets():
        control = [d.get("control_path") for d in _process(preset["config"]).get("datasets") or []]
        if any(isinstance(c, list) and len(c) > 1 for c in control):
            skipped[preset["label"]] = (f"takes several reference images per target; the app uploads one: edit "
                                        f"{preset['file']} and run it with run.py")
        else:
            usable.append(preset)
    return usable, skipped


def is_edit(preset: dict) -> bool:
    """The preset trains an edit LoRA: its dataset has ``control_path`` (reference images)."""
    datasets = _process(preset["config"]).get("datasets") or []
    return bool(datasets and datasets[0].get("control_path"))


def preset_by_label(label: str) -> dict:
    usable = form_presets()[0]
    for preset in usable:
        if preset["label"] == label:
            return preset
    raise JobError(f"unknown model preset '{label}'; known: {', '.join(p['label'] for p in usable)}")


def _process(raw: dict) -> dict:
    return raw["config"]["process"][0]


def vram_options(preset: dict) -> dict[str, dict]:
    """Memory presets for one model preset: label -> overrides of its ``model`` section
    (plus ``device`` for the tiny model). The first entry is the preset itself.

    Derived from the preset's own settings, never from a per-model table: the shipped examples
    are sized for 24 GB (file name ``*_24gb``), so for a bigger card quantization is relaxed
    one step at a time (int4 -> float8 -> bf16, each roughly doubling the transformer's size),
    and for a smaller one the text encoder moves to the CPU.
    """
    process = typed_process(preset)
    model = process.model
    if process.device == "cpu":
        return {"CPU (tiny demo)": {}, "GPU cuda:0 (tiny demo)": {"device": "cuda:0"}}
    size = re.search(r"_(\d+)gb$", preset["id"])
    gb = int(size.group(1)) if size else None
    options = {f"{gb} GB (example)" if gb else "As the example": {}}
    if not model.low_vram:
        options["Less VRAM: text encoder on the CPU (needs more RAM)"] = {"low_vram": True}
    bf16_gb = 2 * gb if gb else None
    if model.quantize and model.qtype == "qint4" and gb:
        options[f"{2 * gb} GB (qfloat8 transformer)"] = {"qtype": "qfloat8"}
        bf16_gb = 4 * gb
    if model.quantize or model.quantize_te or model.low_vram:
        label = f"{bf16_gb} GB+ (no quantization)" if bf16_gb else "No quantization"
        options[label] = {"quantize": False, "quantize_te": False, "low_vram": False}
    return options


# ---------------------------------------------------------------------------- building


@dataclasses.dataclass
class UserFields:
    """What the person sets in the app; everything else comes from the preset unchanged.

    No defaults here: :meth:`from_preset` fills the form from the preset's typed config, so each
    default stays where it lives (the example file, else the config schema).
    """

    name: str
    trigger_word: str
    default_caption: str
    steps: int
    lr: float
    rank: int
    resolutions: list[int]
    sample_every: int
    sample_prompts: list[str]
    vram: str

    @classmethod
    def from_preset(cls, preset: dict, name: str | None = None) -> "UserFields":
        """The form's initial values: the preset's own."""
        process = typed_process(preset)
        return cls(
            name=name or preset["config"]["config"]["name"],
            trigger_word=process.trigger_word or "",
            default_caption=process.datasets[0].default_caption or "",
            steps=process.train.steps,
            lr=process.train.lr,
            rank=process.network.linear,
            resolutions=process.datasets[0].resolutions,
            sample_every=process.sample.sample_every,
            sample_prompts=[item.prompt for item in process.sample.sample_items()],
            vram=next(iter(vram_options(preset))),
        )


def typed_process(preset: dict):
    """The preset's training process as the typed config (schema defaults filled in)."""
    return parse_job_config(copy.deepcopy(preset["config"]), preset["file"]).config.process[0]


def parse_resolutions(text: str) -> list[int]:
    """``"512, 768 1024"`` -> ``[512, 768, 1024]``; a clear error for anything else."""
    parts = [p for p in re.split(r"[,\s]+", str(text).strip()) if p]
    if not parts or not all(p.isdigit() for p in parts):
        raise JobError(f"resolutions: write whole numbers separated by commas (e.g. 512, 768, 1024), got '{text}'")
    return [int(p) for p in parts]


def _section(raw: dict, key: str) -> dict:
    """``raw[key]`` as a dict to edit (an absent or empty section means the schema defaults)."""
    if not isinstance(raw.get(key), dict):
        raw[key] = {}
    return raw[key]


def build_job_config(preset: dict, fields: UserFields, training_folder: str | None = None,
                     sample_reference: str | None = None, root: Path = ROOT) -> dict:
    """The preset's config with only the person's fields changed.

    The dataset is ``<training_folder>/[name]/dataset`` (run.py substitutes ``[name]``), where the
    app writes the uploaded images. ``training_folder`` overrides the preset's (an app option).
    Sample prompts equal to the preset's leave its ``sample`` section as it is.

    Edit presets: ``control_path`` is the dataset's ``control/`` folder, where the app writes the
    references, and ``sample_reference`` (a file name in it, :func:`toolkit.ui_datasets.first_reference`)
    becomes ``sample.ctrl_img`` as an absolute path; without one the preset's ``ctrl_img`` stays.
    """
    typed = typed_process(preset)
    raw = copy.deepcopy(preset["config"])
    raw["config"]["name"] = fields.name
    process = _process(raw)
    if training_folder is not None:
        process["training_folder"] = training_folder
    folder = training_folder if training_folder is not None else typed.training_folder
    process["trigger_word"] = fields.trigger_word.strip() or None
    dataset = process["datasets"][0]
    process["datasets"] = [dataset]  # one folder: the uploaded images
    dataset["folder_path"] = f"{folder.rstrip('/')}/[name]/{DATASET_DIR}"
    dataset.pop("default_caption", None)
    if fields.default_caption.strip():
        dataset["default_caption"] = fields.default_caption.strip()
    dataset["resolution"] = [int(r) for r in fields.resolutions]
    if is_edit(preset):
        dataset["control_path"] = f"{dataset['folder_path']}/{CONTROL_DIR}"
    train = _section(process, "train")
    train["steps"], train["lr"] = int(fields.steps), float(fields.lr)
    network = _section(process, "network")
    rank_key = "rank" if "rank" in network else "linear"
    alpha_key = "alpha" if "alpha" in network else "linear_alpha"
    alpha = typed.network.linear_alpha * int(fields.rank) / typed.network.linear  # keep the preset's alpha/rank
    network[rank_key], network[alpha_key] = int(fields.rank), int(alpha) if float(alpha).is_integer() else alpha
    sample = _section(process, "sample")
    sample["sample_every"] = int(fields.sample_every)
    prompts = [p.strip() for p in fields.sample_prompts if p.strip()]
    if prompts != [item.prompt for item in typed.sample.sample_items()]:
        sample.pop("samples", None)
        sample["prompts"] = prompts
    if is_edit(preset) and sample_reference:
        sample["ctrl_img"] = str(resolve_path(folder, root) / "[name]" / DATASET_DIR / CONTROL_DIR / sample_reference)
    options = vram_options(preset)
    if fields.vram not in options:
        raise JobError(f"unknown memory preset '{fields.vram}' for {preset['label']}; "
                       f"choose one of: {', '.join(options)}")
    for key, value in options[fields.vram].items():
        (process if key == "device" else process["model"])[key] = value
    return raw


def to_yaml(raw: dict, preset: dict | None = None) -> str:
    header = "# Written by flux_train_ui.py"
    if preset is not None:
        header += f" from {preset['file']} ({preset['label']})"
    header += ". This text is what runs: edit it freely.\n"
    return header + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True, width=120)
