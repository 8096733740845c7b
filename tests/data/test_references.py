"""Reference (edit) images: pairing by file name, the diffusers FLUX.2 size rule, caching, batching."""

import dataclasses
import logging
import os

import numpy as np
import pytest
import torch
from PIL import Image

from toolkit.data.buckets import reference_size
from toolkit.data.dataset import DatasetError, build_items, make_dataloader, resize_and_crop
from toolkit.data.latent_cache import LatentCache
from toolkit.data.references import load_reference

from .conftest import write_image
from .test_latent_cache import FakeVAE

MP = 1024 * 1024


@pytest.fixture
def edit_folder(tmp_path):
    """targets t0..t3 (+ captions), control/ with t0..t2 (t3 has no reference), control2/ with all four."""
    targets, control, control2 = tmp_path / "targets", tmp_path / "targets" / "control", tmp_path / "control2"
    for folder in (targets, control, control2):
        folder.mkdir(parents=True, exist_ok=True)
    for i, size in enumerate([(64, 64), (64, 48), (80, 64), (64, 64)]):
        write_image(targets / f"t{i}.png", size, seed=i)
        (targets / f"t{i}.txt").write_text(f"make edit {i}")
        write_image(control2 / f"t{i}.webp", (96, 64), seed=20 + i, lossless=True)
    write_image(control / "t0.JPG", (100, 72), seed=10)  # any extension, any case; cropped to 96x64
    write_image(control / "t1.png", (64, 64), seed=11)
    write_image(control / "t2.png", (128, 80), seed=12)
    return targets


def build(folder, make_config, controls, **kwargs):
    kwargs.setdefault("resolution", 64)
    return build_items(
        [make_config(folder, control_path=controls, **kwargs)], None, 16, ["config.process[0].datasets[0]"]
    )


def test_pairs_by_file_name_and_skips_targets_without_references(edit_folder, make_config, caplog):
    with caplog.at_level(logging.WARNING):
        items = build(edit_folder, make_config, str(edit_folder / "control"))
    assert [item.image.path.name for item in items] == ["t0.png", "t1.png", "t2.png"]
    assert [item.references[0].image.path.name for item in items] == ["t0.JPG", "t1.png", "t2.png"]
    assert "datasets[0].control_path: skipped 1 of 4 images" in caplog.text and "t3.png (no t3.* in" in caplog.text
    # the pipeline rule: own size (under 1024x1024), sides cropped down to multiples of 16
    assert [item.references[0].bucket for item in items] == [(96, 64), (64, 64), (128, 80)]


def test_several_control_paths_keep_their_order(edit_folder, make_config):
    items = build(edit_folder, make_config, [str(edit_folder.parent / "control2"), str(edit_folder / "control")])
    assert len(items) == 3
    for item in items:
        first, second = item.references
        assert first.image.path.parent.name == "control2" and second.image.path.parent.name == "control"
        assert item.batch_group == (*item.bucket, False, (first.bucket, second.bucket))


def test_all_targets_missing_references_is_an_error(tmp_path, edit_folder, make_config):
    empty = tmp_path / "empty_control"
    empty.mkdir()
    write_image(empty / "other.png", (64, 64))
    with pytest.raises(DatasetError, match=r"config\.process\[0\]\.datasets\[0\]\.control_path: none of the 4 images"):
        build(edit_folder, make_config, str(empty))


def test_missing_control_folder_names_its_key(edit_folder, make_config):
    with pytest.raises(DatasetError, match=r"datasets\[0\]\.control_path\[1\]: .*nowhere does not exist"):
        build(edit_folder, make_config, [str(edit_folder / "control"), str(edit_folder / "nowhere")])


def test_two_references_with_one_name_is_an_error(edit_folder, make_config):
    write_image(edit_folder / "control" / "t1.jpg", (64, 64))
    with pytest.raises(DatasetError, match=r"control_path: several reference images share a name .*t1.jpg / t1.png"):
        build(edit_folder, make_config, str(edit_folder / "control"))


def test_unreadable_reference_skips_its_target(edit_folder, make_config, caplog):
    (edit_folder / "control" / "t2.png").write_bytes(b"not a png")
    with caplog.at_level(logging.WARNING):
        items = build(edit_folder, make_config, str(edit_folder / "control"))
    assert [item.image.path.name for item in items] == ["t0.png", "t1.png"]
    assert "t2.png is unreadable" in caplog.text


def test_reference_narrower_than_the_divisibility_is_an_error(edit_folder, make_config):
    write_image(edit_folder / "control" / "t1.png", (8, 64))
    with pytest.raises(DatasetError, match=r"narrower than 16 px.*match_target_res"):
        build(edit_folder, make_config, str(edit_folder / "control"))


class _SizeOnly:
    """Stands in for a PIL image in Flux2ImageProcessor._resize_to_target_area: records the size asked for."""

    def __init__(self, size):
        self.size = size

    def resize(self, size, resample=None):
        return _SizeOnly(size)


@pytest.mark.parametrize(
    "size",
    [
        (64, 64),
        (100, 72),
        (1024, 1024),
        (1025, 1024),
        (2000, 1000),
        (4000, 3000),
        (1500, 1700),
        (3333, 777),
        (1023, 2049),
    ],
)
def test_reference_size_is_the_pipelines_rule(size):
    """Flux2Pipeline.__call__: over 1024*1024 pixels -> _resize_to_target_area, then sides // 16 * 16."""
    from diffusers.pipelines.flux2.image_processor import Flux2ImageProcessor

    w, h = size
    expected = (w, h)
    if w * h > MP:
        expected = Flux2ImageProcessor._resize_to_target_area(_SizeOnly(size), MP).size
    resized, cropped = reference_size(w, h, MP, 16)
    assert resized == expected
    assert cropped == (expected[0] // 16 * 16, expected[1] // 16 * 16)
    assert cropped[0] * cropped[1] <= MP


@pytest.mark.parametrize("size", [(1100, 1000), (100, 72), (64, 64)])
def test_reference_pixels_equal_the_pipelines_preprocessing(tmp_path, make_config, size):
    """load_reference == the tensor Flux2Pipeline.__call__ builds for the same file (step 4, 'process images')."""
    from diffusers.pipelines.flux2.image_processor import Flux2ImageProcessor

    targets, control = tmp_path / "t", tmp_path / "c"
    targets.mkdir()
    control.mkdir()
    write_image(targets / "a.png", (64, 64))
    rng = np.random.default_rng(5)
    # smooth content, so that the Lanczos resample is exercised on realistic pixels
    base = rng.integers(0, 256, size=(size[1] // 8 + 1, size[0] // 8 + 1, 3), dtype=np.uint8)
    Image.fromarray(base).resize(size, Image.Resampling.BICUBIC).save(control / "a.png")
    (item,) = build(targets, make_config, str(control))
    ours = load_reference(item.references[0])

    processor = Flux2ImageProcessor(vae_scale_factor=16)
    img = Image.open(control / "a.png")
    processor.check_image_input(img)
    w, h = img.size
    if w * h > MP:
        img = processor._resize_to_target_area(img, MP)
        w, h = img.size
    theirs = processor.preprocess(img, height=h // 16 * 16, width=w // 16 * 16, resize_mode="crop")
    assert ours.shape == theirs.shape[1:]
    assert torch.equal(ours, theirs[0])


def test_match_target_res_uses_the_target_bucket(edit_folder, make_config):
    items = build(edit_folder, make_config, str(edit_folder / "control"), match_target_res=True, resolution=48)
    for item in items:
        ref = item.references[0]
        assert ref.bucket == item.bucket and ref.resize is None
        img = Image.open(ref.image.path).convert("RGB")
        expected = torch.from_numpy(np.array(resize_and_crop(img, item.bucket))).permute(2, 0, 1).float() / 127.5 - 1
        assert torch.equal(load_reference(ref), expected)


def test_references_flip_with_their_target(edit_folder, make_config):
    items = build(edit_folder, make_config, str(edit_folder / "control"), flip_x=True)
    plain, mirrored = (
        next(i for i in items if i.image.path.name == "t1.png" and i.flip_x == fx) for fx in (False, True)
    )
    assert mirrored.references[0].flip_x
    assert torch.equal(load_reference(mirrored.references[0]), load_reference(plain.references[0]).flip(-1))


def test_without_control_path_nothing_changes(edit_folder, make_config):
    (item, *_) = build_items([make_config(edit_folder, resolution=64)], None, 16)
    assert item.references == () and item.batch_group == (*item.bucket, False)


def test_reference_cache_memory_and_disk_keys(edit_folder, make_config):
    controls = str(edit_folder / "control")
    items = build(edit_folder, make_config, controls, cache_latents_to_disk=True)
    refs = [ref for item in items for ref in item.references]
    assert all(ref.cache_latents_to_disk and not ref.cache_latents for ref in refs)  # disk only, as asked
    vae = FakeVAE()
    cache = LatentCache(vae, vae_id="v1", load_image=load_reference, show_progress=False)
    assert cache.fill(refs) == 3
    files = sorted(p.name for p in (edit_folder / "control" / "_latent_cache").glob("*.safetensors"))
    assert len(files) == 3 and files[0].startswith("t0_96x64_")
    with torch.no_grad():
        assert torch.equal(cache.get(refs[0]), vae(load_reference(refs[0])[None])[0])
    # another run reads the disk; another VAE, a changed file or another size rule encodes again
    assert LatentCache(vae, vae_id="v1", load_image=load_reference, show_progress=False).fill(refs) == 0
    assert LatentCache(vae, vae_id="v2", load_image=load_reference, show_progress=False).fill(refs) == 3
    stat = (edit_folder / "control" / "t1.png").stat()
    write_image(edit_folder / "control" / "t1.png", (64, 64), seed=99)
    os.utime(edit_folder / "control" / "t1.png", ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    changed = build(edit_folder, make_config, controls, cache_latents_to_disk=True)
    assert (
        LatentCache(vae, vae_id="v1", load_image=load_reference, show_progress=False).fill(
            [ref for item in changed for ref in item.references]
        )
        == 1
    )
    same_size_other_rule = dataclasses.replace(refs[0], resize=None)  # match_target_res at the same size
    assert cache.key(same_size_other_rule) != cache.key(refs[0])


def test_without_cache_flags_references_stay_in_memory(edit_folder, make_config):
    items = build(edit_folder, make_config, str(edit_folder / "control"))
    refs = [ref for item in items for ref in item.references]
    assert all(ref.cache_latents and not ref.cache_latents_to_disk for ref in refs)
    cache = LatentCache(FakeVAE(), vae_id="v", load_image=load_reference, show_progress=False)
    cache.fill(refs)
    assert len(cache) == 3 and not (edit_folder / "control" / "_latent_cache").exists()


def test_batches_stack_references_of_one_size(edit_folder, make_config):
    controls = [str(edit_folder.parent / "control2"), str(edit_folder / "control")]
    items = build(edit_folder, make_config, controls, cache_latents=True, num_repeats=2)
    vae = FakeVAE()
    latents = LatentCache(vae, vae_id="v", show_progress=False)
    latents.fill(items)
    references = LatentCache(vae, vae_id="v", load_image=load_reference, show_progress=False)
    references.fill([ref for item in items for ref in item.references])
    encoded = vae.encoded
    seen = 0
    for batch in make_dataloader(items, batch_size=2, seed=0, latent_cache=latents, reference_cache=references):
        batch_items = [items[i] for i in batch.indices]
        assert len(batch.references) == 2
        for slot, tensor in enumerate(batch.references):
            bw, bh = batch_items[0].references[slot].bucket
            assert tensor.shape == (len(batch_items), 4, bh // 8, bw // 8)
            assert torch.equal(tensor, torch.stack([references.get(item.references[slot]) for item in batch_items]))
        seen += len(batch_items)
    assert seen == len(items) and vae.encoded == encoded  # nothing encoded per step


def test_dataset_without_reference_cache_is_an_error(edit_folder, make_config):
    items = build(edit_folder, make_config, str(edit_folder / "control"))
    with pytest.raises(DatasetError, match="no reference cache"):
        next(iter(make_dataloader(items, batch_size=1, seed=0)))
