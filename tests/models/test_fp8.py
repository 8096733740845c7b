"""fp8 compute (`model.fp8_compute`): refused before loading where fp8 matmuls cannot run; on the tiny model
(torchao's float8 path runs on the CPU through PyTorch's reference `_scaled_mm`) the loss curve follows bf16."""

from __future__ import annotations

import copy
import logging

import pytest
import torch

import run
from tests.jobs.train_helpers import train_process, write_job
from toolkit.config_modules import ModelConfig
from toolkit.models import fp8
from toolkit.models.fp8 import Fp8Error, fp8_device_problem


def test_fp8_with_quantized_weights_is_a_config_error():
    from pydantic import ValidationError

    with pytest.raises(ValidationError) as info:
        ModelConfig(name_or_path="x", arch="flux2", fp8_compute=True, quantize=True)
    assert "fp8_compute" in str(info.value) and "quantize: false" in str(info.value)


def test_devices_without_fp8_matmuls_are_refused(monkeypatch):
    assert "device is cpu" in fp8_device_problem(torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: "NVIDIA A100-SXM4-80GB")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (8, 0))
    problem = fp8_device_problem(torch.device("cuda", 0))
    assert problem.startswith(
        "model.fp8_compute: NVIDIA A100-SXM4-80GB has compute capability 8.0; fp8 matmuls need 8.9+"
    )
    for capability in ((8, 9), (9, 0), (10, 0)):
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None, c=capability: c)
        assert fp8_device_problem(torch.device("cuda", 0)) is None


def test_the_trainer_refuses_fp8_on_cpu_before_loading(tmp_path, caplog):
    process = train_process(tmp_path, steps=2, model={"fp8_compute": True})
    with caplog.at_level(logging.INFO):
        assert run.main([str(write_job(tmp_path, process))]) == 1
    assert "model.fp8_compute: fp8 matmuls need an NVIDIA GPU of compute capability 8.9+" in caplog.text
    assert "loaded flux2" not in caplog.text and "Caching" not in caplog.text


def test_a_missing_torchao_is_named(monkeypatch):
    import builtins

    real_import = builtins.__import__

    def no_torchao(name, *args, **kwargs):
        if name.startswith("torchao"):
            raise ImportError("No module named 'torchao'")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_torchao)
    monkeypatch.setattr(fp8, "fp8_device_problem", lambda device: None)  # pretend an H100
    with pytest.raises(Fp8Error, match=r"model.fp8_compute: needs torchao \(pip install torchao\)"):
        fp8.check_fp8_device(torch.device("cuda", 0))


def test_fp8_loss_curve_follows_bf16(tiny):
    """30 AdamW steps of a LoRA on the tiny FLUX.2-dev, bf16 autocast vs fp8 base matmuls: the same curve
    within 1% (measured: 1.3e-4 max relative difference), but not bit-identical (fp8 really ran)."""
    pytest.importorskip("torchao.float8")
    import diffusers

    from tests.models.test_offload import BLOCKS, lora_model, transformer_inputs
    from toolkit.bench import _pipeline
    from toolkit.models.quantize import transformer_blocks

    base = _pipeline("flux2", diffusers.Flux2Transformer2DModel.from_pretrained(tiny("flux2") / "transformer"))

    def curve(use_fp8):
        pipeline = copy.deepcopy(base)
        if use_fp8:
            assert fp8.convert_to_fp8(transformer_blocks(pipeline.transformer, BLOCKS)) > 0
        model = lora_model({"flux2": pipeline}, "flux2")
        if use_fp8:
            assert all(p.dtype == torch.float32 for p in model.params)  # LoRA stays in its own dtype
        kwargs, _ = transformer_inputs(model, batch=2, side=8, text_tokens=16)
        target = torch.randn(kwargs["hidden_states"].shape, generator=torch.Generator().manual_seed(0))
        optimizer = torch.optim.AdamW(model.params, lr=3e-3)
        losses = []
        for _ in range(30):
            with torch.autocast("cpu", dtype=torch.bfloat16):
                out = model.transformer(**kwargs)[0]
            loss = torch.nn.functional.mse_loss(out.float(), target)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            losses.append(loss.item())
        return losses

    bf16, with_fp8 = curve(False), curve(True)
    assert bf16 != with_fp8
    assert bf16[-1] < bf16[0] and with_fp8[-1] < with_fp8[0]
    assert max(abs(a - b) / a for a, b in zip(bf16, with_fp8)) < 0.01
