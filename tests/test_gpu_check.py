"""The one-command GPU check: every run's arguments are valid benchmark arguments, and a dry run on the CPU
(tiny models) writes a JSON per run and the summary table."""

from __future__ import annotations

import json

import pytest

from toolkit import bench, gpu_check


def test_every_run_is_a_valid_benchmark_command_real_and_dry():
    names = [run.name for run in gpu_check.RUNS]
    assert len(names) == len(set(names)) and len(names) >= 8
    for run in gpu_check.RUNS:
        real = run.bench_argv(dry_run=False)
        if "--fp8" not in real:  # --fp8 on a CUDA device checks the GPU at parse time
            args = bench.parse_args(real + ["--device", "cuda"])
            assert args.resolution == 1024 and args.gradient_checkpointing and args.rank == 16
        dry = bench.parse_args(run.bench_argv(dry_run=True))
        assert dry.tiny and dry.device == "cpu" and dry.vram_cap_gb is None and dry.resolution == 64
        assert dry.compile_backend == ("aot_eager" if dry.compile else "inductor")
    caps = {run.name: run.bench_argv(False) for run in gpu_check.RUNS}
    assert caps["flux2_qint4_24g"][caps["flux2_qint4_24g"].index("--vram-cap-gb") + 1] == "24"


@pytest.mark.slow  # runs the whole check on tiny models
def test_dry_run_writes_a_json_per_run_and_the_table(tmp_path, tiny, capsys):
    tiny("flux2")
    only = "flux2_bf16_compile,flux2_qint4_24g,flux2_fp8_compile"
    code = gpu_check.main(["--dry-run", "--out", str(tmp_path), "--only", only])
    out = capsys.readouterr().out
    assert code == 0, out
    for name in only.split(","):
        result = json.loads((tmp_path / f"{name}.json").read_text())
        assert "s_per_step" in result or result.get("skipped", "").startswith("torchao"), result
    compiled = json.loads((tmp_path / "flux2_bf16_compile.json").read_text())
    assert compiled["compile"] and compiled["compile_s"] > 0 and compiled["startup_s"] >= compiled["first_step_s"]
    quantized = json.loads((tmp_path / "flux2_qint4_24g.json").read_text())
    assert quantized["qtype"] == "qint4" and quantized["offload"] == "auto"
    table = (tmp_path / "summary.md").read_text()
    assert "DRY RUN" in table and table.strip() in out
    assert "| flux2_bf16_compile |" in table and "| flux2_qint4_24g |" in table


def test_without_a_cuda_toolkit_the_quantized_runs_fail_with_the_reason_and_the_rest_run(tmp_path, monkeypatch):
    from toolkit.models import quanto_kernels

    def no_nvcc(qtypes, quantize_device, device):
        raise quanto_kernels.QuantoKernelError(f"{', '.join(qtypes)}: no CUDA toolkit (nvcc)")

    ran = []
    monkeypatch.setattr(quanto_kernels, "ensure_kernels", no_nvcc)
    monkeypatch.setattr(
        gpu_check,
        "run_one",
        lambda run, dry_run, timeout: (
            ran.append(run.name)
            or {
                "s_per_step": 1.0,
                "startup_s": 9.0,
                "compile_s": None,
                "peak_gpu_gb": 60.0,
                "predicted_peak_gb": 61.0,
                "peak_host_gb": 5.0,
                "tflops": 300.0,
                "mfu": 0.3,
            }
        ),
    )
    code = gpu_check.main(["--out", str(tmp_path), "--only", "flux2_bf16,flux2_qint4_uncapped"])
    assert code == 1 and ran == ["flux2_bf16"]
    failed = json.loads((tmp_path / "flux2_qint4_uncapped.json").read_text())
    assert failed["error"] == "flux2_qint4_uncapped --qtype: no CUDA toolkit (nvcc)"
    table = (tmp_path / "summary.md").read_text()
    assert "| flux2_qint4_uncapped | FAILED: flux2_qint4_uncapped --qtype: no CUDA toolkit (nvcc) |" in table
    assert "| flux2_bf16 | 1.000 | 9.0 (-) | 60.0 / 61.0 | 5.0 | 300.0 | 30.0% |" in table
