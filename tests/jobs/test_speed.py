"""The training loop's speed paths on tiny models: no host synchronisation inside a step, and a compiled
(`model.compile: true`) run training the same LoRA as the eager one, EMA and two buckets included."""

from __future__ import annotations

import logging
import sys

import pytest
import torch

import run
from tests.jobs.train_helpers import train_process, write_job
from toolkit.progress import read_events

pytestmark = pytest.mark.slow  # end-to-end: builds / loads tiny models or runs jobs (see pyproject.toml)

SYNCING = ("item", "tolist", "cpu", "__float__", "__bool__", "numpy")
# Tensors that live on the host by design: the optimizer's step counters (torch keeps them on the CPU unless
# `capturable`; fused CUDA AdamW reads none) and the data loader's per-epoch seed.
HOST_BOOKKEEPING = ("torch/optim/", "torch/utils/data/")


def losses(folder):
    return [float(line.split(",")[1]) for line in (folder / "loss_log.csv").read_text().splitlines()[1:]]


def test_a_step_reads_nothing_back_from_the_device(tmp_path, monkeypatch):
    """Inside train_step no tensor is read by the host (on a GPU each read waits for the queued kernels);
    the loss is read once per logging interval, every step's loss checked for NaN there."""
    from jobs.process.BaseSDTrainProcess import BaseSDTrainProcess

    calls, inside = [], [False]
    for name in SYNCING:
        original = getattr(torch.Tensor, name)

        def counting(self, *args, _original=original, _name=name, **kwargs):
            caller = sys._getframe(1).f_code.co_filename
            if inside[0] and not any(part in caller for part in HOST_BOOKKEEPING):
                calls.append(f"{_name} from {caller}:{sys._getframe(1).f_lineno}")
            return _original(self, *args, **kwargs)

        monkeypatch.setattr(torch.Tensor, name, counting)
    step, read = BaseSDTrainProcess.train_step, BaseSDTrainProcess.read_losses
    reads = []

    def counted_step(self, batches):
        inside[0] = True
        try:
            return step(self, batches)
        finally:
            inside[0] = False

    monkeypatch.setattr(BaseSDTrainProcess, "train_step", counted_step)
    monkeypatch.setattr(BaseSDTrainProcess, "read_losses", lambda self: reads.append(self.step) or read(self))
    process = train_process(
        tmp_path,
        steps=6,
        save={"save_every": 100},
        logging={"log_every": 3},
        train={"disable_sampling": True, "ema_config": {"use_ema": True}},
    )
    assert run.main([str(write_job(tmp_path, process))]) == 0
    assert calls == []
    assert reads == [3, 6]
    steps = [e for e in read_events(tmp_path / "output" / "tiny_lora") if e["event"] == "step"]
    assert [e["step"] for e in steps] == [3, 6] and all(e["s_per_it"] > 0 for e in steps)


def test_compiled_training_matches_eager(tmp_path, monkeypatch, caplog):
    """model.compile: true through the trainer (dynamo + AOTAutograd, the `aot_eager` backend: inductor's
    code generation is tested in tests/models/test_compile.py) with gradient checkpointing, EMA and two
    aspect buckets: the same losses as eager, the compile time logged once."""
    from toolkit.models.base_model import BaseModel

    compile_transformer = BaseModel.compile_transformer
    monkeypatch.setattr(
        BaseModel, "compile_transformer", lambda self, backend="aot_eager": compile_transformer(self, backend)
    )
    changes = {
        "steps": 4,
        "save": {"save_every": 100},
        "train": {
            "disable_sampling": True,
            "gradient_checkpointing": True,
            "ema_config": {"use_ema": True, "ema_decay": 0.9},
        },
        "datasets": [{"folder_path": "", "resolution": [64, 48], "cache_latents": True, "caption_dropout_rate": 0.0}],
    }
    results = {}
    for name, compiled in (("eager", False), ("compiled", True)):
        folder = tmp_path / name
        process = train_process(folder, model={"compile": compiled}, **changes)
        process["datasets"][0]["folder_path"] = str(folder / "data")
        torch._dynamo.reset()
        with caplog.at_level(logging.INFO):
            caplog.clear()
            assert run.main([str(write_job(folder, process))]) == 0
        results[name] = losses(folder / "output" / "tiny_lora")
        messages = [r.getMessage() for r in caplog.records]
        if compiled:
            assert sum("compiled in" in m for m in messages) == 1, messages
            assert any(m.startswith("torch.compile (regional): 4 transformer block(s) of 2 kind(s)") for m in messages)
    assert len(results["eager"]) == 4
    assert results["compiled"] == pytest.approx(results["eager"], rel=1e-4, abs=1e-6)
