"""An ai-toolkit import's plan (:class:`toolkit.ui.aitk.ImportPlan`) as Markdown, for the Gradio app.

What the person reads after pressing Import: each folder and image the job names and where it comes from here
(kept / linked / the app's uploads / missing, with the fix), every problem by key path, and the ai-toolkit keys
accepted as no-ops with why. The plan itself is made in ``toolkit/ui/aitk.py`` (shared with the Next.js UI);
this module only words it. No torch import.
"""

from __future__ import annotations

from toolkit.ui.aitk import FolderPlan, ImportPlan

__all__ = ["import_markdown"]

_WHAT = {
    "dataset": "dataset",
    "control": "reference folder",
    "mask": "mask folder",
    "reference_image": "sample reference image",
    "validation_image": "validation image",
}


def _how(folder: FolderPlan, problems: dict[str, str]) -> str:
    if folder.how == "kept":
        return "kept (already in this app's data folders)"
    if folder.how == "linked":
        return f"linked to `{folder.target}`"
    if folder.how == "upload":
        what = "reference images" if folder.kind == "control" else "images"
        box = "Reference images" if folder.kind == "control" else "Images"
        return f"**upload its {what} below** (the *{box}* box; written to `{folder.target}` at Start)"
    return "**missing**: " + problems.get(folder.keys[0], "not in this app's data folders")


def import_markdown(plan: ImportPlan) -> str:
    """The report shown under the Import button (module docstring)."""
    missing = {f.keys[0] for f in plan.folders if f.how == "missing"}
    by_key = {p["path"]: p["message"] for p in plan.problems if p["path"] in missing}
    others = [p for p in plan.problems if p["path"] not in missing]
    count = len(plan.problems)
    if plan.yaml is None:
        head = f"**Not imported: {count} problem(s).** Fix them in the job text and import again."
    elif plan.problems:
        head = (
            f"**Imported `{plan.name}` with {count} problem(s).** Fix them in the YAML (*Advanced*, below) or in the "
            "job and import again."
        )
    elif any(f.how == "upload" for f in plan.folders):
        head = (
            f"**Imported `{plan.name}`: upload its images,** then press **Start training** (the job's YAML is "
            "under *Advanced*)."
        )
    else:
        head = f"**Imported `{plan.name}`: ready.** Press **Start training** (the job's YAML is under *Advanced*)."
    parts = [head]
    if plan.yaml is not None:
        parts.append(
            "The imported YAML runs as shown; changing a field of the form rebuilds it from the form, so edit the "
            "imported job in the YAML editor."
        )
    if plan.folders:
        lines = [
            f"- {_WHAT.get(f.kind, f.kind)} `{f.path}` (`{f.keys[0]}`"
            + (f" and {len(f.keys) - 1} more" if len(f.keys) > 1 else "")
            + f"): {_how(f, by_key)}"
            for f in plan.folders
        ]
        parts.append("**Folders and images the job names:**\n" + "\n".join(lines))
    if others:
        parts.append("**Problems:**\n" + "\n".join(f"- `{p['path'] or 'the job'}`: {p['message']}" for p in others))
    if plan.ignored:
        lines = "\n".join(f"- `{p['path']}`: {p['message']}" for p in plan.ignored)
        parts.append(f"**ai-toolkit keys accepted with no effect here ({len(plan.ignored)}):**\n{lines}")
    return "\n\n".join(parts)
