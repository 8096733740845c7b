"""Optimizers and LR schedules from their YAML names, on CPU."""

from __future__ import annotations

import logging
import math

import pytest
import torch

from toolkit.errors import ConfigError, ToolkitError
from toolkit.optim import OptimizerUnavailableError, build_optimizer, build_scheduler


def params():
    generator = torch.Generator().manual_seed(0)
    return [torch.nn.Parameter(torch.randn(8, 4, generator=generator)), torch.nn.Parameter(torch.zeros(8))]


def one_step(optimizer, parameters):
    loss = sum((p**2).sum() + p.sum() for p in parameters)
    loss.backward()
    before = [p.detach().clone() for p in parameters]
    optimizer.step()
    optimizer.zero_grad()
    return any(not torch.equal(b, p) for b, p in zip(before, parameters))


def test_adamw_has_ai_toolkit_defaults_and_takes_overrides():
    ps = params()
    optimizer = build_optimizer("AdamW", ps, 1e-3, {"weight_decay": 0.1, "betas": [0.9, 0.99]})
    assert isinstance(optimizer, torch.optim.AdamW)
    group = optimizer.param_groups[0]
    assert (group["lr"], group["eps"], group["weight_decay"], tuple(group["betas"])) == (1e-3, 1e-6, 0.1, (0.9, 0.99))
    assert one_step(optimizer, ps)
    assert build_optimizer("adamw", params(), 1e-4, {"eps": 1e-8}).param_groups[0]["eps"] == 1e-8


def test_unknown_optimizer_param_names_its_key():
    with pytest.raises(ConfigError) as info:
        build_optimizer("adamw", params(), 1e-4, {"weight_decy": 0.1, "lr": 1.0})
    message = str(info.value)
    assert "train.optimizer_params.weight_decy" in message and "did you mean 'weight_decay'" in message
    assert "train.optimizer_params.lr" in message and "train.lr" in message


def test_rejected_optimizer_param_value_is_a_config_error():
    with pytest.raises(ConfigError, match="train.optimizer_params"):
        build_optimizer("adamw", params(), 1e-4, {"betas": [2.0, 0.9]})


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU message")
def test_adamw8bit_on_cpu_says_what_to_use():
    message = "adamw8bit needs bitsandbytes with CUDA; use optimizer: adamw on CPU"
    with pytest.raises(OptimizerUnavailableError, match=message):
        build_optimizer("adamw8bit", params(), 1e-4)
    assert issubclass(OptimizerUnavailableError, ToolkitError)


def test_prodigy_uses_lr_as_a_multiplier(caplog):
    from prodigyopt import Prodigy

    ps = params()
    with caplog.at_level(logging.WARNING, logger="toolkit.optim"):
        optimizer = build_optimizer("prodigy", ps, 1e-4, {"weight_decay": 0.01})
    assert isinstance(optimizer, Prodigy) and optimizer.param_groups[0]["lr"] == 1.0
    assert "using 1.0" in caplog.text
    assert optimizer.param_groups[0]["weight_decay"] == 0.01
    assert one_step(optimizer, ps)
    assert build_optimizer("prodigy", params(), 0.5).param_groups[0]["lr"] == 0.5


def test_adafactor_uses_the_given_lr():
    from transformers.optimization import Adafactor

    ps = params()
    optimizer = build_optimizer("adafactor", ps, 1e-3)
    group = optimizer.param_groups[0]
    assert isinstance(optimizer, Adafactor)
    flags = (group["relative_step"], group["scale_parameter"], group["warmup_init"])
    assert group["lr"] == 1e-3 and flags == (False, False, False)
    assert one_step(optimizer, ps)
    relative = build_optimizer("adafactor", params(), 1e-3, {"relative_step": True})
    assert relative.param_groups[0]["lr"] is None and relative.param_groups[0]["relative_step"]


def test_unknown_optimizer():
    with pytest.raises(ConfigError, match="train.optimizer: unknown optimizer 'sgd'"):
        build_optimizer("sgd", params(), 1e-4)


def lrs(name, total=10, warmup=0, lr=1.0, scheduler_params=None):
    optimizer = torch.optim.SGD(params(), lr=lr)
    scheduler = build_scheduler(name, optimizer, total, warmup, scheduler_params)
    values = []
    for _ in range(total):
        values.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return values


def test_schedules():
    assert lrs("constant") == [1.0] * 10
    assert lrs("constant", warmup=4) == pytest.approx([0, 0.25, 0.5, 0.75] + [1.0] * 6)
    # ai-toolkit's linear is torch's LinearLR over the run: lr/3 up to lr unless lr_scheduler_params say otherwise
    assert lrs("linear") == pytest.approx([1 / 3 + (2 / 3) * i / 10 for i in range(10)])
    assert lrs("linear", scheduler_params={"start_factor": 1.0, "end_factor": 0.0}) == pytest.approx(
        [1 - i / 10 for i in range(10)]
    )
    assert lrs("cosine", scheduler_params={"eta_min": 0.5}) == pytest.approx(
        [0.5 + 0.25 * (1 + math.cos(math.pi * i / 10)) for i in range(10)]
    )
    assert lrs("constant", scheduler_params={"total_iters": 5}) == [1.0] * 10
    cosine = lrs("cosine", total=100, warmup=10)
    assert cosine[:11] == pytest.approx([i / 10 for i in range(11)])
    assert cosine[55] == pytest.approx(0.5) and cosine[-1] < 0.001
    assert all(a >= b for a, b in zip(cosine[10:], cosine[11:]))


def test_schedule_errors():
    optimizer = torch.optim.SGD(params(), lr=1.0)
    with pytest.raises(ConfigError, match="train.lr_warmup_steps"):
        build_scheduler("cosine", optimizer, 10, 20)
    with pytest.raises(ConfigError, match="train.lr_scheduler"):
        build_scheduler("exponential", optimizer, 10, 0)
    with pytest.raises(ConfigError, match="train.lr_scheduler_params.eta_mn: .*did you mean 'eta_min'"):
        build_scheduler("cosine", optimizer, 10, 0, {"eta_mn": 0.1})
    with pytest.raises(ConfigError, match="train.lr_warmup_steps"):
        build_scheduler("linear", optimizer, 10, 2)


def test_adamw_is_fused_when_every_parameter_is_on_a_fusable_device(monkeypatch):
    from toolkit import optim

    params = [torch.nn.Parameter(torch.randn(4, 4)), torch.nn.Parameter(torch.randn(4))]
    assert not build_optimizer("adamw", params, 1e-3).defaults.get("fused")  # CPU: not fused
    # torch also has a fused CPU kernel: pretend the CPU is the CUDA device to see the choice being made
    monkeypatch.setattr(optim, "_FUSED_DEVICE_TYPES", ("cpu",))
    assert build_optimizer("adamw", params, 1e-3).defaults["fused"] is True
    assert build_optimizer("adamw", [{"params": params}], 1e-3).defaults["fused"] is True
    assert not build_optimizer("adamw", params, 1e-3, {"foreach": True}).defaults.get("fused")  # the user's choice
    assert not optim._can_fuse([torch.nn.Parameter(torch.randn(2), requires_grad=False).long()])
