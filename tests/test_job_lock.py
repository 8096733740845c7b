"""toolkit.job_lock: one run per job folder, from any front end; stale locks (a killed run) are taken over."""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from toolkit.job_lock import LOCK_FILE, JobFolderBusy, JobFolderLock, holder

ROOT = Path(__file__).resolve().parent.parent

HOLD = """
import sys, time
from toolkit.job_lock import JobFolderBusy, JobFolderLock
folder, go, hold = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
while time.time() < go:
    pass
try:
    lock = JobFolderLock(folder).acquire()
except JobFolderBusy as exc:
    print("busy", exc, flush=True)
    sys.exit(3)
print("won", flush=True)
time.sleep(hold)
"""


def start(folder: Path, go: float, hold: float = 3.0) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", HOLD, str(folder), str(go), str(hold)], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )


@pytest.mark.slow  # two run.py subprocesses
def test_two_processes_started_at_once_one_wins_and_the_other_names_its_pid(tmp_path):
    go = time.time() + 2.0
    procs = [start(tmp_path / "job", go) for _ in range(3)]
    outputs = {p.pid: p.communicate(timeout=60)[0].strip() for p in procs}
    winners = [pid for pid, out in outputs.items() if out == "won"]
    assert len(winners) == 1, outputs
    for pid, out in outputs.items():
        if pid != winners[0]:
            assert out.startswith("busy") and f"pid {winners[0]} on " in out and "another config.name" in out
    assert holder(tmp_path / "job") is None  # the winner exited: nobody holds it


def test_a_killed_run_leaves_a_stale_lock_that_is_taken_over(tmp_path, caplog):
    proc = start(tmp_path / "job", 0, hold=60)
    assert proc.stdout.readline().strip() == "won"
    info = holder(tmp_path / "job")
    assert info["pid"] == proc.pid and info["host"]
    with pytest.raises(JobFolderBusy, match=f"pid {proc.pid} on"):
        JobFolderLock(tmp_path / "job").acquire()
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert str(proc.pid) in (tmp_path / "job" / LOCK_FILE).read_text()  # the file says who had it...
    assert holder(tmp_path / "job") is None  # ...but nobody holds it
    with caplog.at_level(logging.INFO, logger="toolkit.job_lock"):
        with JobFolderLock(tmp_path / "job"):
            assert holder(tmp_path / "job")["pid"] == os.getpid()
    assert f"stale lock (pid {proc.pid}" in caplog.text
    assert holder(tmp_path / "job") is None


def test_the_trainer_refuses_a_busy_job_folder_before_loading(tmp_path, caplog):
    """run.py on a folder another run holds: exit 1 with one message naming the holder, nothing written."""
    import run
    from tests.jobs.train_helpers import train_process, write_job

    job = write_job(tmp_path, train_process(tmp_path, steps=2))
    folder = tmp_path / "output" / "tiny_lora"
    with JobFolderLock(folder), caplog.at_level(logging.ERROR):
        assert run.main([str(job)]) == 1
    assert f"is in use by another run (pid {os.getpid()} on" in caplog.text
    assert "Traceback" not in caplog.text
    assert sorted(p.name for p in folder.iterdir()) == [LOCK_FILE]  # no config.yaml, no progress log


def test_resume_from_the_app_refuses_while_a_command_line_run_holds_the_folder(tmp_path):
    from toolkit.ui import jobs as ui_jobs

    folder = tmp_path / "job"
    folder.mkdir()
    (folder / ui_jobs.JOB_FILE).write_text('{"pid": 1, "config": "x.yaml", "started": 0}')
    with JobFolderLock(folder), pytest.raises(ui_jobs.JobError, match=f"pid {os.getpid()}"):
        ui_jobs.resume_job(folder, tmp_path)
