"""ai-toolkit's per-dataset options: loss masks, network_weight, loss_multiplier, trigger_word, workers."""

from __future__ import annotations

import multiprocessing

import numpy as np
import pytest
import torch
from PIL import Image

from toolkit.config_modules import TrainProcessConfig
from toolkit.data.dataset import (
    TrainDataset,
    build_items,
    close_dataloader,
    collate_batch,
    make_dataloader,
)
from toolkit.data.errors import DatasetError

from .conftest import write_image


def _mask(path, size, left_value=0, right_value=255):
    """A mask image: left half `left_value`, right half `right_value`."""
    array = np.full((size[1], size[0]), right_value, dtype=np.uint8)
    array[:, : size[0] // 2] = left_value
    Image.fromarray(array, "L").save(path)
    return path


@pytest.fixture
def masked(tmp_path):
    images, masks = tmp_path / "img", tmp_path / "mask"
    images.mkdir(), masks.mkdir()
    for name in ("a", "b"):
        write_image(images / f"{name}.png", (64, 32), seed=ord(name))
        (images / f"{name}.txt").write_text(f"photo {name}")
    _mask(masks / "a.png", (64, 32))  # b has no mask: trains unmasked
    return images, masks


def _sample(items, index=0):
    return TrainDataset(items, seed=0)[index]


def test_mask_file_is_aligned_mapped_and_flipped(masked, make_config, caplog):
    images, masks = masked
    items = build_items(
        [make_config(images, mask_path=str(masks), mask_min_value=0.25, flip_x=True, resolution=64)], None, 16
    )
    assert "1 of 2 images have no mask" in caplog.text
    by_flip = {(it.image.path.stem, it.flip_x): i for i, it in enumerate(items)}
    plain = _sample(items, by_flip[("a", False)])["mask"]
    assert plain.shape == (1, 32, 64)  # the item's bucket (64x32), like its image
    assert torch.allclose(plain[..., :30], torch.tensor(0.25)) and torch.allclose(plain[..., 34:], torch.tensor(1.0))
    flipped = _sample(items, by_flip[("a", True)])["mask"]
    assert torch.equal(flipped, plain.flip(-1))
    assert "mask" not in _sample(items, by_flip[("b", False)])
    batch = collate_batch([_sample(items, by_flip[("a", False)]), _sample(items, by_flip[("b", False)])])
    assert batch.masks.shape == (2, 1, 32, 64) and torch.equal(batch.masks[1], torch.ones(1, 32, 64))


def test_invert_and_alpha_masks(tmp_path, make_config, masked):
    images, masks = masked
    items = build_items([make_config(images, mask_path=str(masks), invert_mask=True)], None, 16)
    inverted = _sample(items)["mask"]
    assert inverted[..., 0].max() == 1.0 and inverted[..., -1].max() == 0.0
    alpha = tmp_path / "alpha"
    alpha.mkdir()
    array = np.zeros((32, 64, 4), dtype=np.uint8)
    array[:, 32:, 3] = 255  # right half opaque
    Image.fromarray(array, "RGBA").save(alpha / "x.png")
    write_image(alpha / "opaque.png", (64, 32))  # no alpha channel: weight 1 everywhere
    items = build_items([make_config(alpha, alpha_mask=True, resolution=64)], None, 16)
    opaque, x = (_sample(items, i)["mask"] for i in range(2))  # sorted by name
    assert x[..., :30].max() == 0.0 and x[..., 34:].min() == 1.0
    assert torch.equal(opaque, torch.ones_like(opaque))


def test_mask_path_problems(masked, make_config, tmp_path):
    images, _ = masked
    with pytest.raises(DatasetError, match=r"mask_path: .* is not a folder"):
        build_items([make_config(images, mask_path=str(tmp_path / "nope"))], None, 16)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"none of the 2 images has a mask"):
        build_items([make_config(images, mask_path=str(tmp_path / "empty"))], None, 16)


def test_per_dataset_weights_and_trigger(masked, make_config):
    images, _ = masked
    items = build_items(
        [make_config(images, network_weight=0.5, loss_multiplier=2.0, trigger_word="sks"), make_config(images)],
        "ohwx",
        16,
    )
    first, second = items[0], items[-1]
    assert (first.network_weight, first.loss_multiplier, first.trigger_word) == (0.5, 2.0, "sks")
    assert (second.network_weight, second.loss_multiplier, second.trigger_word) == (1.0, 1.0, "ohwx")
    dataset = TrainDataset(items, seed=0)
    assert dataset[0]["caption"] == "sks, photo a" and dataset[len(items) - 1]["caption"] == "ohwx, photo b"
    batch = collate_batch([dataset[0], dataset[len(items) - 1]])
    assert batch.network_weights.tolist() == [0.5, 1.0] and batch.loss_multipliers.tolist() == [2.0, 1.0]
    assert batch.triggers == ["sks", "ohwx"] and batch.masks is None
    cut = batch.slice(1, 2)
    assert cut.captions == ["ohwx, photo b"] and cut.network_weights.tolist() == [1.0] and cut.triggers == ["ohwx"]


def test_workers_give_the_same_batches(masked, make_config):
    images, masks = masked
    items = build_items(
        [make_config(images, mask_path=str(masks), flip_x=True, caption_dropout_rate=0.5, num_repeats=2)], "ohwx", 16
    )

    def epochs(workers):
        loader = make_dataloader(items, 2, seed=5, num_workers=workers, prefetch_factor=1 if workers else 2)
        batches = [batch for _ in range(2) for batch in loader]
        close_dataloader(loader)
        assert multiprocessing.active_children() == []
        return batches

    serial, parallel = epochs(0), epochs(2)
    assert len(serial) == len(parallel) == 8
    for a, b in zip(serial, parallel):
        assert a.indices == b.indices and a.captions == b.captions and (a.epoch, a.batch) == (b.epoch, b.batch)
        assert torch.equal(a.images, b.images)
        assert (a.masks is None and b.masks is None) or torch.equal(a.masks, b.masks)
    assert any(batch.masks is not None for batch in parallel)


def _process(**dataset):
    return {
        "type": "sd_trainer",
        "datasets": [{"folder_path": "/a", **dataset}, {"folder_path": "/b"}],
        "model": {"name_or_path": "x", "arch": "flux2"},
    }


def test_cache_text_embeddings_per_dataset_is_all_or_none():
    from pydantic import ValidationError

    from toolkit.config_modules import ConfigError  # noqa: F401 - the error type the loader raises

    with pytest.raises(ValidationError, match=r"all datasets or none"):
        TrainProcessConfig.model_validate(_process(cache_text_embeddings=True))
    both = _process(cache_text_embeddings=True)
    both["datasets"][1]["cache_text_embeddings"] = True
    assert TrainProcessConfig.model_validate(both).caches_text_embeddings
    assert not TrainProcessConfig.model_validate(_process()).caches_text_embeddings
