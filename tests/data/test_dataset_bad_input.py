"""Datasets that are not what they seem: high-bit-depth images, links to nothing or to themselves,
images smaller than the model's smallest side (the one case that is upscaled, and the log says so)."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest
from PIL import Image

from toolkit.data.dataset import build_items, open_rgb, scan_folder

from .conftest import write_image

KEY = "config.process[0].datasets[0].folder_path"


@pytest.mark.parametrize(
    "dtype,value,expected",
    [
        (np.uint16, 32768, 128),  # 16-bit grayscale (mode I;16): half of 65535 is mid-gray, not white
        (np.uint16, 65535, 255),
        (np.int32, 16384, 64),  # 32-bit integer mode I (what PIL gives some 16-bit PNGs)
        (np.float32, 0.5, 128),  # float mode F in 0..1
    ],
)
def test_high_bit_depth_images_are_scaled_not_clipped(dtype, value, expected):
    from toolkit.data.images import _to_rgb

    img = Image.fromarray(np.full((20, 24), value, dtype=dtype))
    assert img.mode in ("I;16", "I", "F")
    rgb = np.asarray(_to_rgb(img))
    assert rgb.shape == (20, 24, 3) and abs(int(rgb.mean()) - expected) <= 1


def test_a_16_bit_png_in_a_dataset_keeps_its_gray(tmp_path, make_config):
    folder = tmp_path / "images"
    folder.mkdir()
    gradient = (np.linspace(0, 65535, 64 * 64).reshape(64, 64)).astype(np.uint16)
    Image.fromarray(gradient).save(folder / "deep.png")
    assert Image.open(folder / "deep.png").mode.startswith("I")
    (item,) = scan_folder(make_config(folder), KEY)
    pixels = np.asarray(open_rgb(item.path))[..., 0]
    assert pixels[0, 0] == 0 and pixels[-1, -1] == 255 and 120 <= pixels[32, 0] <= 135


def test_every_skipped_file_is_counted_and_named_in_one_warning(tmp_path, make_config, caplog):
    folder = tmp_path / "images"
    folder.mkdir()
    write_image(folder / "good.png", (32, 32), seed=1)
    (folder / "dangling.png").symlink_to(tmp_path / "gone.png")
    os.symlink("loop_b.png", folder / "loop_a.png")
    os.symlink("loop_a.png", folder / "loop_b.png")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not a jpeg")
    (folder / "sub.png").mkdir()
    with caplog.at_level(logging.WARNING):
        images = scan_folder(make_config(folder), KEY)
    assert [i.path.name for i in images] == ["good.png"]
    warnings = [r.getMessage() for r in caplog.records if ": skipped " in r.getMessage()]
    assert len(warnings) == 1
    text = warnings[0]
    assert text.startswith(f"{KEY}: skipped 5 unreadable file(s) in {folder}: ")
    assert f"dangling.png (dangling symlink to {tmp_path / 'gone.png'})" in text
    assert "loop_a.png (symlink loop)" in text and "loop_b.png (symlink loop)" in text
    assert "sub.png (a folder, not a file)" in text and "broken.jpg (" in text


def test_the_upscaling_log_tells_the_truth_for_a_tiny_image(tmp_path, make_config, caplog):
    folder = tmp_path / "images"
    folder.mkdir()
    write_image(folder / "dot.png", (1, 1), seed=1)
    write_image(folder / "small.png", (32, 32), seed=2)
    with caplog.at_level(logging.WARNING):
        items = build_items([make_config(folder, resolution=64)], None, 16, [KEY])
    buckets = {item.image.path.name: item.bucket for item in items}
    assert buckets == {"dot.png": (16, 16), "small.png": (32, 32)}
    text = caplog.text
    assert "1 of 2 images are smaller than resolution 64; they train at their own size (never upscaled)" in text
    assert "1 image(s) have a side under 16 px, the smallest the model takes; they are upscaled to it" in text
    assert "dot.png" in text
