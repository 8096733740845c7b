"""The uploads of the Gradio app (flux_train_ui.py): target images, captions and reference images.

A job started from the app trains on ``<job folder>/dataset/``, which the app fills from the uploads:

- each target image as ``000_<stem>.<ext>``, its caption as ``000_<stem>.txt``; the index keeps the
  upload order and two uploads of one name apart (:func:`write_dataset`);
- for edit presets, each target's reference image as ``dataset/control/000_<stem>.<ext>``, the same
  stem as its target, which is how the trainer pairs them (``toolkit/data/references.py``); the job's
  ``datasets[].control_path`` is that folder (:func:`write_references`).

References are paired with the targets by the file stem the person uploaded them under (target
``0001.png`` takes reference ``0001.jpg``) and checked all at once before a job starts
(:func:`check_references`): every target has exactly one reference, no reference is left without a
target, every file is a readable image. Everything wrong is reported in one message, so one fix-up
round is enough.

No torch here (PIL is imported when an image is read): the app imports this at startup.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

DATASET_DIR = "dataset"
CONTROL_DIR = "control"
# The formats the dataset reader takes as they are (toolkit.data.dataset.IMAGE_EXTENSIONS; not
# imported because that module pulls in torch; a test keeps the two equal). Others become PNG.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
_LISTED = 8  # file names quoted in one problem before "and N more"
MAX_CAPTION_BYTES = 64 * 1024  # a caption longer than this is not a caption


class UploadError(Exception):
    """Uploads that cannot make a dataset. ``problems``: one line each, all of them."""

    def __init__(self, message: str, problems: list[str] | None = None):
        self.problems = list(problems or [])
        super().__init__(message + "".join(f"\n  - {p}" for p in self.problems))


def dataset_name(index: int, src: str | Path) -> str:
    """The name upload number ``index`` gets in the dataset: ``000_<stem>.<ext>`` (``.png`` when its
    format is not one the dataset reader takes as it is)."""
    src = Path(src)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", src.stem)[:60] or "image"
    ext = src.suffix.lower()
    return f"{index:03d}_{stem}{ext if ext in IMAGE_EXTENSIONS else '.png'}"


def reference_name(index: int, target: str | Path, reference: str | Path) -> str:
    """The name of target ``index``'s reference in ``control/``: the target's stem, the reference's format."""
    return Path(dataset_name(index, target)).stem + Path(dataset_name(index, reference)).suffix


def _copy_image(src: Path, target: Path) -> None:
    """jpg/png/webp byte for byte; other formats PIL reads as PNG."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(src) as img:
            img.verify()
        if src.suffix.lower() in IMAGE_EXTENSIONS:
            shutil.copyfile(src, target)
        else:
            with Image.open(src) as img:
                img.save(target, format="PNG")
    except (UnidentifiedImageError, OSError) as exc:
        raise UploadError(f"{src.name} is not an image PIL can read ({exc}); remove it") from exc


def image_problem(path: str | Path) -> str | None:
    """Why the file at ``path`` is not an image (None when it decodes): PIL ``verify`` (structure,
    checksums) then a full ``load`` (every pixel), so a PNG/JPEG signature followed by HTML or a
    truncated file is refused, not only a wrong first few bytes. Decompression bombs are refused too."""
    from PIL import Image

    try:
        with Image.open(path) as img:
            img.verify()
        with Image.open(path) as img:
            img.load()
    except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken or hostile files
        # PIL quotes the server-side temp path; the person knows the file by its name only.
        detail = str(exc).replace(str(path), Path(path).name)
        return f"not an image that decodes ({type(exc).__name__}: {detail})"
    return None


def readable_images(paths: list[str | Path]) -> tuple[list[str], list[str]]:
    """(the paths that decode as images, one problem per other file naming it as it was uploaded)."""
    good, problems = [], []
    for path in paths:
        problem = image_problem(path)
        if problem:
            problems.append(f"{Path(path).name}: {problem}")
        else:
            good.append(str(path))
    return good, problems


def write_dataset(folder: Path, images: list[tuple[str | Path, str]], caption_ext: str = "txt") -> int:
    """Copy ``(image path, caption)`` pairs into ``folder`` as ``000_<stem>.<ext>`` + ``.txt`` captions.

    jpg/png/webp are copied byte for byte; other formats PIL reads become PNG. An empty caption
    writes no caption file (the dataset's ``default_caption`` then applies). Returns the count.
    """
    folder.mkdir(parents=True, exist_ok=True)
    for i, (src, caption) in enumerate(images):
        target = folder / dataset_name(i, src)
        _copy_image(Path(src), target)
        if caption.strip():
            target.with_suffix(f".{caption_ext}").write_text(caption.strip() + "\n", encoding="utf-8")
    return len(images)


def _names(names: list[str]) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown + (f" and {len(names) - _LISTED} more" if len(names) > _LISTED else "")


def pair_references(targets: list[str | Path], references: list[str | Path]) -> tuple[dict[int, Path], list[str]]:
    """Each target's reference by file stem: ``({target index: reference path}, problems)``.

    A problem for: targets without a reference, a target with several (``a.png`` and ``a.jpg``),
    two targets of one stem (a reference could belong to either), references without a target.
    Stems compare exactly, extensions in any letter case, as the trainer pairs them.
    """
    by_stem: dict[str, list[Path]] = {}
    for ref in map(Path, references):
        by_stem.setdefault(ref.stem, []).append(ref)
    pairs: dict[int, Path] = {}
    seen: dict[str, Path] = {}
    missing, several, clashes = [], [], []
    for i, target in enumerate(map(Path, targets)):
        if target.stem in seen:
            clashes.append(f"{seen[target.stem].name} / {target.name}")
            continue
        seen[target.stem] = target
        refs = by_stem.get(target.stem, [])
        if not refs:
            missing.append(target.name)
        elif len(refs) > 1:
            several.append(f"{target.name} ({', '.join(r.name for r in refs)})")
        else:
            pairs[i] = refs[0]
    orphans = [ref.name for stem, refs in by_stem.items() if stem not in seen for ref in refs]
    problems = []
    if missing:
        problems.append(
            f"{len(missing)} target image(s) without a reference of the same file name: "
            f"{_names(missing)}; upload one reference per target, named like it (target "
            f"{missing[0]} -> reference {Path(missing[0]).stem}.png)"
        )
    if several:
        problems.append(
            f"{len(several)} target image(s) with more than one reference: {_names(several)}; keep one per target"
        )
    if clashes:
        problems.append(
            f"target images sharing a file name: {_names(clashes)}; a reference pairs by name, so rename one of each"
        )
    if orphans:
        problems.append(
            f"{len(orphans)} reference image(s) without a target of the same file name: "
            f"{_names(orphans)}; remove them or rename each after its target"
        )
    return pairs, problems


def check_references(targets: list[str | Path], references: list[str | Path]) -> dict[int, Path]:
    """The pairs of :func:`pair_references` when every target has one readable reference; else
    UploadError with every problem (pairing and unreadable files, targets included)."""
    from toolkit.data.references import unreadable_images

    pairs, problems = pair_references(targets, references)
    problems += unreadable_images([str(p) for p in [*targets, *references]])
    if problems:
        raise UploadError(f"the reference images do not pair with the {len(targets)} target image(s):", problems)
    return pairs


def first_reference(targets: list[str | Path], references: list[str | Path]) -> str | None:
    """The ``control/`` file name of the first target's reference that has one (for ``sample.ctrl_img``)."""
    pairs = pair_references(targets, references)[0]
    if not pairs:
        return None
    i = min(pairs)
    return reference_name(i, targets[i], pairs[i])


def write_references(control: Path, targets: list[str | Path], pairs: dict[int, Path]) -> int:
    """Copy each target's reference into ``control`` under its target's dataset stem. Returns the count."""
    control.mkdir(parents=True, exist_ok=True)
    for i, ref in sorted(pairs.items()):
        _copy_image(Path(ref), control / reference_name(i, targets[i], ref))
    return len(pairs)
