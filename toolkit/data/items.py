"""Dataset folders -> training items, without torch: what validation checks and the trainer trains on.

Scanning decodes every image once (JPEGs at 1/8 scale, which still reads the whole stream), so a corrupt
file is reported before an hour of latent caching rather than in the middle of training; see
toolkit/data/dataset.py for the other decisions (flips, resolutions, captions, references).
"""

from __future__ import annotations

import dataclasses
import errno
import logging
import os
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from toolkit.data.buckets import make_bucket
from toolkit.data.captions import CaptionOptions, caption_variants as _caption_variants, clean_caption, process_caption
from toolkit.data.errors import DatasetError
from toolkit.data.images import IMAGE_EXTENSIONS, LATENT_CACHE_DIRNAME, ImageItem, oriented_size
from toolkit.data.masks import MaskSource, pair_masks
from toolkit.data.references import ReferenceItem, pair_references, reference_items

if TYPE_CHECKING:
    from toolkit.config_modules import DatasetConfig

log = logging.getLogger(__name__)

__all__ = ["TrainItem", "scan_folder", "build_items", "caption_variants"]


@dataclasses.dataclass(frozen=True)
class TrainItem:
    """One training example: an image at one bucket size, possibly mirrored.

    bucket: (width, height) of the tensor it becomes, multiples of the divisibility.
    dataset_key: where its dataset sits in the job file (``config.process[0].datasets[1]``).
    references: its reference (edit) images, one per ``control_path`` folder, in order.
    """

    image: ImageItem
    bucket: tuple[int, int]
    resolution: int
    captions: CaptionOptions
    dataset_index: int = 0
    dataset_key: str = "datasets[0]"
    flip_x: bool = False
    flip_y: bool = False
    is_reg: bool = False
    cache_latents: bool = False
    cache_latents_to_disk: bool = False
    references: tuple[ReferenceItem, ...] = ()
    mask: MaskSource | None = None
    network_weight: float = 1.0
    loss_multiplier: float = 1.0

    @property
    def trigger_word(self) -> str | None:
        """The trigger word its captions get (its dataset's, else the process's)."""
        return self.captions.trigger_word

    @property
    def latents_cached(self) -> bool:
        """Whether a :class:`~toolkit.data.latent_cache.LatentCache` holds this item's latents."""
        return self.cache_latents or self.cache_latents_to_disk

    @property
    def cache_dir(self) -> Path:
        """``<folder_path>/_latent_cache``: where its latents go with ``cache_latents_to_disk``."""
        return self.image.path.parent / LATENT_CACHE_DIRNAME

    @property
    def batch_group(self) -> tuple:
        """What the items of one batch share: the bucket size, latents-or-pixels, and the reference sizes."""
        group = (*self.bucket, self.latents_cached)
        # Items without references keep the 3-tuple, so their batch order is unchanged by this feature.
        return group + (tuple(ref.bucket for ref in self.references),) if self.references else group

    def draw_caption(self, rng: random.Random) -> str:
        return process_caption(self.image.caption, self.captions, rng)


def _caption_options(config: DatasetConfig, trigger_word: str | None) -> CaptionOptions:
    return CaptionOptions(
        trigger_word=config.trigger_word if config.trigger_word is not None else trigger_word,
        add_trigger=not config.is_reg,
        dropout_rate=config.caption_dropout_rate,
        shuffle_tokens=config.shuffle_tokens,
        keep_tokens=config.keep_tokens,
        token_dropout_rate=config.token_dropout_rate,
    )


# --------------------------------------------------------------------------- scanning


def _read_caption(image_path: Path, config: DatasetConfig, key: str) -> str:
    caption_path = image_path.with_suffix(f".{config.caption_ext}")
    text = ""
    if caption_path.is_file():
        try:
            text = clean_caption(caption_path.read_text(encoding="utf-8-sig"))
        except UnicodeDecodeError as exc:
            raise DatasetError(
                f"{key}: caption file {caption_path} is not UTF-8 text ({exc.reason}); re-save it as UTF-8"
            ) from exc
    if not text and config.default_caption is not None:
        text = clean_caption(config.default_caption)
    return text


def _not_a_file(path: Path) -> str:
    """Why an image-named entry of a dataset folder is not a readable file."""
    if path.is_symlink():
        try:
            os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                return "symlink loop"
            return f"dangling symlink to {os.readlink(path)}"
    return "a folder, not a file" if path.is_dir() else "not a regular file"


def scan_folder(config: DatasetConfig, key: str) -> list[ImageItem]:
    """Every readable image of ``config.folder_path`` (not recursive), sorted by file name.

    ``key`` is the folder's key path for messages (``config.process[0].datasets[1].folder_path``).
    Unreadable images are skipped with one warning; so is the count of images with no
    caption. Raises DatasetError when the folder is missing or holds no readable image.
    """
    folder = Path(config.folder_path).expanduser()
    if not folder.is_dir():
        what = "is not a folder" if folder.exists() else "does not exist"
        raise DatasetError(f"{key}: {folder} {what}; set folder_path to the folder that holds your images")
    # Hidden files are skipped: macOS copies leave "._name.jpg" resource forks beside images.
    candidates = sorted(
        p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")
    )
    files = [p for p in candidates if p.is_file()]
    # Named in the one "skipped" warning below, never dropped silently: links to nothing or to themselves.
    unreadable: list[str] = [f"{p.name} ({_not_a_file(p)})" for p in candidates if not p.is_file()]
    if not files:
        raise DatasetError(
            f"{key}: no images ({' '.join(IMAGE_EXTENSIONS)}) in {folder}; "
            "put the training images directly in this folder (sub-folders are not read)"
        )
    images: list[ImageItem] = []
    uncaptioned = 0
    for path in files:
        try:
            width, height = oriented_size(path)
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken files; each is reported
            unreadable.append(f"{path.name} ({type(exc).__name__}: {exc})")
            continue
        caption = _read_caption(path, config, key)
        uncaptioned += caption == ""
        stat = path.stat()
        images.append(ImageItem(path.resolve(), caption, width, height, stat.st_size, stat.st_mtime_ns))
    if unreadable:
        log.warning("%s: skipped %d unreadable file(s) in %s: %s", key, len(unreadable), folder, "; ".join(unreadable))
    if not images:
        raise DatasetError(f"{key}: none of the {len(files)} images in {folder} could be read: {'; '.join(unreadable)}")
    if uncaptioned:
        log.warning(
            "%s: %d of %d images in %s have no caption (no .%s file, or an empty one, and no default_caption); "
            "they train with an empty caption (the trigger word alone when one is set)",
            key,
            uncaptioned,
            len(images),
            folder,
            config.caption_ext,
        )
    return images


def _expand(
    images: list[ImageItem],
    config: DatasetConfig,
    index: int,
    key: str,
    trigger_word: str | None,
    divisibility: int,
    references: dict[Path, tuple[ImageItem, ...]] | None = None,
    reference_max_pixels: int = 0,
    masks: dict[Path, MaskSource] | None = None,
) -> list[TrainItem]:
    """Images x resolutions x flips, each repeated ``num_repeats`` times.

    ``references``: target path -> its reference images (from :func:`~toolkit.data.references.pair_references`).
    """
    options = _caption_options(config, trigger_word)
    flips = [(fx, fy) for fx in {False, config.flip_x} for fy in {False, config.flip_y}]
    items: list[TrainItem] = []
    for resolution in config.resolutions:
        small = sum(img.width * img.height < resolution * resolution for img in images)
        tiny = [img.path.name for img in images if min(img.width, img.height) < divisibility]
        if small - len(tiny) > 0:
            log.warning(
                "%s: %d of %d images are smaller than resolution %d; they train at their own size (never upscaled)",
                key,
                small - len(tiny),
                len(images),
                resolution,
            )
        if tiny:
            log.warning(
                "%s: %d image(s) have a side under %d px, the smallest the model takes; they are upscaled to it "
                "(the only upscaling): %s",
                key,
                len(tiny),
                divisibility,
                ", ".join(tiny[:8]) + (f" and {len(tiny) - 8} more" if len(tiny) > 8 else ""),
            )
        for image in images:
            bucket = make_bucket(image.width, image.height, resolution, divisibility)
            for flip_x, flip_y in sorted(flips):
                refs = reference_items(
                    (references or {}).get(image.path, ()),
                    bucket,
                    config,
                    key,
                    flip_x,
                    flip_y,
                    divisibility,
                    reference_max_pixels,
                )
                item = TrainItem(
                    image=image,
                    bucket=bucket,
                    resolution=resolution,
                    captions=options,
                    dataset_index=index,
                    dataset_key=key,
                    flip_x=flip_x,
                    flip_y=flip_y,
                    is_reg=config.is_reg,
                    cache_latents=config.cache_latents,
                    cache_latents_to_disk=config.cache_latents_to_disk,
                    references=refs,
                    mask=(masks or {}).get(image.path),
                    network_weight=config.network_weight,
                    loss_multiplier=config.loss_multiplier,
                )
                items += [item] * config.num_repeats
    return items


def build_items(
    dataset_configs: Sequence[DatasetConfig],
    trigger_word: str | None,
    divisibility: int,
    keys: Sequence[str] | None = None,
    reference_max_pixels: int = 1024 * 1024,
) -> list[TrainItem]:
    """Every training item of every dataset of a job.

    ``divisibility``: ``model.capabilities.bucket_divisibility``. ``keys[i]``: the key
    path of dataset i (``config.process[0].datasets[i]``) used in messages; default
    ``datasets[i]``. ``reference_max_pixels``: ``model.capabilities.reference_max_pixels``
    (see :func:`~toolkit.data.buckets.reference_size`). The problems of all datasets are
    gathered into one DatasetError.
    """
    keys = list(keys) if keys is not None else [f"datasets[{i}]" for i in range(len(dataset_configs))]
    if len(keys) != len(dataset_configs):
        raise ValueError(f"{len(dataset_configs)} dataset configs but {len(keys)} keys")
    problems: list[str] = []
    items: list[TrainItem] = []
    for index, (config, key) in enumerate(zip(dataset_configs, keys)):
        try:
            images = scan_folder(config, f"{key}.folder_path")
            images, references = pair_references(images, config, key)
            masks = pair_masks(images, config, key)
            items += _expand(
                images, config, index, key, trigger_word, divisibility, references, reference_max_pixels, masks
            )
        except DatasetError as exc:
            problems.append(str(exc))
    if problems:
        if len(problems) == 1:
            raise DatasetError(problems[0])
        raise DatasetError(f"{len(problems)} dataset problems:\n" + "\n".join(f"  - {p}" for p in problems))
    return items


def caption_variants(items: Sequence[TrainItem]) -> list[str]:
    """Every distinct caption the items can draw, for :meth:`TextEmbeddingCache.fill`.

    Raises DatasetError naming the datasets whose ``shuffle_tokens`` / ``token_dropout_rate``
    make the captions vary without bound (their embeddings cannot be cached up front).
    """
    variants: dict[str, None] = {}
    dynamic: dict[str, None] = {}
    for item in items:
        try:
            variants.update(dict.fromkeys(_caption_variants(item.image.caption, item.captions)))
        except ValueError:
            dynamic[item.dataset_key] = None
    if dynamic:
        raise DatasetError(
            f"{', '.join(dynamic)}: shuffle_tokens / token_dropout_rate draw a different caption every step, "
            "so text embeddings cannot be cached; turn them off or set train.cache_text_embeddings: false"
        )
    return list(variants)
