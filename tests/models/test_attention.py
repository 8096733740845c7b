"""The attention backend: chosen per device through diffusers' dispatcher, logged once at load."""

from __future__ import annotations

import logging

import torch

from toolkit.models.attention import choose_backend, set_attention_backend


def test_choice():
    cuda, cpu = torch.device("cuda", 0), torch.device("cpu")
    assert choose_backend(cuda, flash_attn_installed=True)[0] == "flash"
    assert choose_backend(cuda, flash_attn_installed=False)[0] == "native"
    assert choose_backend(cpu, flash_attn_installed=True)[0] == "native"
    assert choose_backend(cuda, True, env="_native_cudnn") == ("_native_cudnn", "set by DIFFUSERS_ATTN_BACKEND")


def test_the_tiny_transformer_gets_the_backend_and_it_is_logged(tiny, caplog, monkeypatch):
    from diffusers import Flux2Transformer2DModel

    monkeypatch.delenv("DIFFUSERS_ATTN_BACKEND", raising=False)
    transformer = Flux2Transformer2DModel.from_pretrained(tiny("flux2") / "transformer")
    with caplog.at_level(logging.INFO, logger="toolkit.models.attention"):
        assert set_attention_backend(transformer, torch.device("cpu")) == "native"
    processors = [m.processor for m in transformer.modules() if hasattr(m, "processor")]
    assert processors and all(p._attention_backend == "native" for p in processors)
    assert [r.getMessage() for r in caplog.records] == ["attention: diffusers backend 'native' (torch SDPA on cpu)"]
