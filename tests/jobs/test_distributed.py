"""Data-parallel training through accelerate (gloo on CPU), and crash safety under SIGKILL."""

from __future__ import annotations

import os
import random
import signal
import socket
import subprocess
import sys
import time

import numpy as np
import psutil
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from tests.jobs.train_helpers import ROOT, copy_dataset, run_subprocess, start_subprocess, train_process, write_job
from toolkit.progress import read_events

pytestmark = pytest.mark.slow  # end-to-end: builds / loads tiny models or runs jobs (see pyproject.toml)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


FSDP_CONFIG = ROOT / "config" / "accelerate" / "fsdp2.yaml"


def launch_cmd(job, processes=2, fsdp=False):
    mode = ["--config_file", str(FSDP_CONFIG)] if fsdp else ["--multi_gpu"]
    return [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        *mode,
        "--num_processes",
        str(processes),
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "--main_process_port",
        str(free_port()),
        "run.py",
        str(job),
    ]


def launch(job, processes=2, timeout=600, fsdp=False):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        launch_cmd(job, processes, fsdp), cwd=ROOT, capture_output=True, text=True, timeout=timeout, env=env
    )


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
        process = train_process(
            tmp_path, steps=6, save={"save_every": 100}, train={"disable_sampling": True, "batch_size": batch_size}
        )
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


def pixels(path):
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_fsdp_shards_the_model_matches_one_process_and_resumes(tmp_path):
    """FSDP2 (the shipped accelerate config) on two gloo processes: half the frozen transformer per
    process, the same LoRA and samples as one process, and a resumable checkpoint. Five images in
    global batches of 4 leave a batch of one, so one process gets an empty shard; gradient
    checkpointing re-gathers the blocks it recomputes."""
    data = copy_dataset(tmp_path / "data5", count=5)

    def job(name, batch_size, steps=6):
        process = train_process(
            tmp_path,
            steps=steps,
            save={"save_every": 100},
            train={"batch_size": batch_size, "gradient_checkpointing": True},
            sample={"sample_every": 100, "prompts": ["a photo of [trigger] on a blue background"]},
        )
        process["datasets"][0]["folder_path"] = str(data)
        return write_job(tmp_path, process, name=name)

    assert run_subprocess(job("one", 4)).returncode == 0
    result = launch(job("fsdp", 2), fsdp=True)
    assert result.returncode == 0, result.stderr[-4000:]
    held = [line for line in result.stderr.splitlines() if "FSDP: transformer sharded over 2 process(es)" in line]
    assert len(held) == 2, result.stderr[-4000:]
    for line in held:  # each process holds about half of the frozen weights
        local, total = (int(n) for n in line.split("holds ")[1].split(" frozen")[0].split(" of its "))
        assert 0.45 < local / total <= 0.55, line
    one, two = folder(tmp_path, "one"), folder(tmp_path, "fsdp")
    a, b = load_file(str(one / "one.safetensors")), load_file(str(two / "fsdp.safetensors"))
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-4, atol=1e-5)
    # Every process ran the sharded sampling forward; the main process alone wrote the images, once.
    assert sorted(p.name for p in (two / "samples").iterdir()) == ["000000000_0.png", "000000006_0.png"]
    assert np.array_equal(pixels(two / "samples" / "000000000_0.png"), pixels(one / "samples" / "000000000_0.png"))
    assert np.abs(pixels(two / "samples" / "000000006_0.png") - pixels(one / "samples" / "000000006_0.png")).max() <= 2
    events = [e["event"] for e in read_events(two)]
    assert events.count("start") == 1 and events.count("sample") == 2

    result = launch(job("fsdp", 2, steps=8), fsdp=True)
    assert result.returncode == 0, result.stderr[-4000:]
    assert "resumed from step 6" in result.stderr
    assert read_events(two)[-1]["state"] == "finished"
    assert_files_whole(two)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (runs on 1 or 2 GPUs, nccl)")
def test_fsdp_on_cuda_matches_one_process(tmp_path):
    """The GPU path of the FSDP test above: nccl, CUDA device mesh, shards moved to each GPU."""
    processes = min(torch.cuda.device_count(), 2)

    def job(name, batch_size):
        process = train_process(
            tmp_path,
            steps=6,
            save={"save_every": 100},
            device="cuda",
            train={"batch_size": batch_size, "gradient_checkpointing": True},
        )
        return write_job(tmp_path, process, name=name)

    assert run_subprocess(job("one", 2 * processes)).returncode == 0
    result = launch(job("fsdp", 2), processes=processes, fsdp=True)
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"FSDP: transformer sharded over {processes} process(es)" in result.stderr
    a = load_file(str(folder(tmp_path, "one") / "one.safetensors"))
    b = load_file(str(folder(tmp_path, "fsdp") / "fsdp.safetensors"))
    for key in a:
        torch.testing.assert_close(b[key], a[key], rtol=1e-3, atol=1e-4)


def fsdp_env(version="2"):
    return {**os.environ, "ACCELERATE_USE_FSDP": "true", "FSDP_VERSION": version}


def test_fsdp_settings_come_from_the_accelerate_config(monkeypatch):
    from toolkit.distributed import FsdpSettings

    monkeypatch.delenv("ACCELERATE_USE_FSDP", raising=False)
    assert FsdpSettings.from_accelerate_env() is None  # plain `python run.py` or --multi_gpu
    for key, value in {
        "ACCELERATE_USE_FSDP": "true",
        "FSDP_VERSION": "2",
        "FSDP_RESHARD_AFTER_FORWARD": "false",
        "FSDP_OFFLOAD_PARAMS": "true",
        "FSDP_ACTIVATION_CHECKPOINTING": "true",
    }.items():
        monkeypatch.setenv(key, value)
    assert FsdpSettings.from_accelerate_env() == FsdpSettings(
        reshard_after_forward=False, offload_params=True, activation_checkpointing=True
    )


def test_fsdp_rejects_what_it_cannot_shard_before_loading(tmp_path):
    process = train_process(tmp_path, model={"quantize": True, "layer_offloading": True})
    job = write_job(tmp_path, process, name="sharded")
    result = subprocess.run(
        [sys.executable, "run.py", str(job)], cwd=ROOT, capture_output=True, text=True, timeout=300, env=fsdp_env()
    )
    assert result.returncode != 0
    assert "config.process[0].model.quantize: quantized (optimum-quanto) weights cannot be sharded" in result.stderr
    assert "config.process[0].model.layer_offloading: layer offloading cannot stream FSDP-sharded" in result.stderr
    assert "loaded flux2" not in result.stderr  # refused before any weights load

    result = subprocess.run(
        [sys.executable, "run.py", str(write_job(tmp_path, train_process(tmp_path), name="v1"))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env=fsdp_env("1"),
    )
    assert result.returncode != 0
    assert "fsdp_config.fsdp_version is 1" in result.stderr and "Set fsdp_version: 2" in result.stderr


def test_killed_rank_leaves_checkpoint_intact_and_resumes(tmp_path):
    process = train_process(
        tmp_path,
        steps=30,
        save={"save_every": 2, "max_step_saves_to_keep": 3},
        train={"disable_sampling": True, "batch_size": 1},
    )
    job = write_job(tmp_path, process, name="ddp")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launcher = subprocess.Popen(
        launch_cmd(job), cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    out = folder(tmp_path, "ddp")
    deadline = time.time() + 300
    while not (out / "ddp_000000004.state.pt").exists():
        assert launcher.poll() is None and time.time() < deadline, "run ended before the step-4 checkpoint"
        time.sleep(0.1)
    workers = [
        p
        for p in psutil.Process(launcher.pid).children(recursive=True)
        if p.environ().get("LOCAL_RANK") == "1" and "run.py" in " ".join(p.cmdline())
    ]
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


def test_resume_with_another_process_count_restarts_the_epoch(tmp_path):
    def job(steps):
        process = train_process(
            tmp_path, steps=steps, save={"save_every": 100}, train={"disable_sampling": True, "batch_size": 1}
        )
        return write_job(tmp_path, process, name="regrow")

    result = launch(job(3))  # 4 images, global batches of 2: step 3 ends mid-epoch 1
    assert result.returncode == 0, result.stderr[-4000:]
    result = run_subprocess(job(5))  # one process now: global batches of 1
    assert result.returncode == 0, result.stderr[-4000:]
    assert "resumed from step 3" in result.stderr
    assert (
        "trained with global batches of 2 (batch_size x processes) and this run uses 1 (1 process(es)): the "
        "effective batch size changes and the data order restarts at epoch 2"
    ) in result.stderr
    out = folder(tmp_path, "regrow")
    assert read_events(out)[-1]["state"] == "finished"
    rows = [int(line.split(",")[0]) for line in (out / "loss_log.csv").read_text().splitlines()[1:]]
    assert rows == [1, 2, 3, 4, 5]


def test_sigkill_loop_never_corrupts_and_always_resumes(tmp_path):
    """SIGKILL at 10+ random moments of training and saving (a save every step), then finish."""
    total = 80
    process = train_process(
        tmp_path,
        steps=total,
        save={"save_every": 1, "max_step_saves_to_keep": 2},
        train={"disable_sampling": True, "batch_size": 1},
    )
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
    assert "disk full writing" in caplog.text and "the last complete checkpoint is step" in caplog.text
    out = folder(tmp_path, "full")
    load_file(str(out / "full_000000002.safetensors"))
    assert not (out / "full_000000004.safetensors").exists()
