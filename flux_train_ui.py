"""Gradio app: train a FLUX.2 or FLUX.1 LoRA from a few uploaded images.

    python flux_train_ui.py                      # http://127.0.0.1:7860
    FLUX_UI_TOKEN=<secret> python flux_train_ui.py --host 0.0.0.0 --port 7861   # the LAN: a token is required

Pick a model preset (the shipped example configs), upload images, edit their captions, set the
trigger word, steps, learning rate, rank, resolutions, a memory preset and sample prompts, press
Start. The app writes the dataset and ``config/ui_<name>.yaml`` and runs ``python run.py`` on it
in its own process group; progress, loss, samples and the LoRA files are read back from the job
folder. Training does not depend on the browser (or on this app): reopen the page and the job is
there. Edit presets (reference images) take a second upload, one reference per target under the
target's file name. The non-Gradio parts live in ``toolkit/ui/presets.py`` (configs),
``toolkit/ui/datasets.py`` (uploads) and ``toolkit/ui/jobs.py`` (running and watching jobs).

Left running, the app stays safe (README, "What the UIs guarantee"): requests must name this
machine in ``Host`` and come from the app's own page when they change something
(``toolkit/ui/http.py``); a token is required to bind another address or ``--share``; uploads are
capped (``--max-upload-mb``) and decoded before they are accepted; every path a job names must lie
in the app's data roots and ``${ENV}`` is never expanded (``toolkit/ui/guard.py``).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
from pathlib import Path

import gradio as gr

from toolkit.ui import datasets as ui_datasets, http as ui_http, presets as ui_presets
from toolkit.ui import jobs
from toolkit.ui.aitk import plan_import
from toolkit.ui.aitk_report import import_markdown
from toolkit.paths import EXAMPLES_DIR, ROOT

log = logging.getLogger("flux_train_ui")

DEMO_IMAGES = EXAMPLES_DIR / "demo_dataset"
DEMO_EDIT = EXAMPLES_DIR / "demo_edit_dataset"  # targets + control/ references
REFRESH_S = 2.0
IMPORT_MAX_BYTES = 1024 * 1024  # an ai-toolkit job file is a few KiB
INTRO = """# FLUX LoRA trainer
1. Pick the model and how much GPU memory you have. 2. Upload a few images (same-name `.txt` files fill the captions)
and edit the captions; an edit model also takes one reference image per image, under the same file name. 3. Set
the trigger word and training settings. 4. **Start**. Progress, loss, samples and the LoRA appear under *Jobs*;
training goes on if you close this page."""
IMPORT_HELP = """The job ai-toolkit saved (its UI's job JSON or Advanced YAML, or one of its example configs) becomes
a job here: every problem is listed at once by key path, and the YAML goes to the editor under *Advanced*. A dataset
folder is used when it is inside this app's data folders or a folder of the same name is in a `--data-root`
(`python flux_train_ui.py --data-root ~/ai-toolkit/datasets`); otherwise upload its images below. Nothing outside the
data folders is read."""


class App:
    """The app's settings and event handlers (plain functions of component values)."""

    def __init__(self, config_dir: Path, training_folder: str | None, data_roots: list[str] = ()):
        self.config_dir = Path(config_dir)
        self.training_folder = training_folder  # None: each preset's own
        usable, self.skipped = ui_presets.form_presets()
        self.presets = {p["label"]: p for p in usable}
        self.data_roots = [Path(r).expanduser().resolve() for r in data_roots]
        self.starting = threading.Lock()  # one Start at a time: a double click never races itself

    def roots(self) -> list[Path]:
        """The folders a job started here may name (toolkit/ui/guard.py): outputs, demo data, models/,
        the job folders' roots and ``--data-root``."""
        return jobs.ui_roots(ROOT, sorted({self.job_root(label) for label in self.presets}) + self.data_roots)

    # ------------------------------------------------------------------ form
    def default_label(self) -> str:
        return next(iter(self.presets))

    def job_root(self, label: str) -> Path:
        folder = self.training_folder or ui_presets.typed_process(self.presets[label]).training_folder
        return jobs.resolve_path(folder, ROOT)

    def select_preset(self, label: str):
        """The form filled with the preset's values (and a job name nobody uses yet)."""
        preset = self.presets[label]
        fields = ui_presets.UserFields.from_preset(preset)
        options = list(ui_presets.vram_options(preset))
        name = jobs.suggest_name(fields.name, self.job_root(label), self.config_dir)
        return (
            gr.update(choices=options, value=fields.vram),
            name,
            fields.trigger_word,
            fields.default_caption,
            fields.steps,
            fields.lr,
            fields.rank,
            ", ".join(map(str, fields.resolutions)),
            fields.sample_every,
            "\n".join(fields.sample_prompts),
        )

    def build_yaml(self, *form) -> tuple[str, str]:
        """The YAML for the form (``_yaml``'s arguments: the fields as ``build_ui`` lists them, then the image and
        reference uploads), twice: for the editor and as the last generated text."""
        try:
            text = self._yaml(*form)
        except (jobs.JobError, ValueError, TypeError, ZeroDivisionError) as exc:
            text = f"# cannot build the config: {exc}\n"
        return text, text

    def _yaml(
        self,
        label,
        vram,
        name,
        trigger,
        default_caption,
        steps,
        lr,
        rank,
        resolutions,
        sample_every,
        prompts,
        images=None,
        references=None,
    ) -> str:
        """Edit presets: ``sample.ctrl_img`` is the reference of the first image that has one."""
        preset = self.presets[label]
        fields = ui_presets.UserFields(
            name=(name or "").strip(),
            trigger_word=trigger or "",
            default_caption=default_caption or "",
            steps=_number("Steps", steps, int),
            lr=_number("Learning rate", lr, float),
            rank=_number("LoRA rank", rank, int),
            resolutions=_field("Resolutions", ui_presets.parse_resolutions, resolutions),
            sample_every=_number("Sample every N steps", sample_every, int),
            sample_prompts=(prompts or "").splitlines(),
            vram=vram,
        )
        sample_reference = ui_datasets.first_reference(images or [], references or [])
        raw = ui_presets.build_job_config(preset, fields, self.training_folder, sample_reference, ROOT)
        return ui_presets.to_yaml(raw, preset)

    def uploads_changed(self, *values):
        """After an upload (``values``: ``build_yaml``'s, then the YAML as shown and the last generated one): an
        edit preset's YAML names the first image's reference (``sample.ctrl_img``), so it is rebuilt, unless the
        person edited it (an imported job counts as edited). Other presets' YAML does not depend on the uploads."""
        *form, yaml_text, generated = values
        if not self.is_edit(form[0]) or ((yaml_text or "").strip() and yaml_text != generated):
            return gr.skip(), gr.skip()
        return self.build_yaml(*form)

    # ------------------------------------------------------------------ import
    def import_root(self) -> Path:
        """Where imported jobs go: ``--training-folder``, else the first preset's training folder."""
        return self.job_root(self.default_label())

    def import_job(self, file, text):
        """An ai-toolkit job (the uploaded file, else the pasted text) -> (YAML editor, report, reference box,
        whether Start takes the reference uploads for it, the YAML's accordion).

        ``toolkit/ui/aitk.py`` plans it: folders inside the data folders are kept, a folder of the same name in a
        ``--data-root`` is linked, the first dataset found nowhere becomes the upload folder, anything else is a
        problem by key path; nothing outside the data folders is read. The YAML goes to the editor even with
        problems (they can be fixed there) and counts as edited: uploads do not rebuild it. It gets a job name
        nobody uses yet. Start runs it through the usual checks.
        """
        unchanged = (gr.skip(), gr.skip(), gr.skip())
        filename = None
        if file:
            path = Path(str(getattr(file, "name", file)))
            filename = path.name
            with path.open("rb") as handle:
                raw = handle.read(IMPORT_MAX_BYTES + 1)
            if len(raw) > IMPORT_MAX_BYTES:
                return (
                    gr.skip(),
                    f"**Not imported.** `{filename}` is over {IMPORT_MAX_BYTES // 1024} KiB; is it a job file?",
                    *unchanged,
                )
            try:
                text = raw.decode("utf-8-sig")
            except UnicodeDecodeError:
                return (
                    gr.skip(),
                    f"**Not imported.** `{filename}` is not UTF-8 text; save the job as UTF-8 JSON or YAML.",
                    *unchanged,
                )
        if not (text or "").strip():
            return gr.skip(), "**Not imported.** Upload an ai-toolkit job file or paste its text first.", *unchanged
        folder = self.import_root()
        where = dict(roots=self.roots(), data_roots=self.data_roots, training_folder=str(folder), base=ROOT)
        plan = plan_import(text, filename=filename, uploads=True, **where)
        try:
            free = jobs.suggest_name(plan.name, folder, self.config_dir) if plan.name else None
        except jobs.JobError:
            free = None  # the name's own problem is in the plan
        if free and free != plan.name:
            plan = plan_import(text, filename=filename, uploads=True, name=free, **where)
        if plan.yaml is None:
            return gr.skip(), import_markdown(plan), *unchanged
        references = any(f.how == "upload" and f.kind == "control" for f in plan.folders)
        box = gr.update(visible=True) if references else gr.skip()
        return plan.yaml, import_markdown(plan), box, references, gr.update(open=True)

    def is_edit(self, label: str) -> bool:
        return ui_presets.is_edit(self.presets[label])

    # ------------------------------------------------------------------ images
    @staticmethod
    def _table(images: list[str], captions: dict[str, str]):
        rows = [[Path(p).name, captions.get(Path(p).stem, "")] for p in images]
        gallery = [(p, Path(p).name) for p in images]
        return images, gallery, rows

    def upload(self, files, table=None):
        """Uploaded files -> (image paths, gallery, caption table).

        A ``name.txt`` among the files captions ``name.*``; a caption already typed in the table for
        an image of the same name is kept (uploading more files does not lose edits).
        """
        paths = [str(getattr(f, "name", f)) for f in files or []]
        texts = [p for p in paths if Path(p).suffix.lower() == ".txt"]
        images, problems = ui_datasets.readable_images([p for p in paths if p not in texts])
        captions = {}
        for p in texts:
            try:
                captions[Path(p).stem] = (
                    Path(p).read_bytes()[: ui_datasets.MAX_CAPTION_BYTES].decode("utf-8-sig").strip()
                )
            except UnicodeDecodeError:
                problems.append(f"{Path(p).name}: not UTF-8 text; save the caption as UTF-8")
        for row in _rows(table):
            if len(row) > 1 and row[0] and str(row[1] or "").strip():
                captions[Path(str(row[0])).stem] = str(row[1]).strip()
        return *self._table(images, captions), _upload_report(problems)

    def demo_images(self, label):
        """The bundled demo: the robot images, or for an edit preset the edit pairs (targets + control/)."""
        folder = DEMO_EDIT if self.is_edit(label) else DEMO_IMAGES
        images = sorted(str(p) for p in folder.glob("*.png"))
        captions = {
            Path(p).stem: Path(p).with_suffix(".txt").read_text(encoding="utf-8").strip()
            for p in images
            if Path(p).with_suffix(".txt").is_file()
        }
        references = sorted(str(p) for p in (folder / ui_datasets.CONTROL_DIR).glob("*.png"))
        return *self._table(images, captions), *self.upload_references(references)[:2]

    @staticmethod
    def upload_references(files):
        """Uploaded reference images -> (paths, gallery, problems); a file that does not decode is left out."""
        paths, problems = ui_datasets.readable_images([str(getattr(f, "name", f)) for f in files or []])
        return paths, [(p, Path(p).name) for p in paths], _upload_report(problems)

    def references_box(self, label):
        """The reference upload shows for edit presets only."""
        return gr.update(visible=self.is_edit(label))

    def pairing(self, label, images, references) -> str:
        """How the uploaded references pair with the images (edit presets), checked again at Start."""
        if not self.is_edit(label) or not (images or references):
            return ""
        pairs, problems = ui_datasets.pair_references(images or [], references or [])
        if not problems:
            return f"Every image has its reference ({len(pairs)} pairs)."
        return f"**{len(pairs)} of {len(images or [])} images paired.**\n" + "\n".join(f"- {p}" for p in problems)

    @staticmethod
    def pair_captions(images: list[str] | None, table) -> list[tuple[str, str]]:
        """(image path, caption) pairs: row i captions image i; if rows were added or deleted, by file name."""
        rows = [(str(r[0] or ""), str(r[1] if len(r) > 1 and r[1] is not None else "")) for r in _rows(table) if r]
        images = images or []
        if len(rows) == len(images):
            return [(p, caption) for p, (_, caption) in zip(images, rows)]
        by_name = dict(rows)
        return [(p, by_name.get(Path(p).name, "")) for p in images]

    # ------------------------------------------------------------------ jobs
    def job_choices(self) -> list[str]:
        return [s.name for s in jobs.list_jobs(self.config_dir, ROOT)]

    def on_load(self):
        """Reopening the page: list the jobs, select the running one (else the newest)."""
        statuses = jobs.list_jobs(self.config_dir, ROOT)
        live = [s for s in statuses if s.alive] or statuses
        value = live[0].name if live else None
        return gr.update(choices=[s.name for s in statuses], value=value)

    def start(
        self,
        label,
        vram,
        name,
        trigger,
        default_caption,
        steps,
        lr,
        rank,
        resolutions,
        sample_every,
        prompts,
        yaml_text,
        generated,
        images,
        table,
        references=None,
        imported_references=False,
    ):
        """Start: the YAML as shown, or rebuilt from the fields when the person did not edit it
        (so a field typed just before pressing Start is never lost to a late rebuild). References
        count for edit presets only (switching presets keeps the uploads), and for an imported job
        whose references are the uploads (``imported_references``) while its YAML is shown."""
        form = (label, vram, name, trigger, default_caption, steps, lr, rank, resolutions, sample_every, prompts)
        edited = not _only_comments(yaml_text) and yaml_text != generated
        wants_references = self.is_edit(label) or (imported_references and edited)
        references = (references or []) if wants_references else []
        if not self.starting.acquire(blocking=False):
            return "**Not started.** A job is being started; wait for it.", gr.update(), gr.update()
        try:
            if self.is_edit(label) and images and not references:
                raise jobs.JobError(
                    "this is an edit model: upload the reference images too, one per target image "
                    "with the same file name as its target"
                )
            if not edited:
                # Untouched (or holding only "# cannot build the config"): the fields are the truth, and a bad
                # field is named as the person typed it ("Resolutions: ...").
                yaml_text = self._yaml(*form, images, references)
            job, config_file = jobs.start_job(
                yaml_text, self.pair_captions(images, table), self.config_dir, ROOT, references, roots=self.roots()
            )
        except jobs.JobError as exc:
            return _refusal(exc), gr.update(), gr.update()
        except (ValueError, TypeError, ZeroDivisionError) as exc:
            return f"**Not started.** {exc}", gr.update(), gr.update()
        finally:
            self.starting.release()
        counted = f" and {len(references)} references" if references else ""
        uploaded = f" with {len(images)} images{counted}" if images else ""  # none: its datasets are folders
        message = (
            f"**Started `{job.name}`**{uploaded}: "
            f"`{_show_path(config_file)}` -> `{_show_path(job.job_folder)}`. Progress below."
        )
        next_name = jobs.suggest_name(job.name, job.job_folder.parent, self.config_dir)  # the next Start is new
        return message, gr.update(choices=self.job_choices(), value=job.name), next_name

    def stop(self, name):
        if not name:
            return "Select a job first."
        try:
            return jobs.stop_job(jobs.find_job(name, self.config_dir, ROOT).folder)
        except (jobs.JobError, OSError) as exc:
            return f"**Not stopped.** {exc}"

    def resume(self, name):
        if not name:
            return "Select a job first."
        try:
            jobs.resume_job(jobs.find_job(name, self.config_dir, ROOT).folder, ROOT)
        except jobs.JobError as exc:
            return f"**Not resumed.** {exc}"
        return f"Resuming `{name}` from its last save."

    def refresh(self, name):
        """(status markdown, loss curve, samples, LoRA files, log tail) of the selected job."""
        if not name:
            return "No job selected.", None, [], None, ""
        try:
            status = jobs.find_job(name, self.config_dir, ROOT)
        except jobs.JobError as exc:
            return str(exc), None, [], None, ""
        curve = jobs.loss_curve(status.folder)
        plot = _frame(curve) if curve else None
        samples = [(str(p), _sample_caption(p)) for p in status.samples if self.servable(p)]
        loras = [str(p) for p in status.loras if self.servable(p)] or None
        return _status_markdown(status), plot, samples[::-1], loras, jobs.log_tail(status.folder)

    def tick(self, name, shown):
        """The timer's refresh: images, files and plot only when they changed (re-sending the
        gallery every few seconds would close the image the person is looking at)."""
        markdown, plot, samples, loras, log_text = self.refresh(name)
        key = repr((name, [s for s, _ in samples], loras, None if plot is None else len(plot)))
        if key == shown:
            return markdown, gr.skip(), gr.skip(), gr.skip(), log_text, shown
        return markdown, plot, samples, loras, log_text, key

    def servable(self, path: Path) -> bool:
        """Gradio serves files only below its allowed paths (launch(allowed_paths=...))."""
        return any(_is_below(path, root) for root in self.allowed_paths())

    def allowed_paths(self) -> list[Path]:
        """The demo images and the folders jobs go to; not the whole project (configs, .git)."""
        roots = {DEMO_IMAGES.resolve(), DEMO_EDIT.resolve()}
        roots |= {self.job_root(label).resolve() for label in self.presets}
        return sorted(roots)


# ---------------------------------------------------------------------- formatting


def _rows(table) -> list[list]:
    if table is None:
        return []
    if hasattr(table, "values") and hasattr(table, "columns"):  # a pandas DataFrame
        return table.values.tolist()
    if isinstance(table, dict):
        return list(table.get("data") or [])
    return [list(r) for r in table]


def _frame(curve):
    import pandas as pd

    return pd.DataFrame({"step": [s for s, _ in curve], "loss": [v for _, v in curve]})


def _is_below(path: Path, root: Path) -> bool:
    try:
        Path(path).resolve().relative_to(root)
        return True
    except ValueError:
        return False


def _show_path(path: Path) -> str:
    return str(path.relative_to(ROOT)) if _is_below(path, ROOT) else str(path)


def _sample_caption(path: Path) -> str:
    step, _, index = path.stem.partition("_")
    return f"step {int(step)}, prompt {index}" if step.isdigit() else path.name


def _only_comments(text: str | None) -> bool:
    return all(not line.strip() or line.lstrip().startswith("#") for line in (text or "").splitlines())


def _field(label: str, parse, value):
    """A form field parsed, its error named by the field's label as the person sees it."""
    try:
        return parse(value)
    except (jobs.JobError, ValueError, TypeError) as exc:
        message = str(exc).split(": ", 1)[1] if str(exc).lower().startswith(label.lower() + ":") else str(exc)
        raise jobs.JobError(f"{label}: {message}") from None


def _number(label: str, value, kind):
    def parse(v):
        if v is None or v == "":
            raise ValueError("is empty; fill it in")
        number = kind(v)
        if kind is int and number != float(v):
            raise ValueError(f"must be a whole number, got {v!r}")
        return number

    return _field(label, parse, value)


def _upload_report(problems: list[str]) -> str:
    if not problems:
        return ""
    return f"**{len(problems)} file(s) left out:**\n" + "\n".join(f"- {p}" for p in problems)


def _refusal(exc: jobs.JobError) -> str:
    if exc.problems:
        lines = "\n".join(f"- `{p['path'] or 'the YAML'}`: {p['message']}" for p in exc.problems)
        return f"**Not started: the config has {len(exc.problems)} problem(s).**\n{lines}"
    return f"**Not started.** {exc}"


def _status_markdown(status: jobs.JobStatus) -> str:
    parts = [f"### `{status.name}`: {status.state}"]
    if status.total_steps:
        percent = 100 * status.step / status.total_steps
        parts.append(f"step **{status.step} / {status.total_steps}** ({percent:.0f}%)")
    if status.loss is not None:
        parts.append(f"loss {status.loss:.4f}")
    if status.s_per_it is not None:
        parts.append(f"{status.s_per_it:.2f} s/it")
    if status.eta_s is not None:
        parts.append(f"about {_duration(status.eta_s)} left")
    text = parts[0] + "\n\n" + " · ".join(parts[1:])
    if status.state == "starting":
        text += "\n\nLoading the model and caching latents and captions..."
    if status.error:
        text += f"\n\n**Error:** {status.error}"
    if status.final_lora:
        text += f"\n\nFinal LoRA: `{_show_path(status.final_lora)}`"
    return text


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    return (
        f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"
        if seconds >= 3600
        else f"{seconds // 60}m {seconds % 60:02d}s"
    )


# ---------------------------------------------------------------------- layout


def build_ui(app: App) -> gr.Blocks:
    label = app.default_label()
    with gr.Blocks(title="FLUX LoRA trainer") as demo:
        gr.Markdown(INTRO)
        if app.skipped:
            gr.Markdown("Not in this app: " + "; ".join(f"**{k}** ({v})" for k, v in app.skipped.items()))
        with gr.Accordion("Import an ai-toolkit job (its job file, JSON or YAML)", open=False):
            gr.Markdown(IMPORT_HELP)
            with gr.Row():
                import_file = gr.File(
                    file_types=[".json", ".jsonc", ".yaml", ".yml"], type="filepath", label="Job file", scale=1
                )
                import_text = gr.Code(language="yaml", interactive=True, label="... or paste it here", scale=2)
            import_button = gr.Button("Import", size="sm")
            import_report = gr.Markdown()
        imported_references = gr.State(False)  # the imported job's references are the reference uploads
        images = gr.State([])
        references = gr.State([])
        generated = gr.State("")
        shown = gr.State("")
        with gr.Row():
            with gr.Column():
                preset = gr.Dropdown(list(app.presets), value=label, label="Model")
                vram = gr.Dropdown(
                    [], allow_custom_value=True, label="GPU memory (estimates; fills quantization / offload settings)"
                )
                name = gr.Textbox(label="Job name (output folder and file names)")
                files = gr.File(
                    file_count="multiple",
                    file_types=["image", ".txt"],
                    label="Images (optional same-name .txt captions)",
                )
                demo_button = gr.Button("Use the demo images (robots; edit models: robot edit pairs)", size="sm")
                upload_message = gr.Markdown()
                gallery = gr.Gallery(label="Images", columns=6, height=200)
                captions = gr.Dataframe(
                    headers=["image", "caption"],
                    datatype=["str", "str"],
                    type="array",
                    interactive=True,
                    label="Captions ([trigger] marks the trigger word)",
                )
                with gr.Column(visible=app.is_edit(label)) as references_box:
                    reference_files = gr.File(
                        file_count="multiple",
                        file_types=["image"],
                        label="Reference images (one per target, same file name as its target)",
                    )
                    reference_message = gr.Markdown()
                    reference_gallery = gr.Gallery(label="References", columns=6, height=200)
                    pairing = gr.Markdown()
            with gr.Column():
                trigger = gr.Textbox(label="Trigger word")
                default_caption = gr.Textbox(label="Default caption (for images with an empty caption)")
                with gr.Row():
                    steps = gr.Number(label="Steps", precision=0, minimum=1)
                    lr = gr.Number(label="Learning rate")
                    rank = gr.Number(label="LoRA rank", precision=0, minimum=1)
                with gr.Row():
                    resolutions = gr.Textbox(label="Resolutions (comma separated)")
                    sample_every = gr.Number(label="Sample every N steps", precision=0, minimum=1)
                prompts = gr.Textbox(label="Sample prompts (one per line; [trigger] and --w/--h/--seed flags)", lines=4)
                with gr.Accordion(
                    "Advanced: the YAML that runs (edit it last: changing a field above rebuilds it)", open=False
                ) as advanced:
                    yaml_box = gr.Code(language="yaml", interactive=True, label="config/ui_<name>.yaml")
                start_button = gr.Button("Start training", variant="primary")
                message = gr.Markdown()
        gr.Markdown("## Jobs")
        with gr.Row():
            job = gr.Dropdown([], allow_custom_value=True, label="Job", scale=3)
            refresh_button = gr.Button("Refresh", size="sm", scale=0)
            stop_button = gr.Button("Stop (saves first)", variant="stop", size="sm", scale=0)
            resume_button = gr.Button("Resume", size="sm", scale=0)
        job_message = gr.Markdown()
        status = gr.Markdown()
        with gr.Row():
            loss_plot = gr.LinePlot(x="step", y="loss", label="Loss", height=260)
            samples = gr.Gallery(label="Samples (newest first)", columns=4, height=260)
        lora_files = gr.File(
            file_count="multiple", label="LoRA files (the final one is <name>.safetensors)", interactive=False
        )
        with gr.Accordion("Log (train.log)", open=False):
            log_box = gr.Textbox(lines=14, max_lines=14, show_label=False, interactive=False)

        fields = [preset, vram, name, trigger, default_caption, steps, lr, rank, resolutions, sample_every, prompts]
        form = fields[1:]
        uploads = [images, references]  # States: not part of the API's inputs; a client's session holds them
        build = (app.build_yaml, fields + uploads, [yaml_box, generated])
        rebuild = (app.uploads_changed, fields + uploads + [yaml_box, generated], [yaml_box, generated])
        show_pairing = (app.pairing, [preset] + uploads, pairing)
        preset.change(app.select_preset, preset, form, api_name="select_preset").then(
            app.references_box, preset, references_box, api_name=False
        ).then(*show_pairing, api_name=False).then(*build, api_name=False).then(
            lambda: False, None, imported_references, api_name=False
        )
        gr.on([f.change for f in form], *build, api_name="build_yaml")
        files.change(
            app.upload, [files, captions], [images, gallery, captions, upload_message], api_name="upload"
        ).then(*show_pairing, api_name=False).then(*rebuild, api_name=False)
        reference_files.change(
            app.upload_references,
            reference_files,
            [references, reference_gallery, reference_message],
            api_name="upload_references",
        ).then(*show_pairing, api_name=False).then(*rebuild, api_name=False)
        demo_button.click(
            app.demo_images, preset, [images, gallery, captions, references, reference_gallery], api_name="demo_images"
        ).then(*show_pairing, api_name=False).then(*rebuild, api_name=False)
        # Start is disabled from the click until the job started (or was refused): no double starts.
        start_button.click(lambda: gr.update(interactive=False), None, start_button, api_name=False, queue=False).then(
            app.start,
            fields + [yaml_box, generated, images, captions, references, imported_references],
            [message, job, name],
            api_name="start",
        ).then(lambda: gr.update(interactive=True), None, start_button, api_name=False)
        import_button.click(
            app.import_job,
            [import_file, import_text],
            [yaml_box, import_report, references_box, imported_references, advanced],
            api_name="import_aitk",
        )
        view = [status, loss_plot, samples, lora_files, log_box]
        refresh_button.click(app.refresh, job, view, api_name="refresh")
        job.change(app.refresh, job, view, api_name=False)
        gr.Timer(REFRESH_S).tick(
            app.tick, [job, shown], view + [shown], api_name=False, show_progress="hidden", concurrency_limit=None
        )
        stop_button.click(app.stop, job, job_message, api_name="stop")
        resume_button.click(app.resume, job, job_message, api_name="resume")
        demo.load(app.select_preset, preset, form, api_name=False).then(
            app.references_box, preset, references_box, api_name=False
        ).then(*build, api_name=False).then(app.on_load, None, job, api_name="jobs")
    return demo


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Gradio app that trains FLUX.1 / FLUX.2 LoRAs.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (0.0.0.0: the whole network)")
    parser.add_argument("--port", type=int, default=7860)
    parser.add_argument(
        "--share",
        action="store_true",
        help="a public gradio.live link (needs --auth-token): anyone with link and token can train",
    )
    parser.add_argument(
        "--auth-token",
        default=None,
        help=f"require this token (or set {ui_http.TOKEN_ENV}); required with --share or a "
        "non-loopback --host. Open the app once as /?token=TOKEN",
    )
    parser.add_argument(
        "--allowed-hosts",
        default="",
        help="comma-separated extra Host names to answer to (e.g. a reverse proxy's); '*' = any",
    )
    parser.add_argument("--max-upload-mb", type=int, default=50, help="largest accepted upload, per file")
    parser.add_argument(
        "--data-root",
        metavar="DIR",
        action="append",
        default=[],
        help="a folder jobs may read (datasets, local models) besides output/, config/examples/ and models/ "
        "(repeat); an imported ai-toolkit job's dataset /any/path/NAME is linked to DIR/NAME when that folder "
        "exists (e.g. --data-root ~/ai-toolkit/datasets); nothing outside these folders is read",
    )
    parser.add_argument("--config-dir", default=str(jobs.CONFIG_DIR), help="where config/ui_<name>.yaml go")
    parser.add_argument(
        "--training-folder", default=None, help="job folders go here instead of each preset's training_folder (output/)"
    )
    return parser.parse_args(argv)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    token = args.auth_token or os.environ.get(ui_http.TOKEN_ENV) or None
    if (args.share or not ui_http.is_loopback(args.host)) and not token:
        log.error(
            "--share and --host %s make the app reachable from other machines: set a token with --auth-token "
            "or %s (then open the app once as /?token=TOKEN)",
            args.host,
            ui_http.TOKEN_ENV,
        )
        return 2
    app = App(Path(args.config_dir).resolve(), args.training_folder, args.data_root)
    demo = build_ui(app)
    folders = sorted({str(app.job_root(label)) for label in app.presets})
    log.info("job configs go to %s, job folders to %s", app.config_dir, ", ".join(folders))
    demo.queue(default_concurrency_limit=4)
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    from starlette.middleware import Middleware

    policy = ui_http.HostPolicy(args.host, [h.strip() for h in args.allowed_hosts.split(",")], args.share)
    demo.launch(
        server_name=args.host,
        server_port=args.port,
        share=args.share,
        allowed_paths=[str(p) for p in app.allowed_paths()],
        max_file_size=args.max_upload_mb * 1024 * 1024,
        app_kwargs={"middleware": [Middleware(ui_http.FrontDoor, policy=policy, token=token)]},
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
