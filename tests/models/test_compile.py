"""Regional torch.compile of the transformer blocks (`model.compile`): a compiled step equals the eager one.

Most tests compile with the `aot_eager` backend: dynamo captures the graphs and AOTAutograd builds forward
and backward exactly as with inductor, without generating C++ (minutes on a busy CPU). That is where
hooks, checkpointing, streaming and LoRA could break; one test runs inductor itself on the single blocks.
"""

from __future__ import annotations

import pytest
import torch

from tests.models.test_offload import BLOCKS, gradients, lora_model, transformer_inputs
from toolkit.models.compile import CompileOptions, compile_blocks
from toolkit.models.quantize import transformer_blocks

pytestmark = pytest.mark.slow  # end-to-end: builds / loads tiny models or runs jobs (see pyproject.toml)

EAGER_BACKEND = CompileOptions(backend="aot_eager")


@pytest.fixture(scope="module")
def pipelines(tiny):
    """arch -> the pipeline holding the tiny transformer: FLUX.2-dev and klein 4B."""
    import diffusers

    from toolkit.bench import _pipeline, bench_archs

    archs = bench_archs()
    return {
        arch: _pipeline(
            arch, getattr(diffusers, archs[arch].transformer_class).from_pretrained(tiny(arch) / "transformer")
        )
        for arch in ("flux2", "flux2_klein_4b")
    }


@pytest.fixture(autouse=True)
def fresh_dynamo():
    torch._dynamo.reset()
    yield
    torch._dynamo.reset()


def assert_same_gradients(expected, actual, atol=1e-5):
    (loss, grads), (loss2, grads2) = expected, actual
    assert grads2.keys() == grads.keys() and grads
    torch.testing.assert_close(torch.tensor(loss2), torch.tensor(loss), rtol=1e-5, atol=1e-6)
    for name, grad in grads.items():
        torch.testing.assert_close(grads2[name], grad, rtol=1e-4, atol=atol, msg=name)


@pytest.mark.parametrize(
    "arch,checkpointing,streamed",
    [
        ("flux2", False, 0),
        ("flux2", True, 2),
        ("flux2_klein_4b", False, 2),
        ("flux2_klein_4b", True, 0),
    ],
)
def test_compiled_step_equals_eager(pipelines, arch, checkpointing, streamed):
    eager = lora_model(pipelines, arch, checkpointing=checkpointing)
    kwargs, _ = transformer_inputs(eager)
    expected = gradients(eager, kwargs)
    model = lora_model(pipelines, arch, checkpointing=checkpointing, streamed=streamed)
    compiled = compile_blocks(transformer_blocks(model.transformer, BLOCKS), EAGER_BACKEND)
    for _ in range(2):  # the second step runs the cached graphs (and streaming re-loads the blocks)
        for p in model.params:
            p.grad = None
        assert_same_gradients(expected, gradients(model, kwargs))
    # One graph per block kind, plus one for the first double block (its input needs no gradient).
    assert compiled.graphs == 3
    from torch._dynamo.utils import counters

    assert not counters["graph_break"]


def test_buckets_compile_a_bounded_number_of_graphs(pipelines, caplog):
    """Three aspect buckets: the first shape compiles static graphs, the second recompiles once with the
    changed sizes symbolic, the third reuses those: 6 graphs, not 9; the compile time is logged once."""
    import logging

    model = lora_model(pipelines, "flux2")
    compiled = compile_blocks(transformer_blocks(model.transformer, BLOCKS), EAGER_BACKEND)
    counts = []
    with caplog.at_level(logging.INFO, logger="toolkit.models.compile"):
        for side in (4, 6, 8):
            kwargs, _ = transformer_inputs(model, side=side)
            gradients(model, kwargs)
            compiled.report()
            counts.append(compiled.graphs)
    assert counts == [3, 6, 6]
    messages = [r.getMessage() for r in caplog.records]
    assert sum("compiled in" in m for m in messages) == 1
    assert sum("recompiled for a new input shape (6 graph(s)" in m for m in messages) == 1
    compiled.undo()
    assert all("forward" not in vars(b) for b in transformer_blocks(model.transformer, BLOCKS))


def test_quantized_blocks_compile(pipelines):
    eager = lora_model(pipelines, "flux2_klein_4b", qtype="qint8")
    kwargs, _ = transformer_inputs(eager)
    expected = gradients(eager, kwargs)
    model = lora_model(pipelines, "flux2_klein_4b", qtype="qint8", checkpointing=True, streamed=1)
    compile_blocks(transformer_blocks(model.transformer, BLOCKS), EAGER_BACKEND)
    assert_same_gradients(expected, gradients(model, kwargs))


def test_inductor_compiles_the_single_blocks(pipelines):
    """Generated code (inductor, C++ on the CPU), on the single blocks only to keep the test short."""
    eager = lora_model(pipelines, "flux2_klein_4b", checkpointing=True)
    kwargs, _ = transformer_inputs(eager)
    expected = gradients(eager, kwargs)
    model = lora_model(pipelines, "flux2_klein_4b", checkpointing=True)
    compiled = compile_blocks(list(model.transformer.single_transformer_blocks), CompileOptions())
    assert_same_gradients(expected, gradients(model, kwargs), atol=1e-4)
    assert compiled.graphs == 1
