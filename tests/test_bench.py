"""The training-step benchmark: the tiny CPU run and its overhead ratio, real-size shapes without memory."""

from __future__ import annotations

import json
import math
import re
import subprocess
import sys

import psutil
import pytest
import torch

from toolkit import bench
from toolkit.paths import ROOT

pytestmark = pytest.mark.slow  # end-to-end: builds / loads tiny models or runs jobs (see pyproject.toml)


# Parameters of the released transformers (FLUX.2-dev "32B", klein "4B" / "9B", FLUX.1 "12B").
EXPECTED_PARAMETERS = {"flux2": 32.22e9, "flux2_klein_4b": 3.88e9, "flux2_klein_9b": 9.08e9, "flux": 11.90e9}


@pytest.mark.parametrize("arch", sorted(EXPECTED_PARAMETERS))
def test_real_size_architectures_on_the_meta_device(arch):
    bench.meta_transformer(arch)  # imports (diffusers' modules are loaded lazily) before the measurement
    rss = psutil.Process().memory_info().rss
    model = bench.meta_transformer(arch)
    assert all(p.is_meta for p in model.parameters())
    count = sum(p.numel() for p in model.parameters())
    assert count == pytest.approx(EXPECTED_PARAMETERS[arch], rel=0.005)
    assert psutil.Process().memory_info().rss - rss < 200 * 1024**2  # 32B parameters would be 64 GB in bf16


def test_tiny_cpu_benchmark_prints_the_overhead_ratio(tiny, capsys):
    tiny("flux2")  # the tiny model's config, built once per machine
    result = bench.main(
        ["--arch", "flux2", "--tiny", "--device", "cpu", "--resolution", "32", "--steps", "2", "--warmup", "0"]
    )
    out = capsys.readouterr().out
    match = re.search(r"full training step / bare transformer step = ([0-9.]+) \(([0-9.]+) s / ([0-9.]+) s", out)
    assert match, out
    ratio, full, bare = map(float, match.groups())
    assert ratio == pytest.approx(full / bare, rel=1e-2) and ratio > 0  # a measurement, not a speed target
    assert result["overhead_ratio"] == pytest.approx(ratio, rel=1e-2)
    assert "s/step" in out and "MFU" in out and "peak host memory" in out


def test_the_module_runs_as_a_command():
    proc = subprocess.run(
        [sys.executable, "-m", "toolkit.bench", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "--vram-cap-gb" in proc.stdout and "--peak-tflops" in proc.stdout


def test_block_by_block_build_with_quantization_and_offloading(monkeypatch, capsys):
    """The real-size path (meta -> each block materialised, quantized, streamed) on a small configuration."""
    import dataclasses

    from toolkit.arch import BenchShape
    from toolkit.arch_registry import get_arch

    small = dataclasses.replace(
        get_arch("flux2_klein_4b"),
        bench=BenchShape(
            dict(
                num_layers=2,
                num_single_layers=2,
                num_attention_heads=2,
                attention_head_dim=32,
                joint_attention_dim=96,
                mlp_ratio=3.0,
                in_channels=128,
                guidance_embeds=False,
                axes_dims_rope=(8, 8, 8, 8),
            ),
            128,
            16,
        ),
    )
    monkeypatch.setattr(bench, "bench_archs", lambda: {"flux2_klein_4b": small})
    argv = [
        "--arch",
        "flux2_klein_4b",
        "--device",
        "cpu",
        "--resolution",
        "32",
        "--steps",
        "1",
        "--warmup",
        "0",
        "--qtype",
        "qint8",
        "--gradient-checkpointing",
        "--json",
    ]
    result = bench.main(argv + ["--offload", "50"])
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads(json.dumps(result))
    assert result["offloaded_blocks"] == 2 and result["blocks"] == 4
    assert result["parameters"] == bench.parameter_count("flux2_klein_4b")
    assert result["flops_per_step"] > 0 and "overhead_ratio" not in result  # bare step only with --overhead
    unstreamed = bench.main(argv + ["--offload", "none"])
    assert unstreamed["offloaded_blocks"] == 0
    assert result["losses"] == unstreamed["losses"] and all(map(math.isfinite, result["losses"]))


def test_flop_count_matches_the_matmul_formula():
    """FlopCounterMode on the meta device against 4 x tokens x linear weights: forward 2 x tokens x weights,
    backward (input gradients only: the base weights are frozen) as much again. The double blocks' image and
    text linears each see only their own tokens, attention adds its share: between 2.5 and 5 times."""
    args = bench.parse_args(["--arch", "flux2_klein_4b", "--resolution", "256", "--rank", "1"])
    flops = bench.count_flops(args)
    model = bench.meta_transformer("flux2_klein_4b")
    tokens = (256 // 16) ** 2 + 512
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    assert 2.5 * tokens * linear < flops < 5 * tokens * linear


def test_bad_arguments_are_errors():
    with pytest.raises(SystemExit):
        bench.parse_args(["--arch", "flux2", "--offload", "most"])
    with pytest.raises(SystemExit):
        bench.parse_args(["--arch", "flux2", "--resolution", "1000"])
