"""Dataset folders -> training items -> image tensors and collated batches.

The flow::

    items = build_items(process.datasets, process.trigger_word,
                        model.capabilities.bucket_divisibility,
                        [f"config.process[0].datasets[{i}]" for i in ...])   # before any model loads
    latents = LatentCache(encode_images, vae_id); latents.fill(items)       # latent_cache.py
    loader = make_dataloader(items, batch_size, seed, latent_cache=latents)
    for batch in loader: ...                                                # TrainBatch

Decisions (the "why" the code cannot say):

- A folder is scanned flat (not recursively), files sorted by name, images
  ``.jpg .jpeg .png .webp`` in any letter case, hidden files (``.name``) skipped.
  Every image is decoded once at scan time (JPEGs at 1/8 scale, which still reads
  the whole stream), so a corrupt file is reported before an hour of latent caching
  rather than in the middle of training.
- Sizes are read after the EXIF orientation is applied, as the pixels are loaded.
- Images with transparency are composited over white (dropping alpha would expose
  whatever colour the transparent pixels happen to store, often black).
- ``resolution: [512, 768, 1024]`` makes one item per image per resolution;
  ``num_repeats`` repeats every item; ``flip_x`` / ``flip_y`` add mirrored copies
  (with both: x, y and the xy flip), which are distinct items with their own latent
  cache entries, as in ai-toolkit. An image smaller than a resolution trains at its
  own size (never upscaled, see :mod:`toolkit.data.buckets`), so small images recur
  once per resolution in the same bucket; the latent cache encodes them once.
- A caption is drawn per (seed, epoch, item) from its own ``random.Random``: the same
  in every DataLoader worker and in a resumed run.
- ``control_path`` (reference / edit images, :mod:`toolkit.data.references`): each target
  is paired with the same-named image of every control folder; a target missing one is
  skipped (warned, counted). References follow the target's flips, are always cached
  (:class:`~toolkit.data.latent_cache.LatentCache` with :func:`~toolkit.data.references.load_reference`)
  and their sizes are part of the batch group, so a batch stacks them.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from PIL import Image, ImageOps

from toolkit.data.buckets import BucketBatchSampler, DrawKey, epoch_batches, make_bucket
from toolkit.data.captions import CaptionOptions, caption_variants as _caption_variants, clean_caption, process_caption
from toolkit.data.errors import DatasetError

if TYPE_CHECKING:
    from toolkit.config_modules import DatasetConfig
    from toolkit.data.latent_cache import LatentCache
    from toolkit.data.masks import MaskSource
    from toolkit.data.references import ReferenceItem

log = logging.getLogger(__name__)

__all__ = [
    "IMAGE_EXTENSIONS",
    "LATENT_CACHE_DIRNAME",
    "DatasetError",
    "ImageItem",
    "TrainItem",
    "TrainBatch",
    "TrainDataset",
    "BucketBatchSampler",
    "DrawKey",
    "epoch_batches",
    "make_bucket",
    "scan_folder",
    "build_items",
    "caption_variants",
    "caption_rng",
    "load_image",
    "open_rgb",
    "resize_and_crop",
    "image_to_tensor",
    "collate_batch",
    "make_dataloader",
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


@dataclasses.dataclass(frozen=True)
class TrainItem:
    """One training example: an image at one bucket size, possibly mirrored.

    bucket: (width, height) of the tensor it becomes, multiples of the divisibility.
    dataset_key: where its dataset sits in the job file (``config.process[0].datasets[1]``).
    references: its reference (edit) images, one per ``control_path`` folder, in order.
    mask: its loss mask (``mask_path`` / ``alpha_mask``, :mod:`toolkit.data.masks`), or None.
    network_weight, loss_multiplier: its dataset's LoRA multiplier while training and loss weight.
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


def _oriented_size(path: Path) -> tuple[int, int]:
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
    files = sorted(
        p for p in folder.iterdir()
        if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".") and p.is_file()
    )
    if not files:
        raise DatasetError(
            f"{key}: no images ({' '.join(IMAGE_EXTENSIONS)}) in {folder}; "
            "put the training images directly in this folder (sub-folders are not read)"
        )
    images: list[ImageItem] = []
    unreadable: list[str] = []
    uncaptioned = 0
    for path in files:
        try:
            width, height = _oriented_size(path)
        except Exception as exc:  # noqa: BLE001 - PIL raises many types for broken files; each is reported
            unreadable.append(f"{path.name} ({type(exc).__name__}: {exc})")
            continue
        caption = _read_caption(path, config, key)
        uncaptioned += caption == ""
        stat = path.stat()
        images.append(ImageItem(path.resolve(), caption, width, height, stat.st_size, stat.st_mtime_ns))
    if unreadable:
        log.warning("%s: skipped %d unreadable image(s) in %s: %s", key, len(unreadable), folder, "; ".join(unreadable))
    if not images:
        raise DatasetError(f"{key}: none of the {len(files)} images in {folder} could be read: {'; '.join(unreadable)}")
    if uncaptioned:
        log.warning(
            "%s: %d of %d images in %s have no caption (no .%s file, or an empty one, and no default_caption); "
            "they train with an empty caption (the trigger word alone when one is set)",
            key, uncaptioned, len(images), folder, config.caption_ext,
        )
    return images


def _expand(
    images: list[ImageItem], config: DatasetConfig, index: int, key: str, trigger_word: str | None, divisibility: int,
    references: dict[Path, tuple[ImageItem, ...]] | None = None, reference_max_pixels: int = 0,
    masks: dict[Path, MaskSource] | None = None,
) -> list[TrainItem]:
    """Images x resolutions x flips, each repeated ``num_repeats`` times.

    ``references``: target path -> its reference images (from :func:`~toolkit.data.references.pair_references`).
    """
    from toolkit.data.references import reference_items

    options = _caption_options(config, trigger_word)
    flips = [(fx, fy) for fx in {False, config.flip_x} for fy in {False, config.flip_y}]
    items: list[TrainItem] = []
    for resolution in config.resolutions:
        small = sum(img.width * img.height < resolution * resolution for img in images)
        if small:
            log.warning(
                "%s: %d of %d images are smaller than resolution %d; they train at their own size (never upscaled)",
                key, small, len(images), resolution,
            )
        for image in images:
            bucket = make_bucket(image.width, image.height, resolution, divisibility)
            for flip_x, flip_y in sorted(flips):
                refs = reference_items((references or {}).get(image.path, ()), bucket, config, key, flip_x, flip_y,
                                       divisibility, reference_max_pixels)
                item = TrainItem(
                    image=image, bucket=bucket, resolution=resolution, captions=options, dataset_index=index,
                    dataset_key=key, flip_x=flip_x, flip_y=flip_y, is_reg=config.is_reg,
                    cache_latents=config.cache_latents, cache_latents_to_disk=config.cache_latents_to_disk,
                    references=refs, mask=(masks or {}).get(image.path), network_weight=config.network_weight,
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
    from toolkit.data.masks import pair_masks
    from toolkit.data.references import pair_references

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
            items += _expand(images, config, index, key, trigger_word, divisibility, references, reference_max_pixels,
                             masks)
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


# --------------------------------------------------------------------------- pixels


def _to_rgb(img: Image.Image) -> Image.Image:
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
        raise DatasetError(f"{dataset_key}: cannot read {path} ({exc}); was it changed or removed "
                           "after the dataset was scanned?") from exc


def flip(img: Image.Image, flip_x: bool, flip_y: bool) -> Image.Image:
    if flip_x:
        img = ImageOps.mirror(img)
    if flip_y:
        img = ImageOps.flip(img)
    return img


def load_image(item: TrainItem) -> torch.Tensor:
    """The item's pixels: (3, bucket_h, bucket_w) float32 in [-1, 1], oriented, cropped, flipped."""
    img = resize_and_crop(read_rgb(item.image.path, item.dataset_key), item.bucket)
    return image_to_tensor(flip(img, item.flip_x, item.flip_y))


# --------------------------------------------------------------------------- batches


def caption_rng(seed: int, epoch: int, index: int) -> random.Random:
    """The generator of item ``index``'s caption draw in ``epoch`` (stable across processes)."""
    return random.Random(f"caption:{seed}:{epoch}:{index}")


@dataclasses.dataclass
class TrainBatch:
    """One collated batch; exactly one of ``latents`` / ``images`` is set.

    latents: (B, C, h, w) as the model's ``encode_images`` returned them (from the cache).
    images: (B, 3, H, W) float32 in [-1, 1], for the trainer to encode.
    is_reg: (B,) bool. epoch, batch: this batch's position in the sampler's order.
    references: the reference images' cached latents, one (B, C, h_i, w_i) tensor per
    reference in ``control_path`` order; None when the items have none.
    masks: (B, 1, H, W) float32 loss masks at pixel resolution (ones for items without one); None when no
    item has one. network_weights, loss_multipliers: (B,) float32 per item. triggers: each item's trigger word.
    """

    indices: list[int]
    captions: list[str]
    latents: torch.Tensor | None
    images: torch.Tensor | None
    is_reg: torch.Tensor
    epoch: int
    batch: int
    references: list[torch.Tensor] | None = None
    masks: torch.Tensor | None = None
    network_weights: torch.Tensor | None = None
    loss_multipliers: torch.Tensor | None = None
    triggers: list[str | None] | None = None

    def slice(self, lo: int, hi: int) -> TrainBatch:
        """Items [lo, hi) of this batch."""
        def cut(value):
            return None if value is None else value[lo:hi]

        references = None if self.references is None else [cut(ref) for ref in self.references]
        return dataclasses.replace(
            self, indices=self.indices[lo:hi], captions=self.captions[lo:hi], latents=cut(self.latents),
            images=cut(self.images), is_reg=self.is_reg[lo:hi], references=references, masks=cut(self.masks),
            network_weights=cut(self.network_weights), loss_multipliers=cut(self.loss_multipliers),
            triggers=cut(self.triggers),
        )

    def resume_state(self) -> dict:
        """``BucketBatchSampler.load_state_dict`` input that resumes right after this batch."""
        return {"epoch": self.epoch, "batch": self.batch + 1}

    def pin_memory(self) -> "TrainBatch":
        # DataLoader(pin_memory=True) calls this on custom batch types.
        return dataclasses.replace(
            self,
            latents=None if self.latents is None else self.latents.pin_memory(),
            images=None if self.images is None else self.images.pin_memory(),
            is_reg=self.is_reg.pin_memory(),
            references=None if self.references is None else [r.pin_memory() for r in self.references],
            masks=None if self.masks is None else self.masks.pin_memory(),
        )


class TrainDataset(torch.utils.data.Dataset):
    """Items -> samples. Index it with the sampler's :class:`DrawKey` (or a plain index: epoch 0).

    A sample is a dict: ``index``, ``epoch``, ``batch``, ``caption`` (one draw),
    ``is_reg``, and ``latents`` (C, h, w) when the item's latents are cached in
    ``latent_cache``, else ``image`` (3, H, W) float32 in [-1, 1]; plus ``references``
    (a list of (C, h_i, w_i) latents from ``reference_cache``) when the item has references.
    """

    def __init__(self, items: Sequence[TrainItem], seed: int, latent_cache: LatentCache | None = None,
                 reference_cache: LatentCache | None = None):
        self.items = list(items)
        self.seed = seed
        self.latent_cache = latent_cache
        self.reference_cache = reference_cache

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: DrawKey | int) -> dict:
        epoch, batch, index = key if isinstance(key, tuple) else (0, -1, int(key))
        item = self.items[index]
        sample = {
            "index": index, "epoch": epoch, "batch": batch, "is_reg": item.is_reg,
            "caption": item.draw_caption(caption_rng(self.seed, epoch, index)),
            "network_weight": item.network_weight, "loss_multiplier": item.loss_multiplier,
            "trigger": item.trigger_word,
        }
        if item.mask is not None:
            from toolkit.data.masks import load_mask

            sample["mask"] = load_mask(item)
        if self.latent_cache is not None and item.latents_cached:
            sample["latents"] = self.latent_cache.get(item)
        else:
            sample["image"] = load_image(item)
        if item.references:
            if self.reference_cache is None:
                raise DatasetError(f"{item.dataset_key}: {item.image.path.name} has reference images but the dataset "
                                   "has no reference cache; fill one (LatentCache with load_reference) first")
            sample["references"] = [self.reference_cache.get(ref) for ref in item.references]
        return sample


def collate_batch(samples: list[dict]) -> TrainBatch:
    """Stack samples of one bucket into a :class:`TrainBatch`."""
    kinds = {"latents" if "latents" in s else "image" for s in samples}
    if len(kinds) != 1:
        raise ValueError("a batch mixes cached latents and images; batch with BucketBatchSampler (item.batch_group)")
    stacked = torch.stack([s["latents"] if "latents" in s else s["image"] for s in samples])
    counts = {len(s.get("references", ())) for s in samples}
    if len(counts) != 1:
        raise ValueError("a batch mixes items with different reference counts; batch with BucketBatchSampler "
                         "(item.batch_group)")
    references = [torch.stack([s["references"][i] for s in samples]) for i in range(counts.pop())]
    masks = None
    if any("mask" in s for s in samples):
        size = next(s["mask"] for s in samples if "mask" in s).shape
        masks = torch.stack([s["mask"] if "mask" in s else torch.ones(size) for s in samples])
    return TrainBatch(
        indices=[s["index"] for s in samples],
        captions=[s["caption"] for s in samples],
        latents=stacked if kinds == {"latents"} else None,
        images=stacked if kinds == {"image"} else None,
        is_reg=torch.tensor([s["is_reg"] for s in samples], dtype=torch.bool),
        epoch=samples[0]["epoch"],
        batch=samples[0]["batch"],
        references=references or None,
        masks=masks,
        network_weights=torch.tensor([s.get("network_weight", 1.0) for s in samples], dtype=torch.float32),
        loss_multipliers=torch.tensor([s.get("loss_multiplier", 1.0) for s in samples], dtype=torch.float32),
        triggers=[s.get("trigger") for s in samples],
    )


def make_dataloader(
    items: Sequence[TrainItem],
    batch_size: int,
    seed: int,
    latent_cache: LatentCache | None = None,
    num_workers: int = 0,
    drop_last: bool = False,
    pin_memory: bool = False,
    reference_cache: LatentCache | None = None,
    prefetch_factor: int = 2,
) -> torch.utils.data.DataLoader:
    """A DataLoader of :class:`TrainBatch`; its ``batch_sampler`` is the :class:`BucketBatchSampler`.

    ``reference_cache``: the filled cache of the items' reference latents (items with references need it).
    ``num_workers``: worker processes loading samples (0 = this process); each draws exactly the samples the
    main process would (captions are seeded per item and epoch), so the batches do not depend on it.

    One pass over the loader is one epoch; iterate it again for the next. To resume,
    ``loader.batch_sampler.load_state_dict(saved_batch.resume_state())`` before iterating.
    """
    items = list(items)
    sampler = BucketBatchSampler([item.batch_group for item in items], batch_size, seed, drop_last=drop_last)
    return torch.utils.data.DataLoader(
        TrainDataset(items, seed, latent_cache, reference_cache),
        batch_sampler=sampler,
        collate_fn=collate_batch,
        num_workers=num_workers,
        pin_memory=pin_memory,
        persistent_workers=num_workers > 0,
        prefetch_factor=prefetch_factor if num_workers > 0 else None,
    )
