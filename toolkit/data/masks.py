"""Loss masks (ai-toolkit's ``mask_path`` / ``alpha_mask`` / ``invert_mask`` / ``mask_min_value``).

A mask is a grey image the size of its training image: white pixels train fully, black ones not at all.
It comes from ``mask_path/<image stem>.<any image extension>`` or, with ``alpha_mask``, from the image's own
alpha channel (an image without one is fully opaque: weight 1). It is oriented (EXIF), resized and cropped to
the item's bucket and flipped exactly like the pixels, optionally inverted, then mapped from [0, 1] to
[``mask_min_value``, 1]. The trainer averages it down to latent resolution and weights the per-element loss
with it (:func:`toolkit.train.losses.mask_weights`).

Differences from ai-toolkit, on purpose: ai-toolkit blurs each mask by a random radius (up to 0.5% of its
short side) every time it loads it and shrinks it to latent resolution by nearest-neighbour sampling; here the
shrink is an area average (a latent cell's weight is the mean of the pixels it covers), which is smooth and
deterministic. An image with no mask file in ``mask_path`` trains unmasked (weight 1, counted in one
warning); ai-toolkit gave it weight 0 when it shared a batch with a masked image and 1 otherwise.
"""

from __future__ import annotations

import dataclasses
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from toolkit.data.errors import DatasetError

if TYPE_CHECKING:
    import torch

    from toolkit.config_modules import DatasetConfig
    from toolkit.data.images import ImageItem
    from toolkit.data.items import TrainItem

log = logging.getLogger(__name__)

_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")


@dataclasses.dataclass(frozen=True)
class MaskSource:
    """Where an item's mask comes from and how it is mapped.

    path: the mask file, or the image itself when ``from_alpha``.
    """

    path: Path
    from_alpha: bool = False
    invert: bool = False
    min_value: float = 0.0


def pair_masks(images: list[ImageItem], config: DatasetConfig, key: str) -> dict[Path, MaskSource]:
    """image path -> its mask, for a dataset with ``mask_path`` or ``alpha_mask`` (else {})."""
    if config.alpha_mask:
        return {img.path: MaskSource(img.path, True, config.invert_mask, config.mask_min_value) for img in images}
    if config.mask_path is None:
        return {}
    folder = Path(config.mask_path).expanduser()
    if not folder.is_dir():
        raise DatasetError(
            f"{key}.mask_path: {folder} is not a folder; set mask_path to the folder that holds the "
            "masks (named like the images)"
        )
    by_stem: dict[str, Path] = {}
    for path in sorted(folder.iterdir()):
        if path.suffix.lower() in _EXTENSIONS and not path.name.startswith("."):
            by_stem.setdefault(path.stem, path)
    masks = {
        img.path: MaskSource(by_stem[img.path.stem], False, config.invert_mask, config.mask_min_value)
        for img in images
        if img.path.stem in by_stem
    }
    missing = len(images) - len(masks)
    if missing == len(images):
        raise DatasetError(
            f"{key}.mask_path: none of the {len(images)} images has a mask in {folder} (a mask is "
            "named like its image: photo.jpg -> photo.png); check the folder"
        )
    if missing:
        log.warning(
            "%s.mask_path: %d of %d images have no mask in %s; they train unmasked", key, missing, len(images), folder
        )
    return masks


def _grey(source: MaskSource, dataset_key: str) -> Image.Image:
    try:
        with Image.open(source.path) as opened:
            img = ImageOps.exif_transpose(opened)
            if not source.from_alpha:
                return img.convert("L")
            if "A" in img.getbands() or (img.mode == "P" and "transparency" in img.info):
                return img.convert("RGBA").getchannel("A")
            return Image.new("L", img.size, 255)  # no alpha channel: fully opaque
    except OSError as exc:
        raise DatasetError(f"{dataset_key}: cannot read mask {source.path} ({exc})") from exc


def load_mask(item: TrainItem) -> torch.Tensor:
    """The item's mask: (1, bucket_h, bucket_w) float32 in [min_value, 1], aligned with :func:`load_image`."""
    import torch  # pixels only: pairing masks (dataset scanning, config checks) stays torch-free

    from toolkit.data.dataset import flip, resize_and_crop

    source = item.mask
    img = _grey(source, item.dataset_key)
    if img.size != (item.image.width, item.image.height):  # a mask at another resolution covers the same image
        img = img.resize((item.image.width, item.image.height), Image.Resampling.BILINEAR)
    img = flip(resize_and_crop(img, item.bucket), item.flip_x, item.flip_y)
    mask = torch.from_numpy(np.array(img, dtype=np.float32) / 255.0).unsqueeze(0)
    if source.invert:
        mask = 1.0 - mask
    return source.min_value + mask * (1.0 - source.min_value)
