"""Reference (edit) images: ``datasets[i].control_path`` folders paired with the targets.

    images, refs = pair_references(scan_folder(config, key), config, key)   # target path -> reference files
    item.references = reference_items(refs[image.path], bucket, config, ...)  # in build_items
    LatentCache(model.encode_images, vae_id, load_image=load_reference)     # cached like target latents

Decisions:

- Pairing is by file stem: target ``a.png`` takes ``<control>/a.*`` (jpg, jpeg, png, webp in
  any letter case) from every control folder, in ``control_path`` order (reference i is the
  i-th image the model sees, FLUX.2 time coordinate 10 + 10 i). A target missing one of its
  references, or whose reference cannot be read, is skipped with one warning that counts
  them; a dataset where every target is skipped is an error naming ``control_path``.
- Sizes (:func:`~toolkit.data.buckets.reference_size`): those the diffusers FLUX.2 pipelines
  give a reference at inference (its own size capped at ``reference_max_pixels``, sides
  cropped to multiples of the divisibility), so a LoRA trained here sees the references as
  diffusers, ComfyUI-style workflows and our own samples feed them. ``match_target_res``
  resizes them to cover the target's bucket and center-crops instead, as targets are.
- A reference is mirrored with its target (``flip_x`` / ``flip_y``): an edit pair keeps its
  spatial correspondence.
- References are always cached, never re-encoded per step: in memory, or only on disk
  (``<control folder>/_latent_cache/``) when the dataset sets ``cache_latents_to_disk`` alone.
  The key holds the reference file's identity (path, size, mtime), its trained size, the
  resize rule, the flips and the VAE fingerprint.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PIL import Image

from toolkit.data.buckets import reference_size
from toolkit.data.errors import DatasetError
from toolkit.data.images import (
    IMAGE_EXTENSIONS,
    LATENT_CACHE_DIRNAME,
    ImageItem,
    flip,
    image_to_tensor,
    oriented_size,
    read_rgb,
    resize_and_crop,
    unreadable_images,
)

if TYPE_CHECKING:
    import torch

    from toolkit.config_modules import DatasetConfig

log = logging.getLogger(__name__)

__all__ = ["ReferenceItem", "pair_references", "reference_items", "load_reference", "unreadable_images"]


@dataclasses.dataclass(frozen=True)
class ReferenceItem:
    """One reference image of a :class:`~toolkit.data.dataset.TrainItem`, at the size it trains at.

    bucket: (width, height) of its tensor, multiples of the divisibility.
    resize: (width, height) it is resized to (Lanczos) before the center crop to ``bucket``, the
        diffusers pipelines' rule; None: cover ``bucket`` and center-crop (``match_target_res``).
    Its fields mirror TrainItem's where :class:`~toolkit.data.latent_cache.LatentCache` reads them.
    """

    image: ImageItem
    bucket: tuple[int, int]
    resize: tuple[int, int] | None
    dataset_key: str
    flip_x: bool = False
    flip_y: bool = False
    cache_latents: bool = True
    cache_latents_to_disk: bool = False

    @property
    def latents_cached(self) -> bool:
        return True

    @property
    def cache_dir(self) -> Path:
        return self.image.path.parent / LATENT_CACHE_DIRNAME

    @property
    def cache_key_fields(self) -> dict:
        """What the latent cache key needs beyond TrainItem's fields: the resize rule."""
        return {"reference_resize": list(self.resize) if self.resize is not None else "cover"}


def _control_files(folder: Path, key: str) -> dict[str, Path]:
    """stem -> image file of one control folder (flat, hidden files skipped)."""
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise DatasetError(f"{key}: {folder} {what}; set control_path to the folder(s) holding the reference images")
    files: dict[str, Path] = {}
    clashes: list[str] = []
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() not in IMAGE_EXTENSIONS or path.name.startswith(".") or not path.is_file():
            continue
        if path.stem in files:
            clashes.append(f"{files[path.stem].name} / {path.name}")
        else:
            files[path.stem] = path
    if clashes:
        raise DatasetError(
            f"{key}: several reference images share a name in {folder} ({'; '.join(clashes)}); "
            "keep one per target image"
        )
    return files


def _reference_image(path: Path, cache: dict[Path, ImageItem | str]) -> ImageItem | str:
    """The scanned reference, or why it cannot be used."""
    if path not in cache:
        try:
            width, height = oriented_size(path)
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken files; each is reported
            cache[path] = f"{path.name} is unreadable ({type(exc).__name__}: {exc})"
        else:
            stat = path.stat()
            cache[path] = ImageItem(path.resolve(), "", width, height, stat.st_size, stat.st_mtime_ns)
    return cache[path]


def pair_references(
    images: list[ImageItem], config: DatasetConfig, key: str
) -> tuple[list[ImageItem], dict[Path, tuple[ImageItem, ...]]]:
    """(targets that have all their references, target path -> its references in control_path order).

    Without ``control_path``: (images, {}). Raises DatasetError for a missing control folder or
    when no target has its references.
    """
    folders = config.control_paths
    if not folders:
        return images, {}
    keyed = [
        f"{key}.control_path" + (f"[{i}]" if isinstance(config.control_path, list) else "") for i in range(len(folders))
    ]
    controls = [_control_files(Path(folder).expanduser(), k) for folder, k in zip(folders, keyed)]
    scanned: dict[Path, ImageItem | str] = {}
    kept: list[ImageItem] = []
    references: dict[Path, tuple[ImageItem, ...]] = {}
    skipped: list[str] = []
    for image in images:
        refs, reasons = [], []
        for folder, files in zip(folders, controls):
            path = files.get(image.path.stem)
            ref = _reference_image(path, scanned) if path is not None else f"no {image.path.stem}.* in {folder}"
            (refs if isinstance(ref, ImageItem) else reasons).append(ref)
        if reasons:
            skipped.append(f"{image.path.name} ({'; '.join(reasons)})")
            continue
        kept.append(image)
        references[image.path] = tuple(refs)
    if not kept:
        raise DatasetError(
            f"{key}.control_path: none of the {len(images)} images in {config.folder_path} has its reference "
            f"image(s) (paired by file name: target a.png takes a.jpg/.jpeg/.png/.webp from each control folder): "
            + "; ".join(skipped[:5])
            + (f" and {len(skipped) - 5} more" if len(skipped) > 5 else "")
        )
    if skipped:
        log.warning(
            "%s.control_path: skipped %d of %d images without their reference image(s): %s",
            key,
            len(skipped),
            len(images),
            "; ".join(skipped[:10]) + (" ..." if len(skipped) > 10 else ""),
        )
    return kept, references


def reference_items(
    refs: tuple[ImageItem, ...],
    bucket: tuple[int, int],
    config: DatasetConfig,
    key: str,
    flip_x: bool,
    flip_y: bool,
    divisibility: int,
    max_pixels: int,
) -> tuple[ReferenceItem, ...]:
    """The references of one target trained at ``bucket`` (with its flips)."""
    items = []
    for ref in refs:
        if config.match_target_res:
            resize, size = None, bucket
        else:
            resize, size = reference_size(ref.width, ref.height, max_pixels, divisibility)
            if 0 in size:
                raise DatasetError(
                    f"{key}.control_path: {ref.path} is {ref.width}x{ref.height}, narrower than "
                    f"{divisibility} px; use a larger reference image or match_target_res: true"
                )
        items.append(
            ReferenceItem(
                image=ref,
                bucket=size,
                resize=resize,
                dataset_key=key,
                flip_x=flip_x,
                flip_y=flip_y,
                # always cached: in memory unless the dataset asks for the disk alone
                cache_latents=config.cache_latents or not config.cache_latents_to_disk,
                cache_latents_to_disk=config.cache_latents_to_disk,
            )
        )
    return tuple(items)


def load_reference(ref: ReferenceItem) -> torch.Tensor:
    """The reference's pixels: (3, bucket_h, bucket_w) float32 in [-1, 1], resized, cropped, flipped.

    With ``ref.resize`` this is the diffusers FLUX.2 pipelines' preprocessing of a reference
    (Lanczos resize, then a center crop with the left/top offsets floored, then 2 x / 255 - 1),
    equal to the pipeline's tensor for RGB images (tested).
    """
    img = read_rgb(ref.image.path, ref.dataset_key)
    if ref.resize is None:
        img = resize_and_crop(img, ref.bucket)
    else:
        if img.size != ref.resize:
            img = img.resize(ref.resize, Image.Resampling.LANCZOS)
        (w, h), (bw, bh) = img.size, ref.bucket
        left, top = (w - bw) // 2, (h - bh) // 2
        img = img.crop((left, top, left + bw, top + bh))
    return image_to_tensor(flip(img, ref.flip_x, ref.flip_y))
