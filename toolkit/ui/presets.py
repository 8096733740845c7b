"""The model presets of the Gradio app (flux_train_ui.py) and the job configs built from them.

A job starts as a preset's whole config (``toolkit.ui.schema.presets()``, the shipped examples) with
only the person's fields changed (:func:`build_job_config`); the memory choices are derived from the
preset's ``model`` section (:func:`vram_options`). Edit presets (a dataset with ``control_path``)
train on the uploaded targets and their uploaded references: the job's ``control_path`` is the
dataset's ``control/`` folder and ``sample.ctrl_img`` the first target's reference
(``toolkit/ui/datasets.py`` names those files).
"""

from __future__ import annotations

import copy
import dataclasses
import json
import re
import sys
from pathlib import Path

import yaml

from toolkit.config import parse_job_config
from toolkit.ui.datasets import CONTROL_DIR, DATASET_DIR
from toolkit.ui.jobs import ROOT, JobError, resolve_path
from toolkit.ui.schema import presets


def form_presets() -> tuple[list[dict], dict[str, str]]:
    """(the presets the form can fill, {label: why not} for the others).

    The form uploads one folder of targets with captions and, for edit presets, one reference per
    target. A preset whose targets take several references (a list of control folders) runs with run.py.
    """
    usable, skipped = [], {}
    for preset in presets():
        control = [d.get("control_path") for d in _process(preset["config"]).get("datasets") or []]
        if any(isinstance(c, list) and len(c) > 1 for c in control):
            skipped[preset["label"]] = (
                f"takes several reference images per target; the app uploads one: edit "
                f"{preset['file']} and run it with run.py"
            )
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


def build_job_config(
    preset: dict,
    fields: UserFields,
    training_folder: str | None = None,
    sample_reference: str | None = None,
    root: Path = ROOT,
) -> dict:
    """The Gradio form's job: the preset's config with only the person's fields changed (:func:`apply_form`).

    The dataset is ``<training_folder>/[name]/dataset`` (run.py substitutes ``[name]``), where the
    app writes the uploaded images. ``training_folder`` overrides the preset's (an app option).
    Sample prompts equal to the preset's leave its ``sample`` section as it is.

    Edit presets: ``control_path`` is the dataset's ``control/`` folder, where the app writes the
    references, and ``sample_reference`` (a file name in it, :func:`toolkit.ui.datasets.first_reference`)
    becomes ``sample.ctrl_img`` as an absolute path; without one the preset's ``ctrl_img`` stays.
    """
    typed = typed_process(preset)
    options = vram_options(preset)
    if fields.vram not in options:
        raise JobError(
            f"unknown memory preset '{fields.vram}' for {preset['label']}; choose one of: {', '.join(options)}"
        )
    process = _process(preset["config"])
    folder = training_folder if training_folder is not None else typed.training_folder
    values: dict = {
        "train.steps": int(fields.steps),
        "train.lr": float(fields.lr),
        "sample.sample_every": int(fields.sample_every),
    }
    if training_folder is not None:
        values["training_folder"] = training_folder
    # text fields: only a change is written (an empty one removes the key: the trainer's default)
    for path, text, current in [
        ("trigger_word", fields.trigger_word, process.get("trigger_word")),
        (
            "datasets.default_caption",
            fields.default_caption,
            (process.get("datasets") or [{}])[0].get("default_caption"),
        ),
    ]:
        if (text.strip() or None) != current:
            values[path] = text.strip() or None
    network = process.get("network") or {}
    rank_key = "rank" if "rank" in network else "linear"
    alpha_key = "alpha" if "alpha" in network else "linear_alpha"
    alpha = typed.network.linear_alpha * int(fields.rank) / typed.network.linear  # keep the preset's alpha/rank
    values[f"network.{rank_key}"] = int(fields.rank)
    values[f"network.{alpha_key}"] = int(alpha) if float(alpha).is_integer() else alpha
    for key, value in options[fields.vram].items():
        values[key if key == "device" else f"model.{key}"] = value
    prompts = [p.strip() for p in fields.sample_prompts if p.strip()]
    reference = None
    if sample_reference:
        reference = str(resolve_path(folder, root) / "[name]" / DATASET_DIR / CONTROL_DIR / sample_reference)
    return apply_form(
        preset,
        FormFields(
            name=fields.name,
            values=values,
            datasets=[f"{folder.rstrip('/')}/[name]/{DATASET_DIR}"],
            resolutions=[int(r) for r in fields.resolutions],
            prompts=None if prompts == [item.prompt for item in typed.sample.sample_items()] else prompts,
            sample_reference=reference,
        ),
    )


# ---------------------------------------------------------------------------- the one builder


@dataclasses.dataclass
class FormFields:
    """A job form of either UI (the Gradio app, the Next.js UI through ``python -m toolkit.ui.presets
    build``); everything it does not name comes from the preset unchanged.

    ``values``: settings inside ``config.process[0]`` by dotted path (``train.steps``); a path through
    the dataset list (``datasets.cache_latents_to_disk``) sets every dataset; ``None`` removes the key
    so the trainer's default applies. ``datasets``: dataset folders, each with the preset's first
    dataset's settings (``None`` keeps the preset's datasets). ``resolutions``: every dataset's buckets.
    ``prompts``: replace the preset's sample prompts (and its ``samples:`` list, which would win).
    ``sample_reference``: edit presets only, the image the samples edit (``sample.ctrl_img``).
    """

    name: str
    values: dict = dataclasses.field(default_factory=dict)
    datasets: list[str] | None = None
    resolutions: list[int] | None = None
    prompts: list[str] | None = None
    sample_reference: str | None = None

    @classmethod
    def from_json(cls, data: object) -> FormFields:
        """The form as the Next.js server sends it; unknown keys and wrong types are errors."""
        if not isinstance(data, dict):
            raise JobError("the form must be a JSON object")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known - {"preset"})
        if unknown:
            raise JobError(f"unknown form keys {unknown}; known: {sorted(known | {'preset'})}")
        checks = {
            "name": lambda v: isinstance(v, str) and v != "",
            "values": lambda v: isinstance(v, dict),
            "datasets": _list_of(str),
            "resolutions": _list_of(int),
            "prompts": _list_of(str),
            "sample_reference": lambda v: v is None or isinstance(v, str),
        }
        for key, ok in checks.items():
            if key in data and not ok(data[key]):
                raise JobError(f"form key '{key}' has the wrong type: {data[key]!r}")
        if "name" not in data:
            raise JobError("the form needs a 'name'")
        return cls(**{k: v for k, v in data.items() if k in known})


def _list_of(kind: type):
    return lambda v: (
        v is None or (isinstance(v, list) and all(isinstance(x, kind) and not isinstance(x, bool) for x in v))
    )


def set_in(target: dict, path: str, value) -> None:
    """Sets ``a.b`` inside ``target`` (creating sections on the way; a list sets every entry's);
    ``None`` removes the key."""
    head, _, rest = path.partition(".")
    if not rest:
        if value is None:
            target.pop(head, None)
        else:
            target[head] = copy.deepcopy(value)
        return
    child = target.get(head)
    if isinstance(child, list):
        for entry in child:
            if isinstance(entry, dict):
                set_in(entry, rest, value)
        return
    if not isinstance(child, dict):
        if value is None:
            return
        child = target[head] = {}
    set_in(child, rest, value)


def apply_form(preset: dict, form: FormFields) -> dict:
    """The preset's whole config with the form applied (both UIs build jobs here, nowhere else).

    Edit presets (:func:`is_edit`: the dataset has a non-empty ``control_path``; ``""`` or ``[]``
    means no references, as ai-toolkit's UI writes it) get each dataset's ``control/`` folder as its
    ``control_path``, and ``sample_reference`` as ``sample.ctrl_img``; ``values`` apply after both.
    """
    raw = copy.deepcopy(preset["config"])
    raw.setdefault("config", {})["name"] = form.name
    process = _process(raw)
    edit = is_edit(preset)
    if form.datasets is not None:
        template = (process.get("datasets") or [{}])[0]
        process["datasets"] = []
        for folder in form.datasets:
            dataset = {**copy.deepcopy(template), "folder_path": folder}
            if edit:
                dataset["control_path"] = f"{folder.rstrip('/')}/{CONTROL_DIR}"
            process["datasets"].append(dataset)
    if edit and form.sample_reference:
        _section(process, "sample")["ctrl_img"] = form.sample_reference
    for path, value in form.values.items():
        set_in(process, path, value)
    if form.resolutions:
        for dataset in process.get("datasets") or []:
            dataset["resolution"] = list(form.resolutions)
    if form.prompts is not None:
        sample = _section(process, "sample")
        sample.pop("samples", None)  # `samples:` would take precedence over the prompts typed in the form
        sample["prompts"] = list(form.prompts)
    return raw


def build_from_json(data: object) -> dict:
    """``{"preset": <id>, ...FormFields}`` -> ``{"config": <job config>, "edit": bool}``."""
    form = FormFields.from_json(data)
    wanted = data.get("preset") if isinstance(data, dict) else None
    preset = next((p for p in presets() if p["id"] == wanted), None)
    if preset is None:
        raise JobError(f"unknown preset {wanted!r}; known: {', '.join(p['id'] for p in presets())}")
    return {"config": apply_form(preset, form), "edit": is_edit(preset)}


def main(argv: list[str]) -> int:
    """``python -m toolkit.ui.presets build < form.json``: the job config as JSON on stdout, or
    ``{"error": message}`` and exit 1."""
    if argv != ["build"]:
        print("usage: python -m toolkit.ui.presets build < form.json", file=sys.stderr)
        return 2
    try:
        print(json.dumps(build_from_json(json.load(sys.stdin))))
    except (JobError, json.JSONDecodeError) as exc:
        print(json.dumps({"error": str(exc)}))
        return 1
    return 0


def to_yaml(raw: dict, preset: dict | None = None) -> str:
    header = "# Written by flux_train_ui.py"
    if preset is not None:
        header += f" from {preset['file']} ({preset['label']})"
    header += ". This text is what runs: edit it freely.\n"
    return header + yaml.safe_dump(raw, sort_keys=False, allow_unicode=True, width=120)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
