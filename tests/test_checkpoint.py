"""Checkpoint files: atomic writes, pruning, resume selection."""

from __future__ import annotations

import pytest
import torch

from toolkit import checkpoint as ckpt


def test_failed_write_keeps_the_previous_file(tmp_path):
    path = tmp_path / "lora.safetensors"
    ckpt.save_safetensors(path, {"a": torch.ones(2)}, {"step": "1"})
    good = path.read_bytes()

    def broken(tmp):
        tmp.write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    with pytest.raises(ckpt.CheckpointError, match="No space left.*previous checkpoint is untouched"):
        ckpt.atomic_write(path, broken)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["lora.safetensors"]  # no temp file left


def test_interrupt_during_write_leaves_no_partial_file(tmp_path):
    path = tmp_path / "x.pt"

    def interrupted(tmp):
        tmp.write_bytes(b"partial")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ckpt.atomic_write(path, interrupted)
    assert not path.exists() and not list(tmp_path.iterdir())


def test_saved_steps_need_both_files_and_prune_keeps_newest(tmp_path):
    for step in (2, 4, 6, 8):
        ckpt.save_safetensors(ckpt.step_file(tmp_path, "run", step), {"a": torch.zeros(1)}, {})
        if step != 8:  # step 8's state never got written (killed in between)
            ckpt.save_state(ckpt.step_file(tmp_path, "run", step, ".state.pt"), {"step": step})
    (tmp_path / "run.safetensors").write_bytes(b"final")
    assert ckpt.saved_steps(tmp_path, "run") == [2, 4, 6]
    assert ckpt.load_latest_state(tmp_path, "run")["step"] == 6
    ckpt.prune(tmp_path, "run", keep=2)
    assert ckpt.saved_steps(tmp_path, "run") == [4, 6]
    assert (tmp_path / "run.safetensors").exists()


def test_unreadable_newest_state_falls_back(tmp_path):
    for step in (3, 6):
        ckpt.save_safetensors(ckpt.step_file(tmp_path, "run", step), {"a": torch.zeros(1)}, {})
        ckpt.save_state(ckpt.step_file(tmp_path, "run", step, ".state.pt"), {"step": step})
    ckpt.step_file(tmp_path, "run", 6, ".state.pt").write_bytes(b"truncated")
    assert ckpt.load_latest_state(tmp_path, "run")["step"] == 3


def test_clean_temp_files(tmp_path):
    (tmp_path / ".run_000000004.safetensors.tmp-123").write_bytes(b"x")
    (tmp_path / "run_000000004.safetensors").write_bytes(b"y")
    ckpt.clean_temp_files(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["run_000000004.safetensors"]
