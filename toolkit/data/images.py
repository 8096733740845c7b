"""Image files: scanning facts and pixels, shared by datasets, references and the models (no torch at import).

Why these decisions: sizes are read after the EXIF orientation is applied, as the pixels are loaded;
images with transparency are composited over white (dropping alpha would expose whatever colour the
transparent pixels happen to store, often black). `open_rgb` is also what the models use for ``ctrl_img``
at sampling, so training and inference see a reference image the same way.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps

from toolkit.data.errors import DatasetError

if TYPE_CHECKING:
    import torch

__all__ = [
    "IMAGE_EXTENSIONS",
    "LATENT_CACHE_DIRNAME",
    "ImageItem",
    "oriented_size",
    "open_rgb",
    "read_rgb",
    "resize_and_crop",
    "image_to_tensor",
    "flip",
    "unreadable_images",
]

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp")
LATENT_CACHE_DIRNAME = "_latent_cache"
_ROTATED_ORIENTATIONS = {5, 6, 7, 8}  # EXIF orientations that swap width and height
_EXIF_ORIENTATION = 0x0112


@dataclasses.dataclass(frozen=True)
class ImageItem:
    """One image file of a dataset folder.

    width, height: pixels after the EXIF orientation. caption: the cleaned caption
    text (file, else ``default_caption``, else ``""``) before trigger word and dropout.
    file_size, mtime_ns: the file's identity in the latent cache key.
    """

    path: Path
    caption: str
    width: int
    height: int
    file_size: int
    mtime_ns: int


def oriented_size(path: Path) -> tuple[int, int]:
    """(width, height) after EXIF orientation; raises whatever PIL raises for a broken file."""
    with Image.open(path) as img:
        img.verify()  # structure and checksums (PNG CRCs); says nothing about a truncated JPEG
    with Image.open(path) as img:
        width, height = img.size
        orientation = img.getexif().get(_EXIF_ORIENTATION, 1)
        # Decoding is the only check that catches truncated data; draft() makes JPEGs decode
        # at 1/8 scale, which still reads the whole stream.
        img.draft("RGB", (max(1, width // 8), max(1, height // 8)))
        img.load()
    return (height, width) if orientation in _ROTATED_ORIENTATIONS else (width, height)


_HIGH_BIT_DEPTH = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit / 32-bit / float grayscale -> 8-bit "L", scaled (PIL's convert clips everything above 255
    to white). Integer images are taken as 16-bit (PNG's deepest), float ones as 0..1 (0..255 when larger)."""
    array = np.asarray(img, dtype=np.float64)
    if img.mode == "F":
        scale = 255.0 if float(np.nanmax(array, initial=0.0)) <= 1.0 else 1.0
    else:
        scale = 255.0 / 65535.0
    return Image.fromarray(np.clip(np.rint(np.nan_to_num(array) * scale), 0, 255).astype(np.uint8), mode="L")


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in _HIGH_BIT_DEPTH:
        img = _to_8bit(img)
    has_alpha = img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)
    if not has_alpha:
        return img.convert("RGB")
    rgba = img.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def resize_and_crop(img: Image.Image, bucket: tuple[int, int]) -> Image.Image:
    """Resize (Lanczos) to the smallest size covering ``bucket`` = (width, height), then center-crop."""
    bw, bh = bucket
    w, h = img.size
    scale = max(bw / w, bh / h)
    nw, nh = max(bw, round(w * scale)), max(bh, round(h * scale))
    if (nw, nh) != (w, h):
        img = img.resize((nw, nh), Image.Resampling.LANCZOS)
    left, top = (nw - bw) // 2, (nh - bh) // 2
    return img.crop((left, top, left + bw, top + bh))


def image_to_tensor(img: Image.Image) -> torch.Tensor:
    """RGB PIL image -> (3, H, W) float32 in [-1, 1]."""
    import numpy as np
    import torch  # here, not at the top: validating a dataset (scanning, pairing) imports no torch

    array = np.array(img.convert("RGB"), dtype=np.uint8)
    return torch.from_numpy(array).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


def open_rgb(path: Path) -> Image.Image:
    """The file's pixels as RGB: EXIF orientation applied, transparency composited over white."""
    with Image.open(path) as opened:
        return _to_rgb(ImageOps.exif_transpose(opened))


def read_rgb(path: Path, dataset_key: str) -> Image.Image:
    """:func:`open_rgb` for a scanned dataset file: a file gone or broken since the scan is a DatasetError."""
    try:
        return open_rgb(path)
    except OSError as exc:
        raise DatasetError(
            f"{dataset_key}: cannot read {path} ({exc}); was it changed or removed after the dataset was scanned?"
        ) from exc


def flip(img: Image.Image, flip_x: bool, flip_y: bool) -> Image.Image:
    if flip_x:
        img = ImageOps.mirror(img)
    if flip_y:
        img = ImageOps.flip(img)
    return img


def unreadable_images(paths: list[str]) -> list[str]:
    """Why each of `paths` is not a readable image (checked before the model loads)."""
    problems = []
    for path in paths:
        file = Path(path).expanduser()
        if not file.is_file():
            problems.append(f"'{file}' does not exist; set it to a reference image file")
            continue
        try:
            with Image.open(file) as img:
                img.verify()
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken files
            problems.append(f"'{file}' is not a readable image ({type(exc).__name__}: {exc})")
    return problems
