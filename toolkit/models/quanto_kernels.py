"""optimum-quanto's compiled kernels: built as a visible step, or refused with the fix, never a silent pause.

What optimum-quanto 0.2 does (optimum/quanto/library/extensions/): its C++ (`quanto_cpp`) and CUDA
(`quanto_cuda`) kernels ship as sources and are compiled by `torch.utils.cpp_extension.load` (ninja, g++,
and nvcc for CUDA) the first time an op needs them, into a `build/` folder inside the installed package
(kept while the PyTorch version stays the same), with the compiler's output hidden. Which quantized
weights need which library:

* qint4 (bf16, groups of 128): quantizing packs the int4 values and unpacks them (`quanto::unpack`) to
  re-pack them for TinyGemm (`torch._weight_int4pack_mm`, PyTorch's own kernel): the unpack runs on the
  device that quantizes, so `quanto_cpp` when quantizing on the CPU (what loading does), `quanto_cuda`
  when quantizing on a GPU (what the benchmark does) or with fp16 scales (AWQ kernels).
* qfloat8 on a CUDA GPU of compute capability 8.0+: moving the weights to the GPU re-packs them for the
  Marlin fp8 kernel (`quanto_cuda`: seven .cu/.cpp sources, the Marlin GEMM templates the slowest).
* qint8: PyTorch ops only, nothing to build.

That build is what the first qint4 / qfloat8 runs on the H200 spent 70-110 s on without printing anything
(and with no CUDA toolkit on the machine it fails mid-load with a compiler error). `ensure_kernels` runs
it first, on purpose: it checks the toolchain (a missing nvcc, compiler or ninja is a ToolkitError
naming the YAML key and the fix), logs what it builds and how long it usually takes before it starts,
logs every 30 s while it runs, and the time it took. Already built kernels load in about a second,
silently.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import threading
import time
from pathlib import Path

import torch

from toolkit.errors import ToolkitError

log = logging.getLogger(__name__)

HEARTBEAT_S = 30.0
ESTIMATES = {"quanto_cpp": "about 10-60 s", "quanto_cuda": "usually 2-10 minutes (the Marlin fp8 GEMM templates)"}


class QuantoKernelError(ToolkitError):
    pass


def needed_extensions(qtypes: dict[str, str], quantize_device: torch.device, device: torch.device) -> list[str]:
    """optimum-quanto libraries that quantizing on `quantize_device` and running on `device` compile.

    qtypes: YAML key -> qtype (`{"model.qtype": "qint4", "model.qtype_te": "qfloat8"}`), only the ones used."""
    names = []
    values = set(qtypes.values())
    if "qint4" in values and quantize_device.type == "cpu":
        names.append("quanto_cpp")
    if device.type == "cuda" and ({"qfloat8", "qint4"} & values):
        names.append("quanto_cuda")
    return names


def _extension(name: str):
    from optimum.quanto.library.extensions import get_extension

    return get_extension(name)


def is_built(ext) -> bool:
    """The library is compiled for this PyTorch (quanto rebuilds it when the version file differs)."""
    folder = Path(ext.build_directory)
    version = folder / "pytorch_version.txt"
    return (
        (folder / f"{ext.name}.so").is_file() and version.is_file() and version.read_text().strip() == torch.__version__
    )


def toolchain_problem(name: str) -> str | None:
    """What is missing to compile extension `name` (None: nothing)."""
    from torch.utils import cpp_extension

    if not cpp_extension.is_ninja_available():
        return "ninja is not installed (pip install ninja)"
    compiler = os.environ.get("CXX", "c++")
    if shutil.which(compiler) is None:
        return f"no C++ compiler ('{compiler}' not on PATH; apt install g++)"
    if name == "quanto_cuda":
        home = cpp_extension.CUDA_HOME
        if home is None or not (Path(home) / "bin" / "nvcc").is_file():
            return (
                f"no CUDA toolkit (nvcc) for PyTorch's CUDA {torch.version.cuda} (CUDA_HOME unset or without "
                "bin/nvcc); install the matching toolkit (e.g. apt install cuda-toolkit-12-x, or "
                "pip install nvidia-cuda-nvcc-cu12 and set CUDA_HOME)"
            )
    return None


@contextlib.contextmanager
def heartbeat(message: str, every: float | None = None):
    """Log `message` with the elapsed time every `every` seconds (default HEARTBEAT_S) until the block ends."""
    every = HEARTBEAT_S if every is None else every
    done = threading.Event()
    start = time.perf_counter()

    def beat():
        while not done.wait(every):
            log.info("%s (%.0f s so far)", message, time.perf_counter() - start)

    thread = threading.Thread(target=beat, daemon=True, name="quanto-build-heartbeat")
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def ensure_kernels(qtypes: dict[str, str], quantize_device: torch.device, device: torch.device) -> None:
    """Build (visibly) or load the optimum-quanto libraries the run needs, before any weight is quantized."""
    for name in needed_extensions(qtypes, torch.device(quantize_device), torch.device(device)):
        ext = _extension(name)
        if ext._lib is not None:
            continue
        keys = ", ".join(f"{key}: {qtype}" for key, qtype in qtypes.items())
        if is_built(ext):
            ext.lib  # noqa: B018 (loads the compiled library: about a second)
            continue
        problem = toolchain_problem(name)
        if problem is not None:
            alternative = "qint8 needs no build (more memory than qint4)"
            raise QuantoKernelError(
                f"{keys}: optimum-quanto must compile its {name} kernels on this machine "
                f"first, and {problem}. Install it and rerun (the build is kept for later "
                f"runs), or choose another qtype: {alternative}"
            )
        log.info(
            "building optimum-quanto's %s kernels for %s: %s, once per machine and PyTorch version (kept in %s)",
            name,
            keys,
            ESTIMATES[name],
            ext.build_directory,
        )
        started = time.perf_counter()
        with heartbeat(f"still compiling optimum-quanto's {name} kernels"):
            try:
                ext.lib  # noqa: B018 (the build)
            except (RuntimeError, OSError, ImportError) as exc:
                raise QuantoKernelError(
                    f"{keys}: compiling optimum-quanto's {name} kernels failed ({exc}); the "
                    f"compiler's output is in {ext.build_directory}. Fix the toolchain, or "
                    "choose qtype: qint8 (no build)"
                ) from exc
        log.info("optimum-quanto's %s kernels built in %.0f s", name, time.perf_counter() - started)
