"""progress.jsonl / loss_log.csv: flushed per record, opened once, fsynced only at saves and at the end."""

from __future__ import annotations

import builtins
import os

from toolkit.progress import ProgressLog, read_events


def test_steps_are_flushed_but_fsynced_only_at_saves_and_end(tmp_path, monkeypatch):
    fsyncs = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (fsyncs.append(fd), real_fsync(fd))[1])
    log = ProgressLog(tmp_path)
    log.event("start", step=0, total_steps=10)
    for step in range(1, 11):
        log.loss(step, 0.5, 1e-4)
        log.event("step", step=step, loss=0.5)
        # visible to a reader (a UI polling the folder) at once, without fsync
        assert read_events(tmp_path)[-1]["step"] == step
        assert (tmp_path / "loss_log.csv").read_text().splitlines()[-1].startswith(f"{step},")
    assert fsyncs == []
    log.event("save", step=10, path="x.safetensors")
    assert len(fsyncs) == 2  # both files, once
    log.event("end", state="finished", step=10)
    assert len(fsyncs) == 4
    assert log._files == {}  # closed at the end
    assert [e["event"] for e in read_events(tmp_path)] == ["start"] + ["step"] * 10 + ["save", "end"]
    lines = (tmp_path / "loss_log.csv").read_text().splitlines()
    assert lines[0] == "step,loss,lr" and len(lines) == 11


def test_the_log_files_are_opened_once(tmp_path, monkeypatch):
    opened = []
    real_open = builtins.open

    def counting_open(file, mode="r", *args, **kwargs):
        if "a" in mode:
            opened.append(str(file))
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", counting_open)
    log = ProgressLog(tmp_path)
    for step in range(1, 21):
        log.loss(step, 0.1, 1e-4)
        log.event("step", step=step)
    assert sorted(opened) == sorted([str(log.path), str(log.loss_path)])


def test_resume_truncation_reopens_cleanly(tmp_path):
    log = ProgressLog(tmp_path)
    for step in range(1, 6):
        log.loss(step, 0.1 * step, 1e-4)
    log.truncate_after(3)
    log.loss(4, 9.0, 1e-4)
    lines = (tmp_path / "loss_log.csv").read_text().splitlines()
    assert lines == ["step,loss,lr", "1,0.1,0.0001", "2,0.2,0.0001", "3,0.3,0.0001", "4,9,0.0001"]
    log.close()
