"""Weight quantization with optimum-quanto (`model.quantize` / `qtype`, `quantize_te` / `qtype_te`).

The transformer is quantized block by block (its double and single blocks, where
nearly all parameters live; embedders, modulation and the final layer keep their
dtype), on the CPU before it moves to the device, so the device never holds the
full-precision model. PEFT's LoRA layers wrap quanto's QLinear like any Linear, so
LoRA trains on top and saves in the same format as without quantization.
"""

from __future__ import annotations

import logging

import torch

log = logging.getLogger(__name__)

QTYPES = ("qfloat8", "qint8", "qint4", "qint2")


def _qtype(name: str):
    from optimum import quanto

    return {"qfloat8": quanto.qfloat8, "qint8": quanto.qint8, "qint4": quanto.qint4, "qint2": quanto.qint2}[name]


def quantize_blocks(blocks: list[torch.nn.Module], qtype: str) -> None:
    """Quantize and freeze each block in turn (peak extra memory: one block)."""
    from optimum.quanto import QModuleMixin, freeze, quantize

    weights = _qtype(qtype)
    for block in blocks:
        quantize(block, weights=weights)
        freeze(block)
        for module in block.modules():
            if isinstance(module, QModuleMixin):
                module.register_forward_pre_hook(_inputs_in_weight_dtype)


def _inputs_in_weight_dtype(module: torch.nn.Module, args: tuple):
    """Cast a quantized layer's input to its weight's dtype, as autocast does for a plain Linear.

    quanto's int4 kernel (TinyGemm: `torch._weight_int4pack_mm`, chosen for bf16 qint4 weights on CUDA and
    the CPU) accepts only inputs of the weight's dtype, and autocast does not cast for quanto's custom
    autograd function: under bf16 autocast a layer norm's fp32 output would reach it and fail.
    """
    x = args[0] if args else None
    dtype = getattr(module.weight, "dtype", None)
    if isinstance(x, torch.Tensor) and x.is_floating_point() and dtype is not None and x.dtype != dtype:
        return (x.to(dtype), *args[1:])
    return None


def transformer_blocks(transformer: torch.nn.Module, attrs: tuple[str, ...]) -> list[torch.nn.Module]:
    """The transformer's blocks in execution order (layer offloading relies on it): the lists named by
    `attrs` (the architecture's `ArchSpec.transformer_blocks`), one after the other."""
    return [block for attr in attrs for block in getattr(transformer, attr, [])]


def text_encoder_layers(text_encoder: torch.nn.Module, paths: tuple[str, ...]) -> list[torch.nn.Module]:
    """The repeated layers of a text encoder (the bulk of its weights), in execution order: the first of
    `paths` (the architecture's `ArchSpec.text_encoder_layers`) that exists."""
    for path in paths:
        module = text_encoder
        for part in path.split("."):
            module = getattr(module, part, None)
            if module is None:
                break
        if module is not None:
            return list(module)
    raise ValueError(
        f"{type(text_encoder).__name__} has none of the layer lists {', '.join(paths)}; fix the "
        "architecture's ArchSpec.text_encoder_layers"
    )


def quantize_transformer(transformer: torch.nn.Module, qtype: str, attrs: tuple[str, ...]) -> None:
    blocks = transformer_blocks(transformer, attrs)
    quantize_blocks(blocks, qtype)
    log.info("quantized %d transformer blocks to %s", len(blocks), qtype)


def quantize_text_encoder(text_encoder: torch.nn.Module, qtype: str, paths: tuple[str, ...]) -> None:
    """Quantize the decoder layers (the bulk of an LLM text encoder) block by block."""
    layers = text_encoder_layers(text_encoder, paths)
    quantize_blocks(layers, qtype)
    log.info("quantized %d %s layers to %s", len(layers), type(text_encoder).__name__, qtype)


QINT4_GROUP_SIZE = 128  # quanto's group size for 4-bit weights (a scale and a shift per group of 128 inputs)


def quantized_nbytes(module: torch.nn.Module, qtype: str | None) -> int:
    """Bytes `module` takes once `quantize_blocks` quantized its Linear weights to `qtype` (None: as it is).

    Works on meta modules (no data needed), so a plan can be sized before any weight exists:
    8-bit weights take one byte per element plus a per-row scale; qint4 half a byte per element plus a
    scale and a shift per group of 128 inputs, both in the weights' dtype (qint2: a quarter byte, same
    groups). PEFT's `lora_*` are left out.
    """
    linear_weights = {id(m.weight) for m in module.modules() if isinstance(m, torch.nn.Linear)}
    total = 0
    for name, tensor in [*module.named_parameters(), *module.named_buffers()]:
        if "lora_" in name:
            continue
        if qtype is None or id(tensor) not in linear_weights:
            total += tensor.numel() * tensor.element_size()
            continue
        rows, cols = tensor.shape
        if qtype in ("qint4", "qint2"):
            bits = 4 if qtype == "qint4" else 2
            total += rows * cols * bits // 8 + rows * -(-cols // QINT4_GROUP_SIZE) * 2 * tensor.element_size()
        else:
            total += rows * cols + rows * tensor.element_size()
    return total
