"""Latent and text-embedding caches: encode every image and caption once, not every step.

Both take the encoder as a callable, so they never touch a model class:

    latents = LatentCache(model.encode_images, vae_id=<fingerprint of the model's VAE>)
    latents.fill(items)                   # encodes what is missing, in small batches
    texts = TextEmbeddingCache(model.encode_prompt)
    texts.fill(caption_variants(items))   # every caption once, "" included for dropout
    texts.release_encoder()               # then the caller may unload the text encoder

Latent cache key: the image file's resolved path, size and mtime (a cheap stand-in
for its content, as make does), the bucket size, the flips, the caller's ``vae_id``
and a format version (reference images add their resize rule: ``cache_key_fields``).
The same class caches reference (edit) images, given
:class:`~toolkit.data.references.ReferenceItem` s and ``load_image=load_reference``. Any change gives a new key, hence a re-encode; stale files are
left on disk (delete ``_latent_cache/`` to reclaim them).

Items with ``cache_latents`` are kept in memory (CPU); items with
``cache_latents_to_disk`` are written to ``<folder_path>/_latent_cache/`` as one
safetensors file each and read back on every access (both flags: both). Writes are
atomic (temporary file + ``os.replace``), so an interrupted run never leaves a half
file that a later run would trust.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import load_file, save_file
from tqdm import tqdm

from toolkit.data.dataset import TrainItem, load_image
from toolkit.data.errors import DatasetError
from toolkit.prompt_embeds import PromptEmbeds

log = logging.getLogger(__name__)

__all__ = ["LatentCache", "TextEmbeddingCache", "latent_key", "CACHE_FORMAT_VERSION"]

CACHE_FORMAT_VERSION = 1
"""Bump when what a cached latent means changes (crop rule, resampling...): every key changes."""

_TENSOR = "latents"


def latent_key(item: TrainItem, vae_id: str) -> str:
    """SHA-256 hex of everything that determines the item's latents."""
    fields = {
        "version": CACHE_FORMAT_VERSION,
        "path": str(item.image.path),
        "size": item.image.file_size,
        "mtime_ns": item.image.mtime_ns,
        "bucket": list(item.bucket),
        "flip_x": item.flip_x,
        "flip_y": item.flip_y,
        "vae_id": vae_id,
        # ReferenceItem adds its resize rule; TrainItem adds nothing, so its keys are unchanged.
        **getattr(item, "cache_key_fields", {}),
    }
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


def _atomic_save(tensor: torch.Tensor, path: Path, metadata: dict[str, str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        save_file({_TENSOR: tensor}, str(tmp), metadata=metadata)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class LatentCache:
    """Latents of :class:`TrainItem` s, in memory or on disk, keyed by :func:`latent_key`.

    encode_images: (B, 3, H, W) float32 CPU images in [-1, 1] -> (B, C, h, w) latents on
    any device (the model's ``encode_images`` moves them to its device and dtype).
    vae_id: a fingerprint of the VAE (and of the latent normalisation) that the model
    provides; latents encoded under another ``vae_id`` are never reused.
    batch_size: images per ``encode_images`` call (small: the VAE at 1024 px is heavy).
    load_image: item -> (3, H, W); the dataset's :func:`~toolkit.data.dataset.load_image`.
    """

    def __init__(
        self,
        encode_images: Callable[[torch.Tensor], torch.Tensor],
        vae_id: str,
        batch_size: int = 4,
        load_image: Callable[[TrainItem], torch.Tensor] = load_image,
        show_progress: bool = True,
        desc: str = "Caching latents",
    ):
        if not isinstance(vae_id, str) or not vae_id:
            raise ValueError("LatentCache needs a non-empty vae_id string (the model's VAE fingerprint)")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.encode_images = encode_images
        self.vae_id = vae_id
        self.batch_size = batch_size
        self.load_image = load_image
        self.show_progress = show_progress
        self.desc = desc
        self._memory: dict[str, torch.Tensor] = {}

    def __getstate__(self) -> dict:
        # DataLoader workers started by spawn/forkserver pickle the dataset, and with it this
        # cache: they only read latents, and pickling the encoder would pickle the whole model.
        return {**self.__dict__, "encode_images": None}

    def key(self, item: TrainItem) -> str:
        return latent_key(item, self.vae_id)

    def path(self, item: TrainItem) -> Path:
        """The item's file in ``<folder_path>/_latent_cache/`` (named for humans, keyed by hash)."""
        flips = ("_fx" if item.flip_x else "") + ("_fy" if item.flip_y else "")
        name = f"{item.image.path.stem}_{item.bucket[0]}x{item.bucket[1]}{flips}_{self.key(item)[:16]}.safetensors"
        return item.cache_dir / name

    def __len__(self) -> int:
        """Latents held in memory."""
        return len(self._memory)

    def fill(self, items: Iterable[TrainItem]) -> int:
        """Encode every cached item (``item.latents_cached``) not yet in memory or valid on disk.

        Returns how many distinct latents were encoded. Items that share a key (repeats,
        an image small enough to land in the same bucket at two resolutions) encode once.
        """
        todo: dict[str, list[TrainItem]] = {}
        for item in items:
            if not item.latents_cached:
                continue
            key = self.key(item)
            if key in todo:
                todo[key].append(item)
            elif key not in self._memory and not self._reuse_disk(item, key):
                todo[key] = [item]
        if todo:
            if self.encode_images is None:
                raise RuntimeError("this LatentCache was unpickled without its encoder; fill it in the main process")
            self._encode(todo)
        return len(todo)

    def _reuse_disk(self, item: TrainItem, key: str) -> bool:
        """True when the item's valid disk file serves it (loaded into memory if it also wants memory)."""
        if not item.cache_latents_to_disk:
            return False
        path = self.path(item)
        if not path.is_file():
            return False
        try:
            with safe_open(str(path), framework="pt") as f:
                valid = (f.metadata() or {}).get("cache_key") == key and _TENSOR in f.keys()
                tensor = f.get_tensor(_TENSOR) if valid and item.cache_latents else None
        except Exception as exc:  # noqa: BLE001 - any unreadable file is re-encoded, and said so
            log.warning("latent cache file %s is unreadable (%s); encoding it again", path, exc)
            return False
        if not valid:
            log.warning("latent cache file %s belongs to another key; encoding it again", path)
            return False
        if tensor is not None:
            self._memory[key] = tensor
        return True

    @torch.no_grad()
    def _encode(self, todo: dict[str, list[TrainItem]]) -> None:
        by_bucket: dict[tuple[int, int], list[str]] = {}
        for key, group in todo.items():
            by_bucket.setdefault(group[0].bucket, []).append(key)
        with tqdm(total=len(todo), desc=self.desc, unit="img", disable=not self.show_progress) as bar:
            for bucket in sorted(by_bucket):
                keys = by_bucket[bucket]
                for start in range(0, len(keys), self.batch_size):
                    chunk = keys[start : start + self.batch_size]
                    images = torch.stack([self.load_image(todo[key][0]) for key in chunk])
                    latents = self.encode_images(images)
                    if latents.shape[0] != len(chunk):
                        raise ValueError(f"encode_images returned {latents.shape[0]} latents for {len(chunk)} images")
                    for key, latent in zip(chunk, latents):
                        self._store(todo[key], key, latent.detach().to("cpu").clone())
                    bar.update(len(chunk))

    def _store(self, group: list[TrainItem], key: str, latent: torch.Tensor) -> None:
        if any(item.cache_latents for item in group):
            self._memory[key] = latent
        # Items sharing a key share the disk file too (same image, bucket and flips).
        for item in [item for item in group if item.cache_latents_to_disk][:1]:
            path = self.path(item)
            metadata = {
                "cache_key": key,
                "image": str(item.image.path),
                "vae_id": self.vae_id,
                "bucket": f"{item.bucket[0]}x{item.bucket[1]}",
                "flip_x": str(item.flip_x),
                "flip_y": str(item.flip_y),
            }
            try:
                _atomic_save(latent.contiguous(), path, metadata)
            except PermissionError as exc:
                raise DatasetError(
                    f"{item.dataset_key}.cache_latents_to_disk: cannot write {path} ({exc}); make the folder "
                    "writable or set cache_latents_to_disk: false (cache_latents: true keeps them in memory)"
                ) from exc

    def get(self, item: TrainItem) -> torch.Tensor:
        """The item's latents (C, h, w) on CPU, as ``encode_images`` returned them (dtype kept)."""
        key = self.key(item)
        if key in self._memory:
            return self._memory[key]
        if item.cache_latents_to_disk:
            path = self.path(item)
            if path.is_file():
                return load_file(str(path))[_TENSOR]
        raise DatasetError(
            f"{item.dataset_key}: latents of {item.image.path.name} at {item.bucket[0]}x{item.bucket[1]} "
            "are not cached; call LatentCache.fill(items) before training"
        )

    def get_batch(self, items: Sequence[TrainItem]) -> torch.Tensor:
        """(B, C, h, w): the items' latents stacked (one bucket, so one shape)."""
        return torch.stack([self.get(item) for item in items])


class TextEmbeddingCache:
    """Prompt embeddings per distinct caption, in memory, so the text encoder can be unloaded.

    encode: list of B captions -> PromptEmbeds whose tensors are batch-first (B, ...)
    (the model's ``encode_prompt``). Each caption is stored as its own (1, ...) slices on
    ``device`` (CPU by default: FLUX.2-dev's are ~15 MB each); :meth:`get` returns them
    batched. The trainer moves them with ``PromptEmbeds.to(device, dtype)``.
    """

    def __init__(
        self,
        encode: Callable[[list[str]], PromptEmbeds] | None,
        batch_size: int = 8,
        device: str | torch.device = "cpu",
        show_progress: bool = True,
    ):
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.encode = encode
        self.batch_size = batch_size
        self.device = torch.device(device)
        self.show_progress = show_progress
        self._store: dict[str, dict[str, torch.Tensor]] = {}

    def __contains__(self, caption: str) -> bool:
        return caption in self._store

    def __len__(self) -> int:
        return len(self._store)

    @property
    def captions(self) -> list[str]:
        return list(self._store)

    def release_encoder(self) -> None:
        """Drop the reference to ``encode`` so the caller can free the text encoder."""
        self.encode = None

    def fill(self, captions: Iterable[str]) -> int:
        """Encode each distinct caption not cached yet; returns how many were encoded."""
        missing = [c for c in dict.fromkeys(captions) if c not in self._store]
        if not missing:
            return 0
        if self.encode is None:
            raise DatasetError(self._released_message(missing))
        with (
            torch.no_grad(),
            tqdm(
                total=len(missing), desc="Caching text embeddings", unit="caption", disable=not self.show_progress
            ) as bar,
        ):
            for start in range(0, len(missing), self.batch_size):
                chunk = missing[start : start + self.batch_size]
                self._keep(chunk, self.encode(chunk))
                bar.update(len(chunk))
        return len(missing)

    def _keep(self, captions: list[str], embeds: PromptEmbeds) -> None:
        for name, tensor in embeds.tensors.items():
            if tensor.ndim == 0 or tensor.shape[0] != len(captions):
                raise ValueError(
                    f"encode returned {name} of shape {tuple(tensor.shape)} for {len(captions)} "
                    "captions; every PromptEmbeds tensor must be batch-first"
                )
        for i, caption in enumerate(captions):
            # clone(): a slice would keep the whole batch's storage alive
            self._store[caption] = {
                name: tensor[i : i + 1].detach().to(self.device).clone() for name, tensor in embeds.tensors.items()
            }

    def get(self, captions: Sequence[str]) -> PromptEmbeds:
        """Embeddings of ``captions``, batched in order: every tensor (len(captions), ...).

        A caption not cached yet is encoded now when the encoder is still there; after
        :meth:`release_encoder` it is a DatasetError.
        """
        if not captions:
            raise ValueError("TextEmbeddingCache.get needs at least one caption")
        self.fill(captions)
        return PromptEmbeds.cat([PromptEmbeds(self._store[caption]) for caption in captions])

    @staticmethod
    def _released_message(missing: list[str]) -> str:
        shown = ", ".join(repr(c) for c in missing[:3])
        if len(missing) > 3:
            shown += f" and {len(missing) - 3} more"
        return (
            f"{len(missing)} caption(s) have no cached text embedding and the text encoder was released: {shown}; "
            "fill the cache with every caption (caption_variants(items)) before unloading the text encoder"
        )
