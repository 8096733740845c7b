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

    with pytest.raises(ckpt.DiskFullError, match=rf"^disk full writing {path}: \d+ MB free$"):
        ckpt.atomic_write(path, broken)
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["lora.safetensors"]  # no temp file left

    def denied(tmp):
        raise PermissionError(13, "Permission denied")

    with pytest.raises(ckpt.CheckpointError, match="Permission denied.*previous checkpoint is untouched"):
        ckpt.atomic_write(path, denied)


@pytest.mark.parametrize(
    "error",
    [
        OSError(28, "No space left on device"),
        Exception(
            'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
        ),  # safetensors' SafetensorError text
        RuntimeError("[enforce fail at inline_container.cc:626] . unexpected pos 128 vs 64 [Errno 28]"),
    ],
)
def test_a_full_disk_during_a_save_never_leaves_a_lora_without_its_state(tmp_path, monkeypatch, error):
    """Step 4 saved; at step 8 the state cannot be written: one message, the step-8 LoRA removed, no temp files."""
    state = {"step": 4, "lora": {"a": torch.ones(2)}}
    assert ckpt.save_step(tmp_path, "job", 4, {"a": torch.ones(2)}, {"step": "4"}, state) == [
        "job_000000004.safetensors"
    ]

    def full(path, data):
        ckpt.atomic_write(path, lambda tmp: (tmp.write_bytes(b"partial"), (_ for _ in ()).throw(error)))

    monkeypatch.setattr(ckpt, "save_state", full)
    with pytest.raises(ckpt.DiskFullError) as refused:
        ckpt.save_step(tmp_path, "job", 8, {"a": torch.ones(2)}, {"step": "8"}, {**state, "step": 8})
    message = str(refused.value)
    assert message.startswith(f"disk full writing {tmp_path / 'job_000000008.state.pt'}: ")
    assert " MB free; the last complete checkpoint is step 4." in message and "\n" not in message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["job_000000004.safetensors", "job_000000004.state.pt"]
    assert ckpt.saved_steps(tmp_path, "job") == [4]


def test_torchs_vague_write_error_counts_as_disk_full_only_when_the_disk_is_full(tmp_path, monkeypatch):
    vague = RuntimeError("PytorchStreamWriter failed writing file data/0: file write failed")
    monkeypatch.setattr(ckpt, "free_mb", lambda folder: 3)
    with pytest.raises(ckpt.DiskFullError, match="3 MB free"):
        ckpt.atomic_write(tmp_path / "s.pt", lambda tmp: (_ for _ in ()).throw(vague))
    monkeypatch.setattr(ckpt, "free_mb", lambda folder: 50_000)
    with pytest.raises(RuntimeError, match="file write failed"):
        ckpt.atomic_write(tmp_path / "s.pt", lambda tmp: (_ for _ in ()).throw(vague))
    assert list(tmp_path.iterdir()) == []


def test_the_loss_plot_and_progress_log_survive_a_full_disk(tmp_path, monkeypatch, caplog):
    from PIL import Image

    from toolkit.progress import ProgressLog, plot_loss

    log = ProgressLog(tmp_path)
    log.loss(1, 0.5, 1e-4)
    log.loss(2, 0.4, 1e-4)

    def full(self, fp, *args, **kwargs):
        open(fp, "wb").write(b"partial")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(Image.Image, "save", full)
    assert plot_loss(tmp_path) is None and not (tmp_path / "loss.png.tmp").exists()
    monkeypatch.setattr("builtins.open", lambda *a, **k: (_ for _ in ()).throw(OSError(28, "No space left")))
    log.event("end", state="error", error="disk full")  # warns, does not raise over the run's own error
    assert "No space left" in caplog.text


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
