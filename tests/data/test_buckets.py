import itertools
import math

import pytest

from toolkit.data.buckets import BucketBatchSampler, DrawKey, epoch_batches, make_bucket

SIZES = [
    (1024, 1024),
    (1920, 1080),
    (1080, 1920),
    (1000, 333),
    (333, 1000),
    (4000, 3000),
    (1023, 1025),
    (2048, 517),
    (777, 1333),
    (3000, 1999),
]


@pytest.mark.parametrize(("width", "height"), SIZES)
@pytest.mark.parametrize("resolution", [512, 768, 1024])
@pytest.mark.parametrize("divisibility", [16, 32])
def test_bucket_divisible_area_aspect_no_upscale(width, height, resolution, divisibility):
    bw, bh = make_bucket(width, height, resolution, divisibility)
    assert bw % divisibility == 0 and bh % divisibility == 0
    assert bw <= width and bh <= height  # never upscaled
    target = min(resolution**2, width * height)
    assert bw * bh <= target
    assert bw * bh >= 0.8 * target  # "about" resolution^2
    # aspect ratio within one divisibility step of either side
    assert abs(math.log((bw / bh) / (width / height))) < math.log(1 + 2 * divisibility / min(bw, bh))


def test_bucket_examples():
    assert make_bucket(1024, 1024, 1024, 16) == (1024, 1024)
    assert make_bucket(2048, 2048, 512, 16) == (512, 512)
    assert make_bucket(1920, 1080, 1024, 16) == (1360, 768)
    assert make_bucket(1080, 1920, 1024, 16) == (768, 1360)


def test_small_image_keeps_its_own_size():
    assert make_bucket(300, 200, 1024, 16) == (288, 192)
    assert make_bucket(300, 200, 512, 16) == make_bucket(300, 200, 1024, 16)


def test_tiny_image_gets_one_step():
    assert make_bucket(7, 7, 512, 16) == (16, 16)


def test_bucket_rejects_nonsense():
    with pytest.raises(ValueError):
        make_bucket(0, 10, 512, 16)


GROUPS = [(512, 512)] * 7 + [(640, 384)] * 5 + [(384, 640)] * 2


def test_epoch_batches_are_bucket_pure_and_cover_every_item_once():
    batches = epoch_batches(GROUPS, 3, seed=1, epoch=0)
    assert sorted(itertools.chain(*batches)) == list(range(len(GROUPS)))
    for batch in batches:
        assert len({GROUPS[i] for i in batch}) == 1
        assert 1 <= len(batch) <= 3
    assert len(batches) == 3 + 2 + 1


def test_epoch_batches_drop_last():
    batches = epoch_batches(GROUPS, 3, seed=1, epoch=0, drop_last=True)
    assert all(len(b) == 3 for b in batches) and len(batches) == 3


def test_epoch_batches_deterministic_per_seed_and_epoch():
    a = epoch_batches(GROUPS, 2, seed=5, epoch=3)
    assert a == epoch_batches(GROUPS, 2, seed=5, epoch=3)
    assert a != epoch_batches(GROUPS, 2, seed=5, epoch=4)
    assert a != epoch_batches(GROUPS, 2, seed=6, epoch=3)


def test_sampler_iterates_epochs_and_resumes():
    sampler = BucketBatchSampler(GROUPS, 2, seed=9)
    epoch0 = list(sampler)
    epoch1 = list(sampler)
    assert len(epoch0) == len(sampler) == len(epoch1)
    assert [k.epoch for b in epoch0 for k in b] == [0] * len(GROUPS)
    assert [k.epoch for b in epoch1 for k in b] == [1] * len(GROUPS)
    assert [[k.index for k in b] for b in epoch0] == epoch_batches(GROUPS, 2, 9, 0)
    assert [b[0].batch for b in epoch1] == list(range(len(epoch1)))

    # a fresh sampler restored from a state taken mid-epoch yields exactly the rest
    fresh = BucketBatchSampler(GROUPS, 2, seed=9)
    it = iter(fresh)
    consumed = [next(it) for _ in range(3)]
    state = fresh.state_dict()
    assert state == {"seed": 9, "epoch": 0, "batch": 3}
    resumed = BucketBatchSampler(GROUPS, 2, seed=9)
    resumed.load_state_dict(state)
    assert consumed + list(resumed) == epoch0
    assert list(resumed) == epoch1


def test_sampler_resume_at_end_of_epoch_moves_on():
    sampler = BucketBatchSampler(GROUPS, 4, seed=2)
    n = len(sampler)
    sampler.load_state_dict({"epoch": 0, "batch": n})
    assert sampler.state_dict() == {"seed": 2, "epoch": 1, "batch": 0}
    assert [b[0].epoch for b in sampler] == [1] * n


def test_sampler_warns_on_a_different_seed(caplog):
    sampler = BucketBatchSampler(GROUPS, 4, seed=2)
    sampler.load_state_dict({"seed": 3, "epoch": 1, "batch": 0})
    assert "seed 3" in caplog.text and sampler.epoch == 1


def test_draw_key_is_a_picklable_tuple():
    import pickle

    key = DrawKey(2, 5, 11)
    assert key == (2, 5, 11) and (key.epoch, key.batch, key.index) == (2, 5, 11)
    assert pickle.loads(pickle.dumps(key)) == key
