"""Aspect-ratio buckets and the sampler that batches within a bucket (pure Python, no torch).

Bucket rule (:func:`make_bucket`): the bucket keeps the image's aspect ratio with an
area of about ``resolution**2``, both sides multiples of ``divisibility`` (the
model's ``capabilities.bucket_divisibility``: 16 for FLUX, VAE factor x patch size).
An image is **never upscaled**: one smaller than ``resolution**2`` gets a bucket of
its own area, as ai-toolkit does (``resolution = min(resolution, sqrt(w*h))`` in its
``get_bucket_for_image_size``); upscaling would teach the model the resampling blur.
The image is then resized to cover the bucket and center-cropped, so the crop is
at most one ``divisibility`` step per side.

Batch order (:func:`epoch_batches`) is a pure function of (groups, batch size, seed,
epoch): a resumed run reproduces it and skips the batches it already consumed.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Hashable, Iterator, Sequence

log = logging.getLogger(__name__)

__all__ = ["make_bucket", "reference_size", "epoch_batches", "BucketBatchSampler", "DrawKey"]


def make_bucket(width: int, height: int, resolution: int, divisibility: int) -> tuple[int, int]:
    """(width, height) of the bucket an image of ``width x height`` trains in at ``resolution``.

    Both sides are multiples of ``divisibility``, the area is at most
    ``min(resolution**2, width * height)``, neither side exceeds the image's (no
    upscaling), and among the sizes one ``divisibility`` step around the ideal the one
    closest to the image's aspect ratio wins (ties: the larger area). Only an image
    narrower than ``divisibility`` itself is upscaled, to one ``divisibility`` step.
    """
    if width <= 0 or height <= 0 or resolution <= 0 or divisibility <= 0:
        raise ValueError(f"make_bucket needs positive sizes, got {width}x{height} at {resolution} / {divisibility}")
    d = divisibility
    target_area = min(resolution * resolution, width * height)
    aspect = width / height
    ideal_w, ideal_h = math.sqrt(target_area * aspect), math.sqrt(target_area / aspect)
    max_w, max_h = max(d, width // d * d), max(d, height // d * d)

    def sides(ideal: float, limit: int) -> list[int]:
        low = max(d, min(limit, int(ideal // d) * d))
        return [low, low + d] if low + d <= limit else [low]

    candidates = [
        (w, h) for w in sides(ideal_w, max_w) for h in sides(ideal_h, max_h) if w * h <= max(target_area, d * d)
    ]
    if not candidates:  # only when flooring to the minimum side already overshoots a tiny area
        candidates = [(sides(ideal_w, max_w)[0], sides(ideal_h, max_h)[0])]
    return min(candidates, key=lambda wh: (abs(math.log(wh[0] / wh[1] / aspect)), -wh[0] * wh[1]))


def reference_size(
    width: int, height: int, max_pixels: int, divisibility: int
) -> tuple[tuple[int, int], tuple[int, int]]:
    """(resized, cropped): the sizes a reference (edit) image of ``width x height`` trains at.

    The rule of diffusers' ``Flux2Pipeline.__call__`` and ``Flux2KleinPipeline.__call__`` (0.42,
    "4. process images"), so training sees references exactly as inference does: an image of more
    than ``max_pixels`` pixels is resized (Lanczos) by ``sqrt(max_pixels / (w * h))``, each side
    truncated to an int (``Flux2ImageProcessor._resize_to_target_area``, max_pixels = 1024 * 1024);
    smaller images are never resized. Both sides are then center-cropped down to multiples of
    ``divisibility`` (``vae_scale_factor * 2`` = 16; ``Flux2ImageProcessor._resize_and_crop``).
    The cap holds for each reference whatever their number. (Black Forest Labs' own sampler,
    ``flux2/sampling.py encode_image_refs``, allows one reference up to 2024 * 2024 pixels and
    several up to 1024 * 1024 each; we follow diffusers, which is what samples and users run.)
    ``cropped`` has a zero side when the image is narrower than ``divisibility``.
    """
    if width <= 0 or height <= 0 or max_pixels <= 0 or divisibility <= 0:
        raise ValueError(f"reference_size needs positive sizes, got {width}x{height}, {max_pixels}, {divisibility}")
    if width * height > max_pixels:
        scale = math.sqrt(max_pixels / (width * height))
        width, height = int(width * scale), int(height * scale)
    d = divisibility
    return (width, height), (width // d * d, height // d * d)


def epoch_batches(
    groups: Sequence[Hashable], batch_size: int, seed: int, epoch: int, drop_last: bool = False
) -> list[list[int]]:
    """The batches of one epoch: lists of indices into ``groups``, each batch within one group.

    ``groups[i]`` is item i's group (its bucket size, plus anything else a batch must
    share). Within each group the items are shuffled and cut into batches of
    ``batch_size`` (a group's last batch may be smaller unless ``drop_last``); then the
    batches of all groups are shuffled together. Deterministic given (groups,
    batch_size, seed, epoch); the number of batches is the same every epoch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    # A str seed is hashed with SHA-512 by random.seed: stable across processes and
    # Python versions, unlike hash() of a tuple.
    rng = random.Random(f"buckets:{seed}:{epoch}")
    by_group: dict[Hashable, list[int]] = {}
    for index, group in enumerate(groups):
        by_group.setdefault(group, []).append(index)
    batches: list[list[int]] = []
    for group in sorted(by_group, key=repr):
        indices = by_group[group]
        rng.shuffle(indices)
        for start in range(0, len(indices), batch_size):
            batch = indices[start : start + batch_size]
            if len(batch) == batch_size or not drop_last:
                batches.append(batch)
    rng.shuffle(batches)
    return batches


class DrawKey(tuple):
    """What the sampler hands the dataset for one item: (epoch, batch, index).

    The dataset seeds the caption draw from it, and the collated batch reports its
    position, so neither depends on state living in a DataLoader worker.
    """

    __slots__ = ()

    def __new__(cls, epoch: int, batch: int, index: int):
        return super().__new__(cls, (epoch, batch, index))

    def __getnewargs__(self):
        return tuple(self)

    epoch = property(lambda self: self[0])
    batch = property(lambda self: self[1])
    index = property(lambda self: self[2])


class BucketBatchSampler:
    """Yields one epoch of bucket-pure batches per iteration, as lists of :class:`DrawKey`.

    Use it as a DataLoader ``batch_sampler``. Iterating starts at the current position
    (``epoch``, ``batch``) and, after the epoch's last batch, moves to the next epoch.
    ``state_dict()`` is the position of the next batch to *yield*; with DataLoader
    workers prefetching, the trainer should rather save the position of the batch it
    *consumed* (``TrainBatch.resume_state()``) and pass it to ``load_state_dict``.
    """

    def __init__(self, groups: Sequence[Hashable], batch_size: int, seed: int, drop_last: bool = False):
        if not groups:
            raise ValueError("BucketBatchSampler needs at least one item")
        self.groups = list(groups)
        self.batch_size = batch_size
        self.seed = seed
        self.drop_last = drop_last
        self.epoch = 0
        self.batch = 0
        self._cached: tuple[int, list[list[int]]] | None = None

    def batches(self, epoch: int) -> list[list[int]]:
        """Item indices of every batch of ``epoch`` (see :func:`epoch_batches`)."""
        if self._cached is None or self._cached[0] != epoch:
            self._cached = (epoch, epoch_batches(self.groups, self.batch_size, self.seed, epoch, self.drop_last))
        return self._cached[1]

    def __len__(self) -> int:
        """Batches per epoch."""
        return len(self.batches(self.epoch))

    def __iter__(self) -> Iterator[list[DrawKey]]:
        epoch, start = self.epoch, self.batch
        batches = self.batches(epoch)
        for position in range(start, len(batches)):
            self.batch = position + 1
            yield [DrawKey(epoch, position, index) for index in batches[position]]
        self.epoch, self.batch = epoch + 1, 0

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "batch": self.batch}

    def load_state_dict(self, state: dict) -> None:
        """Resume at ``state["epoch"]``, batch ``state["batch"]`` (the next batch to yield)."""
        if "seed" in state and state["seed"] != self.seed:
            log.warning(
                "the saved data order used seed %s but this run uses %s: batches from epoch %s on "
                "follow the new seed's order (resume with the same train.seed to keep the old one)",
                state["seed"],
                self.seed,
                state["epoch"],
            )
        self.epoch = int(state["epoch"])
        self.batch = int(state["batch"])
        if self.batch >= len(self.batches(self.epoch)):  # saved after an epoch's last batch
            self.epoch, self.batch = self.epoch + 1, 0
