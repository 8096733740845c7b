"""Regional compilation of the transformer's blocks (`model.compile: true`).

Each block's `forward` is replaced by `torch.compile(block.forward)`. The blocks of one class share one
code object, and PyTorch (>= 2.5, `inline_inbuilt_nn_modules`) passes a block's parameters to the
compiled graph as inputs instead of baking them in as constants, so the first block of each kind
compiles and every other block of that kind reuses its graph: FLUX.2 compiles two graphs (its double
and its single block), whatever its depth. This is the regional compilation of diffusers'
`ModelMixin.compile_repeated_blocks`, with one difference that matters here: that function calls
`nn.Module.compile()`, which compiles the module's whole `__call__`, hooks included. Our layer
offloading (toolkit/models/offload.py) and FSDP work through block hooks that resize storages,
copy on side streams and register autograd hooks; traced by dynamo they would break the graph or be
frozen into it. Compiling `forward` alone leaves every hook eager, around a compiled body:

* PEFT LoRA: the LoRA layers live inside the block; dynamo traces them like any module.
* Gradient checkpointing: diffusers' checkpoint calls `block.__call__` (hooks, then the compiled forward)
  in the forward pass and again to recompute it in backward; both run the same graph.
* Layer offloading: the streaming hooks load a block's weights before its compiled forward reads them.
* Quantized blocks (optimum-quanto): its weight tensors are traceable subclasses; a layer's input-dtype
  pre-hook runs inside the block and is traced with it.
* EMA only touches the LoRA parameters between steps.

Shapes: `compile_dynamic: null` (the default) is PyTorch's automatic dynamic shapes: the first shape
compiles a static graph, and the first change of shape (another aspect bucket, another number of
reference tokens, a short last batch) recompiles once with the sizes that changed made symbolic, which
then serves every later shape. So a run with N >= 2 buckets compiles at most 2 graphs per block kind
(forward and backward each): 4 for FLUX.2 in total, not 2N; `compile_dynamic: true` makes the sizes
symbolic from the start (one graph per kind), `false` compiles a graph for every distinct shape (up to
`cache_size_limit`). The compile time is logged once, after the first compiled step, and every later
recompilation is logged with the number of graphs so far.

Compile modes that capture CUDA graphs (`reduce-overhead`, `max-autotune`) are refused by the config:
a CUDA graph replays fixed memory addresses, which layer offloading re-allocates at every step.
"""

from __future__ import annotations

import dataclasses
import logging
import time

import torch

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class CompileOptions:
    """What `torch.compile` gets (see `ModelConfig.compile_*`); `backend` is for tests (`aot_eager`)."""

    mode: str = "default"
    dynamic: bool | None = None
    fullgraph: bool = False
    cache_size_limit: int | None = None
    backend: str = "inductor"

    @classmethod
    def from_model_config(cls, model_config) -> "CompileOptions":
        return cls(
            mode=model_config.compile_mode,
            dynamic=model_config.compile_dynamic,
            fullgraph=model_config.compile_fullgraph,
            cache_size_limit=model_config.cache_size_limit,
        )


def _graph_count() -> int:
    from torch._dynamo.utils import counters

    return counters["stats"]["unique_graphs"]


def _compile_seconds() -> float:
    """Seconds PyTorch spent compiling so far (dynamo + AOTAutograd + inductor, forward and backward)."""
    from torch._dynamo.utils import compilation_time_metrics

    return sum(
        sum(compilation_time_metrics.get(key, ())) for key in ("_compile.compile_inner", "backward._backward_impl")
    )


class CompiledBlocks:
    """The blocks whose `forward` was compiled; `report()` logs compilations as they happen."""

    def __init__(self, blocks: list[torch.nn.Module], options: CompileOptions):
        self.blocks = list(blocks)
        self.options = options
        self.kinds = sorted({type(b).__name__ for b in self.blocks})
        self._graphs_at_start = _graph_count()
        self._seconds_at_start = _compile_seconds()
        self._graphs_logged = 0
        self._started = time.perf_counter()

    @property
    def graphs(self) -> int:
        """Graphs dynamo captured since the blocks were compiled (forward graphs: one per kind and shape)."""
        return _graph_count() - self._graphs_at_start

    @property
    def compile_seconds(self) -> float:
        return _compile_seconds() - self._seconds_at_start

    def report(self) -> None:
        """Log new compilations: the first time with the compile time, later as recompilations. Cheap
        (two counters), so the trainer calls it after every step."""
        graphs = self.graphs
        if graphs == self._graphs_logged:
            return
        if self._graphs_logged == 0:
            log.info(
                "torch.compile: %d graph(s) for %d block(s) of %d kind(s) (%s) compiled in %.1f s",
                graphs,
                len(self.blocks),
                len(self.kinds),
                ", ".join(self.kinds),
                self.compile_seconds,
            )
        else:
            log.info(
                "torch.compile: recompiled for a new input shape (%d graph(s) so far, %.1f s compiling in all)",
                graphs,
                self.compile_seconds,
            )
        self._graphs_logged = graphs

    def undo(self) -> None:
        """Back to the eager forward of every block."""
        for block in self.blocks:
            vars(block).pop("forward", None)


def compile_blocks(blocks: list[torch.nn.Module], options: CompileOptions) -> CompiledBlocks:
    """Compile each block's forward in place (lazily: the graphs are built at the first call)."""
    if options.cache_size_limit is not None:
        torch._dynamo.config.cache_size_limit = options.cache_size_limit
    else:
        # Every block of a kind shares one code object, hence one cache: leave room for a graph per
        # kind and shape change (and per dtype/`training` flag: sampling runs the blocks in eval mode).
        kinds = len({type(b) for b in blocks})
        torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 8 * kinds)
    kwargs = {"dynamic": options.dynamic, "fullgraph": options.fullgraph, "backend": options.backend}
    if options.mode != "default":
        kwargs["mode"] = options.mode
    for block in blocks:
        if "forward" in vars(block):
            raise RuntimeError(f"{type(block).__name__} already has an instance forward (compiled twice?)")
        block.forward = torch.compile(block.forward, **kwargs)
    compiled = CompiledBlocks(blocks, options)
    log.info(
        "torch.compile (regional): %d transformer block(s) of %d kind(s) (%s), mode %s, dynamic %s; the "
        "first step compiles them (minutes on a fresh machine)",
        len(blocks),
        len(compiled.kinds),
        ", ".join(compiled.kinds),
        options.mode,
        options.dynamic,
    )
    return compiled
