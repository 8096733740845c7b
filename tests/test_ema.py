"""EMA of LoRA parameters: averaging, the sampling swap, and resume through state_dict."""

from __future__ import annotations

import pytest
import torch

from toolkit.ema import build_ema, ema_weights


def lora_params():
    return [torch.nn.Parameter(torch.ones(4, 2)), torch.nn.Parameter(torch.zeros(3, 4))]


def test_ema_averages_with_the_ramped_decay():
    ps = lora_params()
    ema = build_ema(ps, decay=0.5)
    values = []
    for step in range(1, 6):
        with torch.no_grad():
            ps[0].fill_(float(step))
        ema.step(ps)
        values.append(ema.shadow_params[0][0, 0].item())
    # decay per update n: 0, then min(0.5, (1 + k) / (10 + k)) with k = n - 1
    expected, shadow = [], 1.0
    for n, value in enumerate(range(1, 6), start=1):
        k = n - 1
        decay = 0.0 if k <= 0 else min(0.5, (1 + k) / (10 + k))
        shadow = decay * shadow + (1 - decay) * value
        expected.append(shadow)
    assert values == pytest.approx(expected)


def test_frozen_parameters_are_copied_not_averaged():
    ps = lora_params()
    ps[1].requires_grad_(False)
    ema = build_ema(ps, decay=0.9)
    for _ in range(20):
        with torch.no_grad():
            ps[1].add_(1.0)
        ema.step(ps)
    assert torch.equal(ema.shadow_params[1], ps[1].detach())


def test_ema_weights_swaps_in_and_always_restores():
    ps = lora_params()
    ema = build_ema(ps, decay=0.99)
    with torch.no_grad():
        ps[0].fill_(5.0)
    trained = [p.detach().clone() for p in ps]
    with ema_weights(ema, ps):
        assert torch.equal(ps[0], torch.ones(4, 2))  # never stepped: the start values
    assert all(torch.equal(p, t) for p, t in zip(ps, trained))
    with pytest.raises(RuntimeError, match="boom"), ema_weights(ema, ps):
        raise RuntimeError("boom")
    assert all(torch.equal(p, t) for p, t in zip(ps, trained))


def test_state_dict_round_trip_resumes_identically(tmp_path):
    ps = lora_params()
    ema = build_ema(ps, decay=0.9)
    for _ in range(7):
        with torch.no_grad():
            ps[0].add_(0.5)
        ema.step(ps)
    path = tmp_path / "ema.pt"
    torch.save(ema.state_dict(), path)

    resumed = build_ema(lora_params(), decay=0.9)
    resumed.load_state_dict(torch.load(path, weights_only=True))
    assert resumed.optimization_step == 7
    for _ in range(3):
        with torch.no_grad():
            ps[0].add_(0.5)
        ema.step(ps)
        resumed.step(ps)
    assert all(torch.equal(a, b) for a, b in zip(ema.shadow_params, resumed.shadow_params))


def test_decay_must_be_a_fraction():
    with pytest.raises(ValueError, match="EMA decay"):
        build_ema(lora_params(), decay=1.0)
