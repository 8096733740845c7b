"""Small image folders made with PIL in tmp_path."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from toolkit.config_modules import DatasetConfig


def write_image(path: Path, size: tuple[int, int], seed: int = 0, mode: str = "RGB", **save_kwargs) -> Path:
    """A noise image of ``size`` = (width, height) saved at ``path`` (format from the suffix)."""
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4}[mode]
    array = rng.integers(0, 256, size=(size[1], size[0], channels), dtype=np.uint8)
    Image.fromarray(array, mode).save(path, **save_kwargs)
    return path


@pytest.fixture
def image_folder(tmp_path: Path) -> Path:
    """4 good images (mixed case suffixes, one without caption), a corrupt one, and non-images."""
    folder = tmp_path / "images"
    folder.mkdir()
    write_image(folder / "a.png", (64, 48), seed=1)
    (folder / "a.txt").write_text("a red car, street, night\n")
    write_image(folder / "b.JPG", (48, 64), seed=2)
    (folder / "b.txt").write_text("photo of [trigger], smiling")
    write_image(folder / "c.webp", (80, 32), seed=3)
    (folder / "c.txt").write_text("a\nmulti  line\ncaption")
    write_image(folder / "d.jpeg", (32, 32), seed=4)  # no caption file
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n this is not an image")
    (folder / "._a.png").write_bytes(b"macOS resource fork")  # hidden: skipped, not "corrupt"
    (folder / "notes.md").write_text("not an image")
    (folder / "sub").mkdir()
    write_image(folder / "sub" / "nested.png", (32, 32))  # not read: scanning is flat
    return folder


@pytest.fixture
def make_config():
    def make(folder: Path, **kwargs) -> DatasetConfig:
        kwargs.setdefault("caption_dropout_rate", 0.0)
        kwargs.setdefault("resolution", 32)
        return DatasetConfig(folder_path=str(folder), **kwargs)

    return make
