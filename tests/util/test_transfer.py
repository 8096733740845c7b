"""Host -> GPU copies: pinned and non-blocking towards CUDA, plain elsewhere (no CUDA needed to check)."""

from __future__ import annotations

from unittest import mock

import torch

from toolkit.util.transfer import pins_memory, to_device


def test_to_a_cuda_device_pins_then_copies_without_blocking():
    pinned = mock.MagicMock(name="pinned")
    tensor = mock.MagicMock(name="tensor")
    tensor.device = torch.device("cpu")
    tensor.is_pinned.return_value = False
    tensor.pin_memory.return_value = pinned
    to_device(tensor, "cuda:0", torch.bfloat16)
    tensor.pin_memory.assert_called_once_with()
    pinned.to.assert_called_once_with(device=torch.device("cuda:0"), dtype=torch.bfloat16, non_blocking=True)


def test_already_pinned_tensors_are_not_copied_again():
    tensor = mock.MagicMock(name="tensor")
    tensor.device = torch.device("cpu")
    tensor.is_pinned.return_value = True
    to_device(tensor, "cuda")
    tensor.pin_memory.assert_not_called()
    tensor.to.assert_called_once_with(device=torch.device("cuda"), dtype=None, non_blocking=True)


def test_cpu_targets_are_a_plain_to():
    tensor = torch.ones(3)
    assert to_device(tensor, "cpu") is tensor
    assert to_device(tensor, "cpu", torch.float64).dtype == torch.float64
    assert pins_memory("cuda:1") and not pins_memory("cpu")
