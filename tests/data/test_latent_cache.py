import logging
import os

import pytest
import torch
import torch.nn.functional as F

from toolkit.data.dataset import DatasetError, build_items, load_image, make_dataloader
from toolkit.data.latent_cache import LatentCache, TextEmbeddingCache
from toolkit.models.base_model import PromptEmbeds

from .conftest import write_image


class FakeVAE:
    """(B, 3, H, W) -> (B, 4, H/8, W/8) bf16; records every call."""

    def __init__(self):
        self.calls: list[tuple[int, ...]] = []

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        assert not torch.is_grad_enabled()
        assert images.dtype == torch.float32 and images.min() >= -1 and images.max() <= 1
        self.calls.append(tuple(images.shape))
        pooled = F.avg_pool2d(images, 8)
        return torch.cat([pooled, pooled.mean(1, keepdim=True)], 1).to(torch.bfloat16)

    @property
    def encoded(self) -> int:
        return sum(shape[0] for shape in self.calls)


@torch.no_grad()
def expected_latent(item) -> torch.Tensor:
    return FakeVAE()(load_image(item)[None])[0]


def refuse(images):
    raise AssertionError("encode_images must not be called")


@pytest.fixture
def folder(tmp_path):
    folder = tmp_path / "data"
    folder.mkdir()
    for i, size in enumerate([(64, 48), (48, 64), (64, 64), (96, 32)]):
        write_image(folder / f"img{i}.png", size, seed=i)
        (folder / f"img{i}.txt").write_text(f"caption {i}")
    (folder / "._img0.png").write_bytes(b"macOS resource fork")  # hidden: never scanned
    return folder


def items_for(folder, make_config, **kwargs):
    kwargs.setdefault("resolution", 48)
    return build_items([make_config(folder, **kwargs)], "ohwx", 16)


def test_memory_cache_encodes_each_distinct_latent_once(folder, make_config):
    items = items_for(folder, make_config, cache_latents=True, num_repeats=3)
    vae = FakeVAE()
    cache = LatentCache(vae, vae_id="vae-a", batch_size=2, show_progress=False)
    assert cache.fill(items) == 4
    assert vae.encoded == 4 and all(shape[0] <= 2 for shape in vae.calls)
    assert cache.fill(items) == 0 and vae.encoded == 4
    for item in items:
        latent = cache.get(item)
        assert latent.shape == (4, item.bucket[1] // 8, item.bucket[0] // 8) and latent.dtype == torch.bfloat16
        assert torch.equal(latent, expected_latent(item))
    assert not (folder / "_latent_cache").exists()


def test_items_without_cache_flags_are_not_encoded(folder, make_config):
    vae = FakeVAE()
    cache = LatentCache(vae, vae_id="vae-a", show_progress=False)
    assert cache.fill(items_for(folder, make_config)) == 0 and vae.calls == []


def test_get_before_fill_is_an_error(folder, make_config):
    item = items_for(folder, make_config, cache_latents=True)[0]
    with pytest.raises(DatasetError, match="not cached"):
        LatentCache(FakeVAE(), vae_id="v", show_progress=False).get(item)


def test_disk_cache_reused_across_instances(folder, make_config):
    items = items_for(folder, make_config, cache_latents_to_disk=True, flip_x=True)
    vae = FakeVAE()
    first = LatentCache(vae, vae_id="vae-a", show_progress=False)
    assert first.fill(items) == 8
    files = sorted((folder / "_latent_cache").iterdir())
    assert len(files) == 8 and all(f.suffix == ".safetensors" for f in files)
    assert len(first) == 0  # disk only: nothing held in memory
    second = LatentCache(refuse, vae_id="vae-a", show_progress=False)
    assert second.fill(items_for(folder, make_config, cache_latents_to_disk=True, flip_x=True)) == 0
    for item in items:
        assert torch.equal(second.get(item), first.get(item))
    flipped = [i for i in items if i.flip_x]
    assert not torch.equal(second.get(flipped[0]), second.get([i for i in items if not i.flip_x][0]))


def test_disk_and_memory_loads_files_into_memory(folder, make_config):
    items = items_for(folder, make_config, cache_latents_to_disk=True)
    LatentCache(FakeVAE(), vae_id="v", show_progress=False).fill(items)
    both = items_for(folder, make_config, cache_latents_to_disk=True, cache_latents=True)
    cache = LatentCache(refuse, vae_id="v", show_progress=False)
    assert cache.fill(both) == 0 and len(cache) == 4


def test_changed_image_is_encoded_again(folder, make_config):
    config = dict(cache_latents_to_disk=True)
    LatentCache(FakeVAE(), vae_id="v", show_progress=False).fill(items_for(folder, make_config, **config))
    path = folder / "img2.png"
    before = path.stat().st_mtime_ns
    write_image(path, (64, 64), seed=99)
    os.utime(path, ns=(before + 2_000_000_000, before + 2_000_000_000))  # coarse-clock filesystems
    items = items_for(folder, make_config, **config)
    vae = FakeVAE()
    cache = LatentCache(vae, vae_id="v", show_progress=False)
    assert cache.fill(items) == 1
    changed = next(i for i in items if i.image.path.name == "img2.png")
    assert torch.equal(cache.get(changed), expected_latent(changed))


def test_new_resolution_is_a_new_bucket_key(folder, make_config):
    old = items_for(folder, make_config, cache_latents_to_disk=True, resolution=48)
    LatentCache(FakeVAE(), vae_id="v", show_progress=False).fill(old)
    new = items_for(folder, make_config, cache_latents_to_disk=True, resolution=[48, 32])
    new_buckets = {(i.image.path, i.bucket) for i in new} - {(i.image.path, i.bucket) for i in old}
    assert new_buckets
    vae = FakeVAE()
    assert LatentCache(vae, vae_id="v", show_progress=False).fill(new) == len(new_buckets)
    assert {shape[2:] for shape in vae.calls} <= {(b[1], b[0]) for _, b in new_buckets}


def test_other_vae_id_is_encoded_again(folder, make_config):
    items = items_for(folder, make_config, cache_latents_to_disk=True)
    LatentCache(FakeVAE(), vae_id="vae-a", show_progress=False).fill(items)
    vae = FakeVAE()
    cache = LatentCache(vae, vae_id="vae-b", show_progress=False)
    assert cache.fill(items) == 4 and vae.encoded == 4
    assert len(list((folder / "_latent_cache").iterdir())) == 8  # old files stay; keys differ


def test_vae_id_is_required():
    with pytest.raises(ValueError, match="vae_id"):
        LatentCache(FakeVAE(), vae_id="")


def test_batches_hold_one_bucket(folder, make_config):
    vae = FakeVAE()
    LatentCache(vae, vae_id="v", batch_size=8, show_progress=False).fill(
        items_for(folder, make_config, cache_latents=True, resolution=[32, 48])
    )
    assert vae.encoded == 8 and len(vae.calls) == len({shape[2:] for shape in vae.calls})


def test_corrupt_cache_file_is_encoded_again(folder, make_config, caplog):
    items = items_for(folder, make_config, cache_latents_to_disk=True)
    cache = LatentCache(FakeVAE(), vae_id="v", show_progress=False)
    cache.fill(items)
    cache.path(items[0]).write_bytes(b"half a file")
    vae = FakeVAE()
    with caplog.at_level(logging.WARNING):
        assert LatentCache(vae, vae_id="v", show_progress=False).fill(items) == 1
    assert "unreadable" in caplog.text


def test_writes_are_atomic(folder, make_config, monkeypatch):
    import toolkit.data.latent_cache as module

    items = items_for(folder, make_config, cache_latents_to_disk=True)

    def crash(tensors, filename, metadata=None):
        with open(filename, "wb") as f:
            f.write(b"partial")
        raise KeyboardInterrupt

    monkeypatch.setattr(module, "save_file", crash)
    with pytest.raises(KeyboardInterrupt):
        LatentCache(FakeVAE(), vae_id="v", show_progress=False).fill(items)
    assert list((folder / "_latent_cache").iterdir()) == []


def test_cache_pickles_without_its_encoder(folder, make_config):
    import pickle

    items = items_for(folder, make_config, cache_latents=True)
    cache = LatentCache(FakeVAE(), vae_id="v", show_progress=False)
    cache.fill(items)
    copy = pickle.loads(pickle.dumps(cache))
    assert copy.encode_images is None and torch.equal(copy.get(items[0]), cache.get(items[0]))
    assert cache.encode_images is not None


def test_dataloader_serves_cached_latents(folder, make_config):
    items = items_for(folder, make_config, cache_latents=True, resolution=[32, 48])
    cache = LatentCache(FakeVAE(), vae_id="v", show_progress=False)
    cache.fill(items)
    for batch in make_dataloader(items, batch_size=2, seed=0, latent_cache=cache):
        assert batch.images is None
        bw, bh = items[batch.indices[0]].bucket
        assert batch.latents.shape == (len(batch.indices), 4, bh // 8, bw // 8)
        assert torch.equal(batch.latents, cache.get_batch([items[i] for i in batch.indices]))


# --------------------------------------------------------------------------- text embeddings


class FakeTextEncoder:
    def __init__(self):
        self.seen: list[str] = []

    def __call__(self, captions: list[str]) -> PromptEmbeds:
        self.seen += captions
        codes = torch.tensor([[float(len(c)), float(sum(map(ord, c)) % 97)] for c in captions])
        return PromptEmbeds(
            {
                "prompt_embeds": codes[:, None, :].expand(-1, 5, -1).contiguous(),  # (B, 5, 2)
                "text_ids": torch.arange(len(captions) * 3).reshape(len(captions), 3),  # integer tensor
            }
        )


def test_text_cache_encodes_each_caption_once_and_batches_in_order():
    encoder = FakeTextEncoder()
    cache = TextEmbeddingCache(encoder, batch_size=2, show_progress=False)
    assert cache.fill(["a cat", "", "a cat", "a dog", ""]) == 3
    assert sorted(encoder.seen) == ["", "a cat", "a dog"] and "" in cache and len(cache) == 3
    embeds = cache.get(["a dog", "", "a dog"])
    assert embeds["prompt_embeds"].shape == (3, 5, 2)
    assert torch.equal(embeds["prompt_embeds"][0], FakeTextEncoder()(["a dog"])["prompt_embeds"][0])
    assert torch.equal(embeds["prompt_embeds"][0], embeds["prompt_embeds"][2])
    assert embeds["text_ids"].dtype == torch.int64 and embeds["text_ids"].shape == (3, 3)
    assert len(encoder.seen) == 3


def test_text_cache_slices_do_not_keep_the_batch_alive():
    cache = TextEmbeddingCache(FakeTextEncoder(), batch_size=4, show_progress=False)
    cache.fill(["a", "b", "c", "d"])
    stored = cache.get(["a"])["prompt_embeds"]
    assert cache._store["a"]["prompt_embeds"].untyped_storage().nbytes() == stored.numel() * stored.element_size()


def test_text_cache_after_release():
    encoder = FakeTextEncoder()
    cache = TextEmbeddingCache(encoder, show_progress=False)
    cache.fill(["a", ""])
    cache.release_encoder()
    assert cache.encode is None
    assert cache.get(["", "a"])["prompt_embeds"].shape == (2, 5, 2)
    with pytest.raises(DatasetError, match="text encoder was released"):
        cache.get(["never seen"])


def test_text_cache_encodes_missing_on_get_while_encoder_is_there():
    encoder = FakeTextEncoder()
    cache = TextEmbeddingCache(encoder, show_progress=False)
    cache.get(["x", "y"])
    assert encoder.seen == ["x", "y"] and len(cache) == 2


def test_text_cache_rejects_non_batch_first_output():
    def bad(captions):
        return PromptEmbeds({"ids": torch.zeros(7, 3)})

    with pytest.raises(ValueError, match="batch-first"):
        TextEmbeddingCache(bad, show_progress=False).fill(["a", "b"])
