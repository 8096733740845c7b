"""optimum-quanto layers inside a bf16-autocast training step."""

from __future__ import annotations

import pytest
import torch

from toolkit.models.quantize import quantize_blocks

pytestmark = pytest.mark.slow  # end-to-end: builds / loads tiny models or runs jobs (see pyproject.toml)


@pytest.mark.parametrize("qtype", ["qint4", "qint8", "qfloat8"])
def test_quantized_block_takes_fp32_inputs_under_bf16_autocast(qtype):
    """A layer norm gives fp32 under bf16 autocast; quanto's bf16 qint4 kernel (TinyGemm) accepts only
    bf16 inputs, so without the input cast the first training step of a qint4 model fails."""
    torch.manual_seed(0)
    block = torch.nn.Sequential(torch.nn.Linear(256, 256), torch.nn.GELU(), torch.nn.Linear(256, 256))
    block = block.to(torch.bfloat16)
    reference = [layer.weight.float().clone() for layer in (block[0], block[2])]
    quantize_blocks([block], qtype)
    if qtype == "qint4":
        assert type(block[0].weight).__name__ == "TinyGemmWeightQBitsTensor"  # the kernel that needs bf16
    x = torch.randn(8, 256, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = block(torch.nn.functional.layer_norm(x, (256,)))
    y.float().square().mean().backward()
    assert y.dtype == torch.bfloat16 and torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    plain = torch.nn.functional.gelu(torch.nn.functional.layer_norm(x, (256,)) @ reference[0].T) @ reference[1].T
    assert torch.nn.functional.cosine_similarity(y.float().flatten(), plain.flatten(), dim=0) > 0.95
