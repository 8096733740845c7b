"""Data-parallel training through accelerate (gloo on CPU), and crash safety under SIGKILL."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time

import psutil
import pytest
import torch
from safetensors.torch import load_file

from tests.jobs.train_helpers import ROOT, run_subprocess, start_subprocess, train_process, write_job
from toolkit.progress import read_events


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def launch_cmd(job, processes=2):
    return [sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", str(processes),
            "--num_machines", "1", "--mixed_precision", "no", "--dynamo_backend", "no",
            "--main_process_port", str(free_port()), "run.py", str(job)]


def launch(job, processes=2, timeout=600):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(launch_cmd(job, processes), cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env)


def folder(tmp_path, name):
    return tmp_path / "output" / name


def assert_files_whole(path):
    """Every file under a final name loads completely."""
    for f in path.glob("*.safetensors"):
        load_file(str(f))
    for f in path.glob("*.state.pt"):
        torch.load(f, map_location="cpu", weights_only=False)


def test_two_processes_end_at_the_same_lora_as_one(tmp_path):
    def job(name, batch_size):
        process = train_process(tmp_path, steps=6, save={"save_every": 100},
                                train={"disable_sampling": True, "batch_size": batch_size})
        return write_job(tmp_path, process, name=name)

    one, two = job("one", 4), job("two", 2)
    assert run_subprocess(one).returncode == 0
    result = launch(two)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "effective batch size 4 (batch_size 2 x 2 process(es)" in result.stderr
    a = load_file(str(folder(tmp_path, "one") / "one.safetensors"))
    b = load_file(str(folder(tmp_path, "two") / "two.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)
    events = read_events(folder(tmp_path, "two"))  # written by the main process only: one start, one end
    assert [e["event"] for e in events].count("start") == 1 and events[-1]["state"] == "finished"


def test_killed_rank_leaves_checkpoint_intact_and_resumes(tmp_path):
    process = train_process(tmp_path, steps=30, save={"save_every": 2, "max_step_saves_to_keep": 3},
                            train={"disable_sampling": True, "batch_size": 1})
    job = write_job(tmp_path, process, name="ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen(launch_cmd(job), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    out = folder(tmp_path, "ddp")
    deadline = time.time() + 300
    while not (out / "ddp_000000004.state.pt").exists():
        assert launcher.poll() is None and time.time() < deadline, "run ended before the step-4 checkpoint"
        time.sleep(0.1)
    workers = [p for p in psutil.Process(launcher.pid).children(recursive=True)
               if p.environ().get("LOCAL_RANK") == "1" and "run.py" in " ".join(p.cmdline())]
    assert workers, "no rank-1 worker found"
    workers[0].send_signal(signal.SIGKILL)
    launcher.wait(timeout=300)
    assert launcher.returncode != 0
    assert_files_whole(out)
    assert not (out / "ddp.safetensors").exists()
    result = launch(job)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "resumed from step" in result.stderr
    load_file(str(out / "ddp.safetensors"))


def test_sigkill_loop_never_corrupts_and_always_resumes(tmp_path):
    """SIGKILL at 10+ random moments of training and saving (a save every step), then finish."""
    total = 80
    process = train_process(tmp_path, steps=total, save={"save_every": 1, "max_step_saves_to_keep": 2},
                            train={"disable_sampling": True, "batch_size": 1})
    job = write_job(tmp_path, process, name="crash")
    out = folder(tmp_path, "crash")
    rng = random.Random(1234)
    kills, last_step = 0, 0

    def saved_step():
        return max((e["step"] for e in read_events(out) if e["event"] == "save"), default=0)

    while kills < 10:
        proc = start_subprocess(job)
        while saved_step() <= last_step and proc.poll() is None:  # wait until this run trains and saves
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))  # then kill somewhere in a step or a save
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        kills += 1
        assert_files_whole(out)
        assert saved_step() > last_step  # every restart resumed and made progress
        last_step = saved_step()
    assert kills >= 10, f"only {kills} kills before the run finished; make it longer"
    result = run_subprocess(job)
    assert result.returncode == 0, result.stderr[-3000:]
    assert_files_whole(out)
    load_file(str(out / "crash.safetensors"))
    rows = [int(line.split(",")[0]) for line in (out / "loss_log.csv").read_text().splitlines()[1:]]
    assert rows == list(range(1, total + 1))


def test_failed_write_is_a_clear_error_and_keeps_the_previous_checkpoint(tmp_path, monkeypatch, caplog):
    import run
    from toolkit import checkpoint

    process = train_process(tmp_path, steps=6, save={"save_every": 2}, train={"disable_sampling": True})
    job = write_job(tmp_path, process, name="full")
    real_save = checkpoint.save_safetensors
    calls = {"n": 0}

    def disk_full_on_second_save(path, tensors, metadata):
        calls["n"] += 1
        if calls["n"] == 2:
            checkpoint.atomic_write(path, lambda tmp: (_ for _ in ()).throw(OSError(28, "No space left on device")))
        real_save(path, tensors, metadata)

    monkeypatch.setattr(checkpoint, "save_safetensors", disk_full_on_second_save)
    assert run.main([str(job)]) == 1
    assert "No space left on device" in caplog.text and "previous checkpoint is untouched" in caplog.text
    out = folder(tmp_path, "full")
    load_file(str(out / "full_000000002.safetensors"))
    assert not (out / "full_000000004.safetensors").exists()
