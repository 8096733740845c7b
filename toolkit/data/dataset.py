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
from typing import TYPE_CHECKING

import torch

from toolkit.data.buckets import BucketBatchSampler, DrawKey, epoch_batches, make_bucket
from toolkit.data.errors import DatasetError
from toolkit.data.images import (
    IMAGE_EXTENSIONS,
    LATENT_CACHE_DIRNAME,
    ImageItem,
    flip,
    image_to_tensor,
    open_rgb,
    read_rgb,
    resize_and_crop,
)
from toolkit.data.items import TrainItem, build_items, caption_variants, scan_folder

if TYPE_CHECKING:
    from toolkit.data.latent_cache import LatentCache

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

# --------------------------------------------------------------------------- pixels


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
            self,
            indices=self.indices[lo:hi],
            captions=self.captions[lo:hi],
            latents=cut(self.latents),
            images=cut(self.images),
            is_reg=self.is_reg[lo:hi],
            references=references,
            masks=cut(self.masks),
            network_weights=cut(self.network_weights),
            loss_multipliers=cut(self.loss_multipliers),
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

    def __init__(
        self,
        items: Sequence[TrainItem],
        seed: int,
        latent_cache: LatentCache | None = None,
        reference_cache: LatentCache | None = None,
    ):
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
            "index": index,
            "epoch": epoch,
            "batch": batch,
            "is_reg": item.is_reg,
            "caption": item.draw_caption(caption_rng(self.seed, epoch, index)),
            "network_weight": item.network_weight,
            "loss_multiplier": item.loss_multiplier,
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
                raise DatasetError(
                    f"{item.dataset_key}: {item.image.path.name} has reference images but the dataset "
                    "has no reference cache; fill one (LatentCache with load_reference) first"
                )
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
        raise ValueError(
            "a batch mixes items with different reference counts; batch with BucketBatchSampler (item.batch_group)"
        )
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


def close_dataloader(loader: torch.utils.data.DataLoader | None) -> None:
    """Stop ``loader``'s worker processes now. With ``persistent_workers`` they otherwise live until the loader
    is garbage-collected, which can be much later (it sits in reference cycles), and then block whoever triggered
    that collection while they are joined. torch has no public call for this; ``_shutdown_workers`` is what the
    iterator's own ``__del__`` runs."""
    iterator = getattr(loader, "_iterator", None)
    if iterator is not None and hasattr(iterator, "_shutdown_workers"):
        iterator._shutdown_workers()
    if loader is not None:
        loader._iterator = None


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
