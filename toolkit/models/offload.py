"""Layer offloading: stream the frozen weights of some blocks from host memory, forward and backward.

`model.layer_offloading: true` streams the last `layer_offloading_transformer_percent` of the
transformer's blocks (double then single blocks, in execution order; `round(percent * blocks)` of
them, counted from the end) and the last `layer_offloading_text_encoder_percent` of each text
encoder's layers (when the text encoder is on the device, i.e. not `low_vram`).
`layer_offloading: auto` or `vram_budget_gb` lets the planner (toolkit/models/offload_plan.py) choose
those counts from the measured sizes so that the predicted peak fits the budget.

How a streamed block works (`BlockStreamer`). The module stays *logically* on the device: every
parameter reports the device, so diffusers, PEFT and the trainer see nothing unusual. What moves is
the storage behind the block's frozen tensors (plain weights, and the inner tensors of quanto's
quantized weights): a copy lives in pinned host memory, and on the device the storage is resized to
zero bytes between uses. Before a block runs, its storages are re-allocated and filled from the host
copy on a side CUDA stream; the compute stream waits on that copy only when the block starts, and the
next block's copy is issued at the same moment, so transfer overlaps compute. After the block the
storage is freed again. Because autograd saved the *same* tensor objects (for a frozen weight it keeps
the parameter itself, not a copy), backward needs no special casing: a hook on the block's outputs
re-loads the block (and prefetches the one before it) just before its backward runs, and a hook on
its inputs frees it once their gradients exist. With gradient checkpointing the re-computation of the
block happens inside that window. Trainable parameters (PEFT's `lora_*`) are never streamed: they,
their gradients and the optimizer state stay on the device.

Why not diffusers' `apply_group_offloading(use_stream=True)`, which streams blocks from pinned memory
the same way at inference: it is forward-only. Its hooks onload in `pre_forward` and offload in
`post_forward` by reassigning `param.data`, with no backward hooks and no backward-order prefetch, so
by the time backward runs the weights autograd saved (the parameters themselves) point at host memory
again (with gradient checkpointing the re-computation reloads them, and its own `post_forward`
offloads them before the block's backward). And its streamed offload (`_offload_to_memory`) resets
every parameter of the group to the pinned copy taken when the hooks were applied, so a LoRA inside
an offloaded block would lose its updates at every step (PEFT layers added afterwards have no pinned
copy at all). Training needs the three things above, so this module implements them directly on top
of plain PyTorch hooks.

On a CPU "device" the same code runs with synchronous copies and no pinning, and a released block is
overwritten with 0xFF bytes (NaN in every float format) instead of being freed, so a missing re-load
shows up as a wrong result in tests rather than as a crash.
"""

from __future__ import annotations

import logging
import weakref
from typing import Iterable

import torch

from toolkit.errors import ToolkitError

log = logging.getLogger(__name__)


class OffloadError(ToolkitError):
    pass


# ============================================================================ sizes


def _leaf_tensors(tensor: torch.Tensor) -> list[torch.Tensor]:
    """Plain tensors holding `tensor`'s data: itself, or the inner tensors of a quanto (wrapper) tensor."""
    from torch.utils._python_dispatch import is_traceable_wrapper_subclass

    if not is_traceable_wrapper_subclass(tensor):
        return [tensor]
    leaves = []
    for name in tensor.__tensor_flatten__()[0]:
        inner = getattr(tensor, name)
        if inner is not None:
            leaves += _leaf_tensors(inner)
    return leaves


def frozen_tensors(module: torch.nn.Module) -> list[tuple[str, torch.Tensor]]:
    """Parameters and buffers of `module` that streaming may move: everything but PEFT's `lora_*`."""
    named = [*module.named_parameters(), *module.named_buffers()]
    return [(name, t) for name, t in named if t is not None and "lora_" not in name]


def _storages(tensors: Iterable[torch.Tensor]) -> list[torch.UntypedStorage]:
    seen, out = set(), []
    for tensor in tensors:
        for leaf in _leaf_tensors(tensor):
            storage = leaf.untyped_storage()
            key = (storage.device, storage.data_ptr()) if storage.data_ptr() else id(storage)
            if storage.nbytes() and key not in seen:
                seen.add(key)
                out.append(storage)
    return out


def module_nbytes(module: torch.nn.Module) -> int:
    """Bytes of the distinct storages behind `module`'s frozen tensors (quantized sizes when quantized)."""
    return sum(s.nbytes() for s in _storages(t for _, t in frozen_tensors(module)))


# ============================================================================ streaming


class _BlockWeights:
    """The storages of one block's frozen tensors, their host copy, and their state on the device."""

    def __init__(self, block: torch.nn.Module, device: torch.device):
        self.device = device
        self.params = [t for _, t in frozen_tensors(block) if isinstance(t, torch.nn.Parameter)]
        storages = _storages(t for _, t in frozen_tensors(block))
        self.views = [torch.empty(0, dtype=torch.uint8, device=device).set_(s) for s in storages]
        self.sizes = [s.nbytes() for s in storages]
        self.nbytes = sum(self.sizes)
        pin = device.type == "cuda"
        host = torch.empty(self.nbytes, dtype=torch.uint8, pin_memory=pin)
        self.host, offset = [], 0
        for view, size in zip(self.views, self.sizes):
            self.host.append(host[offset : offset + size])
            offset += size
            self.host[-1].copy_(view)
        self.loaded = True
        self.event = None

    def load(self, stream) -> None:
        """Re-allocate the device storages and fill them from the host copy (asynchronously on `stream`)."""
        if self.loaded:
            return
        if self.device.type == "cpu":
            for view, host in zip(self.views, self.host):
                view.copy_(host)
        else:
            # Allocate on the compute stream, then make the copy stream wait for everything queued on it:
            # the allocator may hand out memory that kernels queued before this point still read.
            for view, size in zip(self.views, self.sizes):
                view.untyped_storage().resize_(size)
            stream.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(stream):
                for view, host in zip(self.views, self.host):
                    view.copy_(host, non_blocking=True)
                self.event = stream.record_event()
        self.loaded = True

    def wait(self) -> None:
        """Make the compute stream wait until the copy issued by `load` has landed."""
        if self.event is not None:
            torch.cuda.current_stream(self.device).wait_event(self.event)
            self.event = None

    def release(self) -> None:
        if not self.loaded:
            return
        self.wait()  # a prefetched block released unused: its copy must land before the memory is reused
        if self.device.type == "cpu":
            for view in self.views:
                view.fill_(0xFF)  # NaN in every float format: a missed re-load cannot pass unnoticed
        else:
            # Freed on the compute stream, after the kernels already queued there (the caching allocator
            # only reuses the memory in that stream's order; `load` orders the copy stream after it).
            for view in self.views:
                view.untyped_storage().resize_(0)
        self.loaded = False
        self.event = None


class BlockStreamer:
    """Streams the frozen weights of some of `blocks` (`module`'s blocks, in execution order) to `device`.

    Hooks go on every block so that a resident block can prefetch a streamed neighbour. Blocks are
    handed over with `offload(i)` (each goes to the device alone, is copied to host memory and released),
    so a caller can also materialise and offload them one at a time (the benchmark does).
    """

    def __init__(
        self, module: torch.nn.Module, blocks: list[torch.nn.Module], device: str | torch.device, prefetch: int = 1
    ):
        module.block_streamer = self  # the owner: the hooks below only hold weak references
        self.blocks = list(blocks)
        self.device = torch.device(device)
        self.prefetch = max(1, prefetch)
        self.weights: dict[int, _BlockWeights] = {}
        self.stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        self._callback_queued_for = None
        self._handles = []
        # The hooks reach the streamer through a weak reference: the module owns the streamer (and its
        # streamer the blocks), so dropping the module frees it at once, without waiting for a GC cycle.
        me = weakref.ref(self)
        for i, block in enumerate(self.blocks):

            def pre(module, args, kwargs, i=i):
                streamer = me()
                return None if streamer is None else streamer._pre_forward(i, args, kwargs)

            def post(module, args, kwargs, output, i=i):
                streamer = me()
                return None if streamer is None else streamer._post_forward(i, output)

            self._handles.append(block.register_forward_pre_hook(pre, with_kwargs=True, prepend=True))
            self._handles.append(block.register_forward_hook(post, with_kwargs=True))

    # ----------------------------------------------------------------- setup
    def offload(self, index: int) -> None:
        """Stream block `index` from now on: move it to the device, keep a host copy, free its device storage."""
        block = self.blocks[index]
        for _, tensor in frozen_tensors(block):
            if isinstance(tensor, torch.nn.Parameter):
                tensor.requires_grad_(False)  # streamed weights are frozen by construction
        block.to(self.device)
        weights = _BlockWeights(block, self.device)
        weights.release()
        self.weights[index] = weights

    @property
    def streamed_bytes(self) -> int:
        return sum(w.nbytes for w in self.weights.values())

    def end(self, fn=None) -> None:
        """Stop streaming. Each streamed block in turn is loaded back on the device and, given `fn` (what
        `nn.Module._apply` takes: `.to()`, `.cpu()`...), converted by it, so the device never holds more
        than one extra block; then the hooks are removed."""
        for index in sorted(self.weights):
            self._ensure(index)
            weights = self.weights.pop(index)
            if fn is not None:
                self.blocks[index]._apply(fn)
            del weights  # drops the byte views: the device copy is freed once `fn` moved the block away
        for handle in self._handles:
            handle.remove()
        self._handles.clear()

    # ----------------------------------------------------------------- runtime
    def _ensure(self, index: int) -> None:
        weights = self.weights.get(index)
        if weights is not None:
            weights.load(self.stream)
            weights.wait()

    def _prefetch(self, indices: Iterable[int]) -> None:
        for j in indices:
            if 0 <= j < len(self.blocks) and j in self.weights:
                self.weights[j].load(self.stream)

    def _release(self, index: int) -> None:
        if index in self.weights:
            self.weights[index].release()

    def _pre_forward(self, index: int, args, kwargs) -> None:
        self._ensure(index)
        if _in_backward():
            return  # re-computation under gradient checkpointing: the backward hooks drive the prefetch
        self._prefetch(range(index + 1, index + 1 + self.prefetch))
        weights = self.weights.get(index)
        if weights is None or not torch.is_grad_enabled():
            return
        if any(p.requires_grad for p in weights.params):
            raise OffloadError(
                f"block {index} is streamed by layer offloading but has trainable weights; only "
                "frozen weights can be streamed (LoRA parameters stay on the device)"
            )
        inputs = _grad_tensors((args, kwargs))
        if inputs:  # once every input's gradient exists, this block's backward is over
            torch.autograd.graph.register_multi_grad_hook(inputs, lambda _: self._release(index), mode="all")

    def _post_forward(self, index: int, output) -> None:
        if _in_backward():
            return
        outputs = _grad_tensors(output) if torch.is_grad_enabled() else []
        if outputs:  # the first output gradient means this block's backward is about to run
            torch.autograd.graph.register_multi_grad_hook(outputs, lambda _: self._pre_backward(index), mode="any")
        # Backward starts with the last block: keep it rather than release and reload it at once.
        if not (outputs and index == len(self.blocks) - 1):
            self._release(index)

    def _pre_backward(self, index: int) -> None:
        task = torch._C._current_graph_task_id()
        if self._callback_queued_for != task:
            self._callback_queued_for = task
            torch.autograd.Variable._execution_engine.queue_callback(self._end_of_backward)
        self._ensure(index)
        self._prefetch(range(index - 1, index - 1 - self.prefetch, -1))

    def _end_of_backward(self) -> None:
        """Blocks whose inputs need no gradient (the first ones) get no release hook: free them here,
        and start loading the first streamed block for the next forward."""
        self._callback_queued_for = None
        for index in self.weights:
            self._release(index)
        self._prefetch(sorted(self.weights)[: self.prefetch])


def _in_backward() -> bool:
    # The same test FSDP2 uses: a graph task is running only inside autograd's backward.
    return torch._C._current_graph_task_id() != -1


def _grad_tensors(tree) -> list[torch.Tensor]:
    from torch.utils._pytree import tree_leaves

    return [t for t in tree_leaves(tree) if isinstance(t, torch.Tensor) and t.requires_grad]


# ============================================================================ models


def move_except(module: torch.nn.Module, device: torch.device, skip: list[torch.nn.Module]) -> None:
    """`module.to(device)` for everything except the submodules in `skip` (and what they contain)."""
    skip_ids = {id(m) for m in skip}
    ancestors = set()
    for name, sub in module.named_modules():
        if id(sub) in skip_ids:
            parts = name.split(".") if name else []
            ancestors |= {id(module.get_submodule(".".join(parts[:k]))) for k in range(len(parts))}

    def move(sub: torch.nn.Module) -> None:
        if id(sub) in skip_ids:
            return
        if id(sub) not in ancestors:
            sub.to(device)
            return
        for child in sub.children():
            move(child)
        torch.nn.Module._apply(sub, lambda t: t.to(device), recurse=False)

    move(module)


def stream_blocks(
    module: torch.nn.Module, blocks: list[torch.nn.Module], count: int, device: torch.device, prefetch: int = 1
) -> BlockStreamer:
    """Put `module` on `device`, streaming its last `count` `blocks` (execution order) from host memory.

    Moving the module afterwards (`.to()`, `.cpu()`: e.g. parking a text encoder on the CPU once its
    embeddings are cached) ends the streaming block by block, then moves the module as usual.
    """
    streamer = BlockStreamer(module, blocks, device, prefetch)
    for index in range(len(blocks) - count, len(blocks)):
        streamer.offload(index)
    move_except(module, device, [blocks[i] for i in streamer.weights])

    owner = weakref.ref(module)  # a strong reference from the module's own attribute would be a cycle

    def apply_ending_offload(fn, recurse=True):
        target = owner()
        log.info("%s moved: layer offloading of its blocks ends", type(target).__name__)
        streamer.end(fn)
        del target._apply  # back to nn.Module._apply
        return target._apply(fn, recurse)

    module._apply = apply_ending_offload
    return streamer
