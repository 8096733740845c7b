"""Training batch streams: regularisation batches on alternate steps, both streams resume where they stopped."""

from __future__ import annotations

from tests.data.conftest import write_image
from toolkit.config_modules import TrainProcessConfig
from toolkit.data.dataset import build_items, make_dataloader
from toolkit.train.batches import TrainingBatches


class OneProcess:
    def shard(self, size):
        return 0, size


def _setup(tmp_path):
    for folder, count in (("train", 4), ("reg", 3)):
        (tmp_path / folder).mkdir()
        for i in range(count):
            write_image(tmp_path / folder / f"{i}.png", (32, 32), seed=i)
    raw = {
        "type": "sd_trainer",
        "model": {"name_or_path": "x", "arch": "flux2"},
        "datasets": [
            {"folder_path": str(tmp_path / "train"), "resolution": 32},
            {"folder_path": str(tmp_path / "reg"), "resolution": 32, "is_reg": True},
        ],
        "save": {"save_every": 4},
        "train": {"disable_sampling": True},
    }
    config = TrainProcessConfig.model_validate(raw)
    items = build_items(config.datasets, None, 16)

    def batches(state=None, reg_state=None):
        train, reg = (make_dataloader([i for i in items if i.is_reg == reg], 1, seed=0) for reg in (False, True))
        return TrainingBatches(config, OneProcess(), train, reg, state, reg_state)

    return batches


def _draw(batches, steps):
    out = []
    for step in steps:
        shard, *_ = batches.next(step)
        out.append((bool(shard.is_reg.all()), shard.indices[0], shard.epoch))
    return out


def test_reg_alternates_and_both_streams_resume(tmp_path):
    batches = _setup(tmp_path)
    whole = _draw(batches(), range(1, 13))
    assert [r for r, _, _ in whole] == [True, False, True, False] * 3  # steps 4, 8, 12 save: never reg anyway
    assert {(i, e) for r, i, e in whole if r} >= {(0, 0), (1, 0), (2, 0)}  # 3 reg images, one epoch of them
    first = batches()
    head = _draw(first, range(1, 6))
    resumed = _draw(batches(*first.states), range(6, 13))
    assert head + resumed == whole


def test_no_reg_step_right_before_a_save(tmp_path):
    batches = _setup(tmp_path)()
    batches.cfg = batches.cfg.model_copy(update={"save": batches.cfg.save.model_copy(update={"save_every": 3})})
    assert [r for r, _, _ in _draw(batches, range(1, 7))] == [True, False, False, False, True, False]
