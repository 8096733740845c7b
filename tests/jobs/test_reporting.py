"""A run's reports beside its checkpoints: performance_log_every, train.validation_config, logging.use_wandb
(the real wandb client, WANDB_MODE=offline) and save.push_to_hub (huggingface_hub's HfApi, recorded: there is no
hub to reach from the tests, so what the hub would do with the calls is not exercised)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from PIL import Image

import run
from tests.jobs.train_helpers import DEMO_DATA, train_process, write_job
from toolkit.progress import read_events

pytestmark = pytest.mark.slow  # end-to-end: builds / loads tiny models or runs jobs (see pyproject.toml)


class RecordingHfApi:
    calls: list = []

    def __init__(self, *args, **kwargs):
        pass

    def create_repo(self, **kwargs):
        self.calls.append(("create_repo", kwargs))
        return f"https://huggingface.co/{kwargs['repo_id']}"

    def upload_folder(self, **kwargs):
        files = sorted(
            str(p.relative_to(kwargs["folder_path"]))
            for p in Path(kwargs["folder_path"]).rglob("*")
            if p.is_file() and _allowed(p.relative_to(kwargs["folder_path"]), kwargs["allow_patterns"])
        )
        self.calls.append(("upload_folder", {**kwargs, "files": files}))


def _allowed(path: Path, patterns: list[str]) -> bool:
    from fnmatch import fnmatch

    return any(fnmatch(str(path), pattern) for pattern in patterns)


@pytest.fixture(scope="module")
def reporting_run(tmp_path_factory):
    import huggingface_hub

    tmp = tmp_path_factory.mktemp("reporting")
    held_out = tmp / "held_out"
    held_out.mkdir()
    for name in ("robot_06.png", "robot_07.png"):  # not among the 4 training images
        Image.open(DEMO_DATA / name).save(held_out / name)
    process = train_process(
        tmp,
        steps=4,
        performance_log_every=2,
        logging={"use_wandb": True, "project_name": "tests", "run_name": "tiny-run"},
        save={"push_to_hub": True, "hf_repo_id": "me/tiny-lora", "hf_private": True, "save_every": 4},
        train={
            "validation_config": {
                "validation_items": [
                    {
                        "image_path": str(held_out / "robot_06.png"),
                        "prompt": "a photo of [trigger], on a pink background",
                    },
                    {"image_path": str(held_out / "robot_07.png"), "prompt": "[trigger] on yellow"},
                ],
                "resolution": 64,
                "validate_every_n_steps": 2,
                "validation_sigmas": [0.9, 0.5],
            }
        },
        sample={"prompts": ["a photo of [trigger]"], "sample_every": 100},
    )
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_MODE", "offline")
        mp.setenv("WANDB_SILENT", "true")
        mp.setattr(huggingface_hub, "HfApi", RecordingHfApi)
        RecordingHfApi.calls = []
        assert run.main([str(write_job(tmp, process))]) == 0
    return tmp / "output" / "tiny_lora", list(RecordingHfApi.calls)


def test_performance_breakdown_in_progress_log(reporting_run):
    folder, _ = reporting_run
    reports = [e for e in read_events(folder) if e["event"] == "performance"]
    assert [e["step"] for e in reports] == [2, 4] and all(e["steps"] == 2 for e in reports)
    for report in reports:
        seconds = report["seconds"]
        assert {"data", "forward", "backward", "optimizer", "sampling", "saving", "validation", "other"} == set(seconds)
        assert seconds["forward"] > 0 and seconds["backward"] > 0 and seconds["optimizer"] > 0
        assert abs(sum(seconds.values()) - report["wall_s"]) < 0.01
    assert reports[0]["seconds"]["validation"] > 0  # steps 1 and 2 validate


def test_validation_curve(reporting_run):
    folder, _ = reporting_run
    events = [e for e in read_events(folder) if e["event"] == "validation"]
    assert [e["step"] for e in events] == [1, 2, 4]  # the run's first step, then every 2
    assert all(e["loss"] > 0 for e in events) and len({e["loss"] for e in events}) == 3
    rows = (folder / "validation_log.csv").read_text().splitlines()
    assert rows[0] == "step,val_loss" and [r.split(",")[0] for r in rows[1:]] == ["1", "2", "4"]
    assert (folder / "loss.png").is_file()


def _wandb_records(path: Path):
    """The protobuf records of a .wandb file (a LevelDB-style log: 7-byte file header, 32 KiB blocks, each record
    with a 7-byte header: crc32, length, type full/first/middle/last)."""
    from wandb.proto import wandb_internal_pb2

    data = path.read_bytes()
    assert data[:4] == b":W&B"
    offset, block, pending = 7, 32768, b""
    while offset + 7 <= len(data):
        if block - offset % block < 7:  # too little room left in this block for a header: padding
            offset += block - offset % block
            continue
        _, length, kind = struct.unpack("<IHB", data[offset : offset + 7])
        if kind == 0 and length == 0:
            break
        pending += data[offset + 7 : offset + 7 + length]
        offset += 7 + length
        if kind in (1, 4):  # full, last
            record = wandb_internal_pb2.Record()
            record.ParseFromString(pending)
            pending = b""
            yield record


def test_wandb_offline_run_holds_the_losses(reporting_run):
    import json

    folder, _ = reporting_run
    runs = list((folder / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    records = list(_wandb_records(runs[0]))
    history = [
        {item.key or "/".join(item.nested_key): json.loads(item.value_json) for item in r.history.item}
        for r in records
        if r.WhichOneof("record_type") == "history"
    ]
    losses = {h["_step"]: h["loss"] for h in history if "loss" in h}
    assert sorted(losses) == [1, 2, 3, 4]
    logged = [line.split(",") for line in (folder / "loss_log.csv").read_text().splitlines()[1:]]
    assert all(abs(losses[int(step)] - float(loss)) < 1e-4 * max(1.0, float(loss)) for step, loss, _ in logged)
    assert any("val/loss" in h for h in history) and any("time/forward" in h for h in history)
    assert history[0]["_step"] == 0 and history[0]["samples/captions"] == ["a photo of r0b0t"]
    run_record = next(r.run for r in records if r.WhichOneof("record_type") == "run")
    assert run_record.project == "tests" and run_record.display_name == "tiny-run"


def test_push_to_hub_creates_the_repo_and_uploads_the_results(reporting_run):
    folder, calls = reporting_run
    assert [name for name, _ in calls] == ["create_repo", "upload_folder"]
    create, upload = calls[0][1], calls[1][1]
    assert create["repo_id"] == "me/tiny-lora" and create["private"] is True and create["exist_ok"] is True
    assert upload["repo_id"] == "me/tiny-lora" and Path(upload["folder_path"]) == folder
    files = upload["files"]
    assert {"tiny_lora.safetensors", "config.yaml", "README.md", "loss.png", "validation_log.csv"} <= set(files)
    assert any(f.startswith("samples/") for f in files)
    assert not any(f.endswith(".state.pt") or f.startswith("tiny_lora_0") or f.startswith("wandb") for f in files)
    assert (
        "base_model: tiny:flux2" in (folder / "README.md").read_text() and "r0b0t" in (folder / "README.md").read_text()
    )
