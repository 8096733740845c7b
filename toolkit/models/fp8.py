"""fp8 compute (`model.fp8_compute: true`): the transformer blocks' frozen linear layers run fp8 matmuls.

torchao's float8 training path (`torchao.float8.convert_to_float8_training`) swaps each selected
`nn.Linear` for a `Float8Linear` that keeps its bf16 weight and, at every call, casts the input and the
weight to float8 e4m3 with a dynamic per-tensor scale (amax of the tensor), multiplies them with
`torch._scaled_mm` (fp8 tensor cores) and, in backward, casts the output gradient to e5m2 for the
input-gradient matmul. The weights' storage is unchanged (bf16, as `quantize: false` loads them): fp8
is the compute dtype here, `qtype` stays the storage format, and the two are not combined (the config
refuses `fp8_compute` with `quantize: true`).

PEFT's LoRA wraps a `Float8Linear` like any `nn.Linear` (it subclasses it): the base path runs in fp8,
the LoRA's A and B stay in their own dtype (fp32 parameters under bf16 autocast) and train as usual.
Only the blocks' linears whose sides are multiples of 16 (what `_scaled_mm` takes) are converted;
embedders, modulation and the final layer keep bf16.

fp8 matmuls need NVIDIA compute capability 8.9 or newer (Ada: RTX 4090, L4, L40S; Hopper: H100, H200;
Blackwell). Anywhere else the option is refused by `check_fp8_device` before any weight loads. (torchao's
code also runs on the CPU, through PyTorch's reference `_scaled_mm`; the tests use that to compare loss
curves with bf16, which is why `convert_to_fp8` itself does not check the device.)
"""

from __future__ import annotations

import logging

import torch

from toolkit.errors import ToolkitError

log = logging.getLogger(__name__)

MIN_CAPABILITY = (8, 9)
KEY = "model.fp8_compute"
INSTALL = "pip install torchao"


class Fp8Error(ToolkitError):
    pass


def fp8_device_problem(device: torch.device) -> str | None:
    """Why `device` cannot run fp8 matmuls (None: it can)."""
    device = torch.device(device)
    if device.type != "cuda":
        return (
            f"{KEY}: fp8 matmuls need an NVIDIA GPU of compute capability 8.9+ (RTX 4090, L40S, H100, H200...), "
            f"and this run's device is {device}; remove fp8_compute (bf16 compute) or train on such a GPU"
        )
    capability = torch.cuda.get_device_capability(device)
    if capability < MIN_CAPABILITY:
        name = torch.cuda.get_device_name(device)
        return (
            f"{KEY}: {name} has compute capability {capability[0]}.{capability[1]}; fp8 matmuls need 8.9+ "
            "(Ada, Hopper, Blackwell). Remove fp8_compute: bf16 compute is what this GPU does best"
        )
    return None


def check_fp8_device(device: torch.device) -> None:
    """Raise Fp8Error (with the fix) unless `device` runs fp8 matmuls and torchao is installed."""
    problem = fp8_device_problem(device)
    if problem is None:
        try:
            import torchao.float8  # noqa: F401
        except ImportError:
            problem = f"{KEY}: needs torchao ({INSTALL}), which is not installed"
    if problem:
        raise Fp8Error(problem)


def _convertible(module: torch.nn.Module) -> bool:
    return type(module) is torch.nn.Linear and module.in_features % 16 == 0 and module.out_features % 16 == 0


def convert_to_fp8(blocks: list[torch.nn.Module]) -> int:
    """Swap the plain linear layers of `blocks` for torchao's Float8Linear (dynamic scaling); returns how many.

    Call before LoRA is attached (PEFT then wraps the Float8Linear) and before quantization would apply
    (the two are exclusive)."""
    try:
        from torchao.float8 import Float8LinearConfig, convert_to_float8_training
    except ImportError as exc:
        raise Fp8Error(f"{KEY}: needs torchao ({INSTALL}): {exc}") from exc

    config = Float8LinearConfig()
    count = 0
    for block in blocks:
        before = sum(1 for m in block.modules() if _convertible(m))
        convert_to_float8_training(block, config=config, module_filter_fn=lambda m, fqn: _convertible(m))
        count += before
    log.info(
        "fp8 compute: %d linear layers of %d blocks run float8 matmuls (dynamic per-tensor scaling, torchao)",
        count,
        len(blocks),
    )
    return count
