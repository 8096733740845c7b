"""optimum-quanto's kernel build: announced before it starts, a heartbeat while it runs, refused with the fix
when the toolchain is missing, silent when already built. The build itself is mocked."""

from __future__ import annotations

import logging
import time

import pytest
import torch

from toolkit.models import quanto_kernels
from toolkit.models.quanto_kernels import (
    QuantoKernelError,
    ensure_kernels,
    needed_extensions,
)

REAL_TOOLCHAIN_PROBLEM = quanto_kernels.toolchain_problem
CPU, CUDA = torch.device("cpu"), torch.device("cuda", 0)


class FakeExtension:
    def __init__(self, name, folder, build_seconds=0.0):
        self.name, self.build_directory, self._lib = name, str(folder), None
        self.builds, self.build_seconds = 0, build_seconds

    @property
    def lib(self):
        if self._lib is None:
            self.builds += 1
            time.sleep(self.build_seconds)
            self._lib = object()
        return self._lib


@pytest.fixture
def fake(monkeypatch, tmp_path):
    extensions = {name: FakeExtension(name, tmp_path / name) for name in ("quanto_cpp", "quanto_cuda")}
    monkeypatch.setattr(quanto_kernels, "_extension", extensions.__getitem__)
    monkeypatch.setattr(quanto_kernels, "toolchain_problem", lambda name: None)
    return extensions


def test_which_libraries_a_run_compiles():
    assert needed_extensions({"model.qtype": "qint4"}, CPU, CPU) == ["quanto_cpp"]
    assert needed_extensions({"model.qtype": "qint4"}, CPU, CUDA) == ["quanto_cpp", "quanto_cuda"]
    assert needed_extensions({"--qtype": "qint4"}, CUDA, CUDA) == ["quanto_cuda"]
    assert needed_extensions({"model.qtype_te": "qfloat8"}, CPU, CUDA) == ["quanto_cuda"]
    assert needed_extensions({"model.qtype": "qint8"}, CPU, CUDA) == []
    assert needed_extensions({"model.qtype": "qfloat8"}, CPU, CPU) == []


def test_the_build_is_announced_with_an_estimate_and_a_heartbeat(fake, monkeypatch, caplog):
    monkeypatch.setattr(quanto_kernels, "HEARTBEAT_S", 0.05)
    fake["quanto_cuda"].build_seconds = 0.3
    with caplog.at_level(logging.INFO, logger="toolkit.models.quanto_kernels"):
        ensure_kernels({"model.qtype": "qfloat8"}, CPU, CUDA)
    messages = [r.getMessage() for r in caplog.records]
    assert messages[0].startswith(
        "building optimum-quanto's quanto_cuda kernels for model.qtype: qfloat8: usually 2-10 minutes"
    )
    assert any(m.startswith("still compiling optimum-quanto's quanto_cuda kernels (") for m in messages[1:-1])
    assert messages[-1].startswith("optimum-quanto's quanto_cuda kernels built in")
    assert fake["quanto_cuda"].builds == 1
    caplog.clear()
    ensure_kernels({"model.qtype": "qfloat8"}, CPU, CUDA)  # loaded: nothing to say
    assert caplog.records == [] and fake["quanto_cuda"].builds == 1


def test_already_built_libraries_load_silently(fake, caplog):
    folder = fake["quanto_cpp"].build_directory
    import pathlib

    pathlib.Path(folder).mkdir(parents=True)
    (pathlib.Path(folder) / "quanto_cpp.so").write_bytes(b"")
    (pathlib.Path(folder) / "pytorch_version.txt").write_text(torch.__version__)
    with caplog.at_level(logging.INFO, logger="toolkit.models.quanto_kernels"):
        ensure_kernels({"model.qtype": "qint4"}, CPU, CPU)
    assert caplog.records == [] and fake["quanto_cpp"].builds == 1


def test_a_missing_cuda_toolkit_is_an_error_with_the_fix(fake, monkeypatch):
    from torch.utils import cpp_extension

    monkeypatch.setattr(quanto_kernels, "toolchain_problem", REAL_TOOLCHAIN_PROBLEM)
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", None)
    monkeypatch.setattr(cpp_extension, "is_ninja_available", lambda: True)
    with pytest.raises(QuantoKernelError) as info:
        ensure_kernels({"model.qtype": "qint4", "model.qtype_te": "qfloat8"}, CPU, CUDA)
    message = str(info.value)
    assert message.startswith(
        "model.qtype: qint4, model.qtype_te: qfloat8: optimum-quanto must compile its "
        "quanto_cuda kernels on this machine first, and no CUDA toolkit (nvcc)"
    )
    assert "qint8 needs no build" in message
    assert fake["quanto_cpp"].builds == 1 and fake["quanto_cuda"].builds == 0  # g++ is here: the C++ part built


def test_missing_ninja_and_nvcc_are_named(monkeypatch):
    from torch.utils import cpp_extension

    monkeypatch.setattr(cpp_extension, "is_ninja_available", lambda: False)
    assert "pip install ninja" in quanto_kernels.toolchain_problem("quanto_cpp")
    monkeypatch.setattr(cpp_extension, "is_ninja_available", lambda: True)
    monkeypatch.setattr(cpp_extension, "CUDA_HOME", None)
    assert "nvcc" in quanto_kernels.toolchain_problem("quanto_cuda")
    assert quanto_kernels.toolchain_problem("quanto_cpp") is None  # g++ is on this machine


def test_the_real_cpu_library_builds_or_loads():
    """The real quanto_cpp (built by g++ here once per machine): ready afterwards, qint4 quantizes."""
    ensure_kernels({"model.qtype": "qint4"}, CPU, CPU)
    assert quanto_kernels._extension("quanto_cpp")._lib is not None
