import logging
import random

import numpy as np
import pytest
import torch
from PIL import Image

from toolkit.data.dataset import (
    DatasetError,
    TrainDataset,
    build_items,
    close_dataloader,
    caption_variants,
    collate_batch,
    load_image,
    make_bucket,
    make_dataloader,
    resize_and_crop,
    scan_folder,
)
from toolkit.errors import ToolkitError

from .conftest import write_image

KEY = "config.process[0].datasets[1].folder_path"


# --------------------------------------------------------------------------- scan_folder


def test_scan_finds_images_any_case_flat_and_sorted(image_folder, make_config, caplog):
    with caplog.at_level(logging.WARNING):
        images = scan_folder(make_config(image_folder), KEY)
    assert [i.path.name for i in images] == ["a.png", "b.JPG", "c.webp", "d.jpeg"]
    assert [(i.width, i.height) for i in images] == [(64, 48), (48, 64), (80, 32), (32, 32)]
    assert images[0].caption == "a red car, street, night"
    assert images[1].caption == "photo of [trigger], smiling"  # trigger applied per draw, not here
    assert images[2].caption == "a multi line caption"
    assert images[3].caption == ""
    assert all(i.path.is_absolute() and i.file_size > 0 and i.mtime_ns > 0 for i in images)


def test_scan_warns_once_about_corrupt_and_uncaptioned(image_folder, make_config, caplog):
    with caplog.at_level(logging.WARNING):
        scan_folder(make_config(image_folder), KEY)
    corrupt = [r.getMessage() for r in caplog.records if "unreadable" in r.getMessage()]
    assert len(corrupt) == 1 and "skipped 1 unreadable" in corrupt[0] and "broken.png" in corrupt[0]
    missing = [r.getMessage() for r in caplog.records if "no caption" in r.getMessage()]
    assert len(missing) == 1 and "1 of 4 images" in missing[0] and KEY in missing[0]


def test_truncated_jpeg_is_skipped(tmp_path, make_config):
    path = write_image(tmp_path / "t.jpg", (64, 64))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    write_image(tmp_path / "ok.png", (32, 32))
    assert [i.path.name for i in scan_folder(make_config(tmp_path), KEY)] == ["ok.png"]


def test_default_caption_fills_missing_and_empty(image_folder, make_config, caplog):
    (image_folder / "a.txt").write_text("  \n")
    with caplog.at_level(logging.WARNING):
        images = scan_folder(make_config(image_folder, default_caption="a photo"), KEY)
    by_name = {i.path.name: i.caption for i in images}
    assert by_name["a.png"] == by_name["d.jpeg"] == "a photo"
    assert "no caption" not in caplog.text


def test_caption_ext(image_folder, make_config):
    (image_folder / "d.caption").write_text("from the other file")
    images = scan_folder(make_config(image_folder, caption_ext=".caption"), KEY)
    assert {i.path.name: i.caption for i in images}["d.jpeg"] == "from the other file"


def test_missing_folder_names_key_and_folder(tmp_path, make_config):
    missing = tmp_path / "nope"
    with pytest.raises(DatasetError) as info:
        scan_folder(make_config(missing), KEY)
    assert isinstance(info.value, ToolkitError)
    assert KEY in str(info.value) and str(missing) in str(info.value) and "does not exist" in str(info.value)


def test_folder_without_images(tmp_path, make_config):
    (tmp_path / "a.txt").write_text("caption without image")
    with pytest.raises(DatasetError, match=r"datasets\[1\]\.folder_path: no images"):
        scan_folder(make_config(tmp_path), KEY)


def test_folder_of_only_corrupt_images(tmp_path, make_config):
    (tmp_path / "x.jpg").write_bytes(b"garbage")
    (tmp_path / "y.png").write_bytes(b"")
    with pytest.raises(DatasetError, match=r"none of the 2 images .* could be read"):
        scan_folder(make_config(tmp_path), KEY)


def test_exif_rotation_swaps_size(tmp_path, make_config):
    img = Image.fromarray(np.zeros((32, 64, 3), np.uint8))  # 64 wide, 32 high as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: displayed 32 wide, 64 high
    img.save(tmp_path / "r.jpg", exif=exif)
    (image,) = scan_folder(make_config(tmp_path), KEY)
    assert (image.width, image.height) == (32, 64)
    (item,) = build_items([make_config(tmp_path, resolution=64)], None, 16)
    assert item.bucket == (32, 64)
    assert load_image(item).shape == (3, 64, 32)


# --------------------------------------------------------------------------- build_items


def test_build_items_resolutions_repeats_and_flips(image_folder, make_config):
    config = make_config(image_folder, resolution=[32, 48], num_repeats=2, flip_x=True)
    items = build_items([config], "ohwx", 16)
    assert len(items) == 4 * 2 * 2 * 2  # images x resolutions x flips x repeats
    assert {i.resolution for i in items} == {32, 48}
    assert sum(i.flip_x for i in items) == len(items) // 2
    assert not any(i.flip_y for i in items)
    assert all(b % 16 == 0 for i in items for b in i.bucket)
    both = build_items([make_config(image_folder, flip_x=True, flip_y=True)], None, 16)
    assert {(i.flip_x, i.flip_y) for i in both} == {(False, False), (True, False), (False, True), (True, True)}


def test_build_items_uses_the_divisibility_passed_in(tmp_path, make_config):
    write_image(tmp_path / "w.png", (1000, 333))
    (a,) = build_items([make_config(tmp_path, resolution=512)], None, 16)
    (b,) = build_items([make_config(tmp_path, resolution=512)], None, 8)
    assert a.bucket == make_bucket(1000, 333, 512, 16) == (880, 288)
    assert b.bucket == make_bucket(1000, 333, 512, 8) == (880, 296)


def test_build_items_gathers_every_dataset_problem(tmp_path, image_folder, make_config):
    configs = [make_config(image_folder), make_config(tmp_path / "missing"), make_config(tmp_path / "empty")]
    (tmp_path / "empty").mkdir()
    keys = [f"config.process[0].datasets[{i}]" for i in range(3)]
    with pytest.raises(DatasetError) as info:
        build_items(configs, None, 16, keys)
    message = str(info.value)
    assert "2 dataset problems" in message
    assert "config.process[0].datasets[1].folder_path" in message
    assert "config.process[0].datasets[2].folder_path" in message


def test_control_path_pairs_references_not_ignored(image_folder, make_config):
    """control_path is used (tests/data/test_references.py has the details), never silently dropped."""
    items = build_items([make_config(image_folder, control_path=str(image_folder))], None, 16)
    assert items and all(len(item.references) == 1 for item in items)
    assert all(item.references[0].image.path == item.image.path for item in items)  # same folder: itself


def test_items_of_several_datasets(tmp_path, image_folder, make_config):
    other = tmp_path / "reg"
    other.mkdir()
    write_image(other / "r.png", (32, 32))
    (other / "r.txt").write_text("a man")
    items = build_items([make_config(image_folder), make_config(other, is_reg=True)], "ohwx", 16)
    reg = [i for i in items if i.is_reg]
    assert len(items) == 5 and len(reg) == 1 and reg[0].dataset_index == 1 and reg[0].dataset_key == "datasets[1]"
    assert reg[0].draw_caption(random.Random(0)) == "a man"  # no trigger on regularisation images
    first = [i for i in items if i.image.path.name == "a.png"][0]
    assert first.draw_caption(random.Random(0)) == "ohwx, a red car, street, night"


def test_caption_variants_for_text_cache(image_folder, make_config):
    items = build_items([make_config(image_folder, caption_dropout_rate=0.1, num_repeats=3)], "ohwx", 16)
    variants = caption_variants(items)
    assert sorted(variants) == sorted(
        ["", "ohwx", "ohwx, a red car, street, night", "photo of ohwx, smiling", "ohwx, a multi line caption"]
    )
    config = make_config(image_folder, shuffle_tokens=True)
    shuffled = build_items([config], "ohwx", 16, ["config.process[0].datasets[0]"])
    with pytest.raises(DatasetError, match=r"config\.process\[0\]\.datasets\[0\]: shuffle_tokens"):
        caption_variants(shuffled)


# --------------------------------------------------------------------------- pixels


def test_load_image_shape_range_dtype(image_folder, make_config):
    for item in build_items([make_config(image_folder, resolution=48)], None, 16):
        tensor = load_image(item)
        assert tensor.shape == (3, item.bucket[1], item.bucket[0])
        assert tensor.dtype == torch.float32
        assert tensor.min() >= -1.0 and tensor.max() <= 1.0 and tensor.min() < -0.9 and tensor.max() > 0.9


def test_flips_mirror_the_tensor(image_folder, make_config):
    items = build_items([make_config(image_folder, flip_x=True, flip_y=True)], None, 16)
    by_flip = {(i.flip_x, i.flip_y): load_image(i) for i in items if i.image.path.name == "c.webp"}
    plain = by_flip[(False, False)]
    assert torch.equal(by_flip[(True, False)], plain.flip(-1))
    assert torch.equal(by_flip[(False, True)], plain.flip(-2))
    assert torch.equal(by_flip[(True, True)], plain.flip(-1).flip(-2))


def test_resize_and_crop_covers_then_center_crops():
    array = np.zeros((32, 80, 3), np.uint8)
    array[:, 24:56] = 255  # white center band, exactly the 32x32 center
    out = resize_and_crop(Image.fromarray(array), (32, 32))
    assert out.size == (32, 32) and np.asarray(out).min() == 255
    big = resize_and_crop(Image.fromarray(np.zeros((200, 300, 3), np.uint8)), (96, 48))
    assert big.size == (96, 48)


def test_transparent_pixels_become_white(tmp_path, make_config):
    Image.new("RGBA", (32, 32), (0, 0, 0, 0)).save(tmp_path / "t.png")
    (item,) = build_items([make_config(tmp_path)], None, 16)
    assert torch.allclose(load_image(item), torch.ones(3, 32, 32))


# --------------------------------------------------------------------------- batches


def _loader_batches(items, epochs=2, **kwargs):
    loader = make_dataloader(items, batch_size=2, seed=3, **kwargs)
    batches = [(b.indices, b.captions, b.images) for _ in range(epochs) for b in loader]
    close_dataloader(loader)
    return batches


def test_dataloader_batches_are_bucket_pure_and_deterministic(image_folder, make_config):
    config = make_config(image_folder, resolution=[32, 48], caption_dropout_rate=0.3, shuffle_tokens=True)
    items = build_items([config], "ohwx", 16)
    first = _loader_batches(items)
    for indices, captions, images in first:
        assert len({items[i].bucket for i in indices}) == 1
        assert images.shape == (len(indices), 3, items[indices[0]].bucket[1], items[indices[0]].bucket[0])
        assert len(captions) == len(indices)
    second = _loader_batches(items)
    assert [(i, c) for i, c, _ in first] == [(i, c) for i, c, _ in second]
    assert all(torch.equal(a[2], b[2]) for a, b in zip(first, second))
    per_epoch = len(first) // 2
    assert [c for _, c, _ in first[:per_epoch]] != [c for _, c, _ in first[per_epoch:]]  # fresh draws per epoch


def test_dataloader_with_workers_matches_single_process(image_folder, make_config):
    items = build_items([make_config(image_folder, caption_dropout_rate=0.5)], "ohwx", 16)
    plain = _loader_batches(items, epochs=1)
    workers = _loader_batches(items, epochs=1, num_workers=2)
    assert [(i, c) for i, c, _ in plain] == [(i, c) for i, c, _ in workers]


def test_resume_from_a_consumed_batch(image_folder, make_config):
    items = build_items([make_config(image_folder, resolution=[32, 48])], "ohwx", 16)
    loader = make_dataloader(items, batch_size=1, seed=3)
    full = [(b.epoch, b.batch, b.indices, b.captions) for _ in range(2) for b in loader]
    loader = make_dataloader(items, batch_size=1, seed=3)
    consumed = []
    for batch in loader:
        consumed.append((batch.epoch, batch.batch, batch.indices, batch.captions))
        if len(consumed) == 3:
            state = batch.resume_state()
            break
    resumed = make_dataloader(items, batch_size=1, seed=3)
    resumed.batch_sampler.load_state_dict(state)
    rest = [(b.epoch, b.batch, b.indices, b.captions) for _ in range(2) for b in resumed]
    assert consumed + rest[: len(full) - 3] == full


def test_collate_refuses_mixed_batches():
    sample = {"index": 0, "epoch": 0, "batch": 0, "caption": "", "is_reg": False}
    with pytest.raises(ValueError, match="mixes"):
        collate_batch([{**sample, "image": torch.zeros(3, 16, 16)}, {**sample, "latents": torch.zeros(4, 2, 2)}])


def test_dataset_plain_index(image_folder, make_config):
    items = build_items([make_config(image_folder)], None, 16)
    sample = TrainDataset(items, seed=0)[0]
    assert sample["image"].shape == (3, 32, 32) and sample["epoch"] == 0 and "latents" not in sample
