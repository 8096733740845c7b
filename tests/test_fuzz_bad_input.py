"""Fuzzing the front door of a job: malformed job files, configs and datasets get a clear ToolkitError
naming the key or the file, before any weights load (and never another exception type).

Three generators (hypothesis): raw bytes/text as a job file; a valid tiny job with random keys removed,
retyped, renamed or set to hostile strings (paths, ${ENV}, names with '/', huge numbers, inf); a dataset
folder of random files (bytes under image names, truncated images, links to nothing or to themselves,
captions that are not UTF-8).
"""

from __future__ import annotations

import copy
import math
import os
import shutil
import tempfile
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.jobs.train_helpers import train_process
from toolkit.config import load_raw_config, parse_job_config
from toolkit.errors import ConfigError, ToolkitError

pytestmark = pytest.mark.slow  # hundreds of generated inputs through the whole validation path each

FUZZ = settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
HOSTILE = st.sampled_from(
    [
        "",
        " ",
        "../../etc",
        "/etc/passwd",
        "${HOME}",
        "${NOT_SET_ANYWHERE_42}",
        "a/b",
        "\x00",
        "x" * 5000,
        "tiny:nope",
        "org/repo",
        "~",
        "[name]",
        "[trigger]",
        "--seed",
        "💥",
        "\ud800".encode("utf-8", "surrogatepass").decode("latin-1"),
    ]
)
VALUES = st.one_of(
    HOSTILE,
    st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.none(),
    st.lists(HOSTILE, max_size=3),
    st.dictionaries(HOSTILE, HOSTILE, max_size=2),
)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """A valid tiny training process, its dataset and training folder in a temp folder."""
    return train_process(tmp_path_factory.mktemp("fuzz"), steps=2)


def key_paths(value, prefix=()):
    """Every (path tuple) into a nested dict/list."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield prefix + (key,)
            yield from key_paths(item, prefix + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield prefix + (i,)
            yield from key_paths(item, prefix + (i,))


def mutate(process: dict, data) -> dict:
    process = copy.deepcopy(process)
    paths = [p for p in key_paths(process) if p[0] != "training_folder"]  # never write outside the temp folder
    for _ in range(data.draw(st.integers(1, 3), label="mutations")):
        path = data.draw(st.sampled_from(paths), label="path")
        parent = process
        try:
            for part in path[:-1]:
                parent = parent[part]
            kind = data.draw(st.sampled_from(["delete", "set", "rename"]), label="kind")
            if kind == "delete" and isinstance(parent, dict):
                parent.pop(path[-1], None)
            elif kind == "rename" and isinstance(parent, dict) and path[-1] in parent:
                parent[str(path[-1]) + data.draw(st.sampled_from(["_", "s", "x"]))] = parent.pop(path[-1])
            else:
                parent[path[-1]] = data.draw(VALUES, label="value")
        except (KeyError, IndexError, TypeError):
            continue
    return process


def assert_clear(exc: ToolkitError) -> None:
    """A user-facing error that says where: a key path (config...., datasets[...]) or a file."""
    text = str(exc)
    assert "config." in text or "datasets[" in text or "/" in text, text
    assert "Traceback" not in text


def checks_before_loading(raw: dict) -> None:
    """What run.py does before any weights load: the one validation path (toolkit/validate.py)."""
    from toolkit.validate import check_job

    check_job(raw)


@FUZZ
@given(data=st.data())
def test_malformed_configs_fail_clearly_before_loading(base, data, monkeypatch):
    def no_loading(self):
        raise AssertionError("weights loaded during the checks")

    from toolkit.models.base_model import BaseModel

    monkeypatch.setattr(BaseModel, "load_model", no_loading, raising=False)
    process = mutate(base, data)
    raw = {"job": "extension", "config": {"name": data.draw(st.one_of(st.just("fuzz"), HOSTILE)), "process": [process]}}
    try:
        checks_before_loading(raw)
    except ToolkitError as exc:
        assert_clear(exc)


@FUZZ
@given(payload=st.one_of(st.binary(max_size=400), st.text(max_size=400)), suffix=st.sampled_from([".yaml", ".json"]))
def test_malformed_job_files_fail_clearly(payload, suffix):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / f"job{suffix}"
        path.write_bytes(payload if isinstance(payload, bytes) else payload.encode("utf-8", "surrogatepass"))
        try:
            raw = load_raw_config(path)
        except ConfigError as exc:
            assert exc.source == str(path) and exc.problems
            return
        try:
            parse_job_config(raw, str(path))
        except ConfigError as exc:
            assert exc.problems


@FUZZ
@given(
    files=st.lists(
        st.tuples(
            st.sampled_from(["a.png", "b.jpg", "c.webp", "d.jpeg", "e.PNG"]),
            st.sampled_from(["random", "truncated", "empty", "dangling", "loop", "good", "bad_caption"]),
            st.binary(max_size=64),
        ),
        min_size=1,
        max_size=5,
        unique_by=lambda f: f[0],
    )
)
def test_malformed_datasets_fail_clearly_or_are_skipped_by_name(files):
    from PIL import Image

    from toolkit.config_modules import DatasetConfig
    from toolkit.data.dataset import build_items

    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "data"
        folder.mkdir()
        for name, kind, payload in files:
            path = folder / name
            if kind in ("good", "bad_caption", "truncated"):
                Image.new("RGB", (40, 24), (payload[:1] or b"\x07")[0]).save(path, format="PNG")
                if kind == "truncated":
                    path.write_bytes(path.read_bytes()[:30])
                if kind == "bad_caption":
                    path.with_suffix(".txt").write_bytes(b"\xff\xfe caption \xe9")
            elif kind == "dangling":
                path.symlink_to(Path(tmp) / "gone.png")
            elif kind == "loop":
                os.symlink(name, path)
            else:
                path.write_bytes(payload if kind == "random" else b"")
        config = DatasetConfig(folder_path=str(folder), resolution=[32], caption_dropout_rate=0.0)
        key = "config.process[0].datasets[0]"
        try:
            items = build_items([config], None, 16, [key])
        except ToolkitError as exc:
            assert key in str(exc), str(exc)
        else:
            assert items and all(math.isfinite(i.bucket[0]) for i in items)
        shutil.rmtree(folder)


def test_the_base_job_itself_passes(base):
    """The fuzz starts from a valid job: the checks pass on it unchanged (the test could fail)."""
    checks_before_loading({"job": "extension", "config": {"name": "fuzz", "process": [copy.deepcopy(base)]}})
    assert yaml.safe_dump(base)
