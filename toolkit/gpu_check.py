"""The whole GPU check of issue 13 in one command: every benchmark run, a JSON per run and a summary table.

    python -m toolkit.gpu_check --out gpu_check/            # on the GPU machine (H200: under 8 minutes)
    python -m toolkit.gpu_check --dry-run --out /tmp/check  # the same runs on tiny models on the CPU

Each run is `python -m toolkit.bench ... --json` in its own process (a fresh CUDA context, so peak GPU
memory and peak host RAM (ru_maxrss) are the run's own, and a crash or a timeout costs one row, not the
check). Before the runs, optimum-quanto's kernels are built once as a visible step (toolkit/models/
quanto_kernels.py), so no run pays or hides that build. Results: `<out>/<run>.json` (the benchmark's JSON,
or the error) and `<out>/summary.md` (the table, also printed): s/step, startup (setup + first step,
compilation included), peak GPU memory against the planner's prediction, peak host RAM, TFLOP/s and MFU.

`--dry-run` runs the same list on the tiny models on the CPU (`--tiny`, 64 px, one step, compile with the
`aot_eager` backend, no memory caps): it checks the script, not the GPU. fp8 runs need torchao there too
(PyTorch's reference `_scaled_mm` on the CPU); without it they are reported as skipped.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Run:
    name: str
    arch: str
    args: tuple[str, ...]  # toolkit.bench options besides --arch and the step counts
    target: str = ""  # the number to reach, for the table

    def bench_argv(self, dry_run: bool) -> list[str]:
        argv = ["--arch", self.arch, *self.args]
        if dry_run:
            argv = _tiny(argv) + ["--tiny", "--device", "cpu", "--resolution", "64", "--steps", "1", "--warmup", "0"]
        else:
            argv += ["--steps", "3", "--warmup", "1"]  # the warm-up step compiles (with --compile)
        return argv


def _tiny(argv: list[str]) -> list[str]:
    """The dry run's version of a run: no memory cap (CUDA only), compile through aot_eager (no C++ build)."""
    out, skip = [], False
    for value in argv:
        if skip:
            skip = False
            continue
        if value in ("--vram-cap-gb", "--resolution"):
            skip = True
            continue
        out.append(value)
        if value == "--compile":
            out += ["--compile-backend", "aot_eager"]
    return out


COMMON = ("--resolution", "1024", "--rank", "16", "--batch", "1", "--gradient-checkpointing")

RUNS: tuple[Run, ...] = (
    Run("flux2_bf16", "flux2", COMMON, "28.2% MFU before"),
    Run("flux2_bf16_compile", "flux2", (*COMMON, "--compile"), ">= 40% MFU"),
    Run("flux2_fp8_compile", "flux2", (*COMMON, "--compile", "--fp8"), ">= 55% of bf16 peak"),
    Run(
        "flux2_qint4_24g",
        "flux2",
        (*COMMON, "--qtype", "qint4", "--offload", "auto", "--vram-cap-gb", "24"),
        "peak < 24 GiB, <= 1.5x uncapped",
    ),
    Run("flux2_qint4_uncapped", "flux2", (*COMMON, "--qtype", "qint4")),
    Run("klein9b_16g", "flux2_klein_9b", (*COMMON, "--offload", "auto", "--vram-cap-gb", "16"), "peak < 16 GiB"),
    Run("klein4b_12g", "flux2_klein_4b", (*COMMON, "--offload", "auto", "--vram-cap-gb", "12"), "peak < 12 GiB"),
    Run("klein4b_compile", "flux2_klein_4b", (*COMMON, "--compile"), ">= 35% MFU"),
    Run(
        "flux1_qfloat8_24g",
        "flux",
        (*COMMON, "--qtype", "qfloat8", "--offload", "auto", "--vram-cap-gb", "24"),
        "peak < 24 GiB",
    ),
)


def _fp8_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("torchao") is not None


def run_one(run: Run, dry_run: bool, timeout: float) -> dict:
    """One benchmark run in its own process: its JSON result, or {"error": ...}."""
    argv = run.bench_argv(dry_run)
    if "--fp8" in argv and not _fp8_available():
        return {"skipped": "torchao is not installed (pip install torchao)"}
    command = [sys.executable, "-m", "toolkit.bench", *argv, "--json"]
    log.info("run %s: %s", run.name, " ".join(command[1:]))
    started = time.perf_counter()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, timeout=timeout, check=False)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s", "wall_s": round(time.perf_counter() - started, 1)}
    wall = round(time.perf_counter() - started, 1)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-12:]
        return {"error": f"exit code {proc.returncode}", "log_tail": tail, "wall_s": wall}
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    result["wall_s"] = wall
    return result


def _build_quanto_kernels(runs: list[Run]) -> str | None:
    """Build optimum-quanto's kernels once, visibly, before the quantized runs; the error if it cannot."""
    import torch

    from toolkit.models.quanto_kernels import QuantoKernelError, ensure_kernels

    device = torch.device("cuda", 0)
    qtypes = {f"{r.name} --qtype": r.args[r.args.index("--qtype") + 1] for r in runs if "--qtype" in r.args}
    started = time.perf_counter()
    try:
        ensure_kernels(qtypes, device, device)  # the benchmark quantizes on the device
    except QuantoKernelError as exc:
        log.error("%s", exc)
        return str(exc)
    log.info("optimum-quanto kernels ready after %.0f s (not counted in any run)", time.perf_counter() - started)
    return None


def _cell(value, fmt="{}"):
    return "-" if value is None else fmt.format(value)


def summary(results: dict[str, dict], dry_run: bool) -> str:
    lines = [
        f"GPU check of issue 13{' (DRY RUN: tiny models on the CPU, numbers mean nothing)' if dry_run else ''}",
        "",
        "| run | s/step | startup s (compile s) | peak GPU GiB / predicted | peak host GiB | TFLOP/s | MFU | target |",
        "|---|---|---|---|---|---|---|---|",
    ]
    targets = {run.name: run.target for run in RUNS}
    for name, r in results.items():
        if "s_per_step" not in r:
            what = r.get("skipped") and f"skipped: {r['skipped']}" or f"FAILED: {r.get('error')}"
            lines.append(f"| {name} | {what} | | | | | | {targets.get(name, '')} |")
            continue
        lines.append(
            f"| {name} | {r['s_per_step']:.3f} | {r['startup_s']} ({_cell(r.get('compile_s'))}) | "
            f"{_cell(r['peak_gpu_gb'])} / {r['predicted_peak_gb']} | {r['peak_host_gb']} | {r['tflops']:.1f} | "
            f"{100 * r['mfu']:.1f}% | {targets.get(name, '')} |"
        )
    return "\n".join(lines)


def main(argv=None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    parser = argparse.ArgumentParser(prog="python -m toolkit.gpu_check", description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="gpu_check", help="folder for <run>.json and summary.md")
    parser.add_argument("--dry-run", action="store_true", help="tiny models on the CPU: checks the script only")
    parser.add_argument("--only", default="", help="comma-separated run names (default: all)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds per run (default 240; dry run 600)")
    args = parser.parse_args(argv)
    runs = [r for r in RUNS if not args.only or r.name in args.only.split(",")]
    unknown = set(filter(None, args.only.split(","))) - {r.name for r in RUNS}
    if unknown:
        parser.error(f"--only: unknown run(s) {', '.join(sorted(unknown))}; known: {', '.join(r.name for r in RUNS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    timeout = args.timeout or (600.0 if args.dry_run else 240.0)
    kernel_error = None if args.dry_run else _build_quanto_kernels(runs)
    started = time.perf_counter()
    results = {}
    for run in runs:
        if kernel_error and "--qtype" in run.args:
            result = {"error": kernel_error}
        else:
            result = run_one(run, args.dry_run, timeout)
        results[run.name] = result
        (out / f"{run.name}.json").write_text(json.dumps(result, indent=1))
        state = "ok" if "s_per_step" in result else result.get("skipped") or result.get("error")
        log.info("run %s: %s (%.0f s since the start)", run.name, state, time.perf_counter() - started)
    table = summary(results, args.dry_run)
    (out / "summary.md").write_text(table + "\n")
    print(table)  # the command's output
    failed = [name for name, r in results.items() if "error" in r]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
