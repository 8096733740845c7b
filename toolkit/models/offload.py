"""Layer offloading: stream the frozen weights of some blocks from host memory, forward and backward.

`model.layer_offloading: true` streams the last `layer_offloading_transformer_percent` of the
transformer's blocks (double then single blocks, in execution order; `round(percent * blocks)` of
them, counted from the end) and the last `layer_offloading_text_encoder_percent` of each text
encoder's layers (when the text encoder is on the device, i.e. not `low_vram`).
`layer_offloading: auto` or `vram_budget_gb` lets `plan_offload` choose those counts from the
measured sizes so that the predicted peak fits the budget.

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

Memory on the device per streamed component: its resident part plus a window of streamed blocks:
the running block and `prefetch` blocks ahead (forward-only components), plus, in training, the block
whose backward just finished but whose input gradients are still being consumed (at most
`prefetch + 2` blocks). `plan_offload` uses exactly that window.

On a CPU "device" the same code runs with synchronous copies and no pinning, and a released block is
overwritten with 0xFF bytes (NaN in every float format) instead of being freed, so a missing re-load
shows up as a wrong result in tests rather than as a crash.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import weakref
from typing import Iterable

import torch

from toolkit.errors import ToolkitError

log = logging.getLogger(__name__)

GiB = 1024**3
TEXT_TOKENS = 512  # every FLUX pipeline pads prompts to 512 tokens
HEADROOM_BYTES = GiB  # allocator fragmentation and library workspaces (cuBLAS, attention) on top of the estimate


class OffloadError(ToolkitError):
    pass


# ============================================================================ planning (pure)


@dataclasses.dataclass(frozen=True)
class ComponentSizes:
    """Device bytes of one pipeline component, split into streamable blocks and the rest.

    blocks: bytes of each block, in execution order, as they will sit on the device (after quantization);
        a plan streams the last N of them.
    other: everything else (embedders, modulation, norms, final layer): always on the device.
    trains: runs forward and backward every step (the transformer); otherwise forward only.
    in_training: on the device during the training loop (False for a text encoder whose embeddings are cached).
    """

    name: str
    blocks: tuple[int, ...]
    other: int
    trains: bool = False
    in_training: bool = True

    def idle(self, n: int) -> int:
        """Device bytes with the last n blocks streamed and none of them loaded."""
        return self.other + sum(self.blocks[: len(self.blocks) - n])

    def active(self, n: int, prefetch: int) -> int:
        """Device bytes while running: idle plus the streaming window."""
        if n == 0:
            return self.idle(0)
        window = min(n, prefetch + (2 if self.trains else 1))
        return self.idle(n) + window * max(self.blocks[len(self.blocks) - n :])


@dataclasses.dataclass(frozen=True)
class OffloadPlan:
    """How many trailing blocks of each component are streamed, and the peak that leads to.

    phases: predicted device bytes while encoding (text encoders and VAE running) and while training,
    headroom included; predicted_peak is their maximum.
    """

    offloaded: dict[str, int]
    phases: dict[str, int]
    budget: int | None
    streamed_bytes_per_step: int

    @property
    def predicted_peak(self) -> int:
        return max(self.phases.values())

    @property
    def fits(self) -> bool:
        return self.budget is None or self.predicted_peak <= self.budget

    def describe(self, components: Iterable[ComponentSizes] = ()) -> str:
        totals = {c.name: len(c.blocks) for c in components}
        parts = [f"{name} {n}/{totals[name]}" if name in totals else f"{name} {n}" for name, n in self.offloaded.items()]
        budget = "no budget" if self.budget is None else f"budget {self.budget / GiB:.1f} GiB"
        phases = ", ".join(f"{k} {v / GiB:.1f} GiB" for k, v in self.phases.items())
        return (f"layer offloading: streaming the last blocks of {', '.join(parts) or 'nothing'}; predicted peak "
                f"{self.predicted_peak / GiB:.1f} GiB ({phases}; {budget}); "
                f"{self.streamed_bytes_per_step / GiB:.2f} GiB streamed per step")


def predict_phases(components: list[ComponentSizes], offloaded: dict[str, int], *, activation_bytes: int,
                   encode_activation_bytes: int = 0, train_state_bytes: int = 0, fixed_bytes: int = 0,
                   prefetch: int = 1, headroom_bytes: int = HEADROOM_BYTES) -> dict[str, int]:
    """Device bytes of the two phases of a run.

    encode: everything is on the device (the trainer loads, then caches captions and latents); text
        encoders run with their window, the transformer sits idle; plus text-encoder/VAE activations.
    train: the transformer runs with its window; text encoders that stay on the device sit idle; plus
        LoRA weights, gradients and optimizer state (`train_state_bytes`) and the activations.
    `fixed_bytes`: modules that are never streamed (the VAE).
    """
    encode = fixed_bytes + encode_activation_bytes + headroom_bytes
    train = fixed_bytes + train_state_bytes + activation_bytes + headroom_bytes
    for c in components:
        n = offloaded.get(c.name, 0)
        encode += c.idle(n) if c.trains else c.active(n, prefetch)
        if c.trains:
            train += c.active(n, prefetch)
        elif c.in_training:
            train += c.idle(n)
    return {"encode": encode, "train": train}


def plan_offload(components: list[ComponentSizes], budget_bytes: int | None, activation_bytes: int, *,
                 encode_activation_bytes: int = 0, train_state_bytes: int = 0, fixed_bytes: int = 0,
                 prefetch: int = 1, headroom_bytes: int = HEADROOM_BYTES,
                 fixed_counts: dict[str, int] | None = None) -> OffloadPlan:
    """Choose how many trailing blocks of each component to stream so the predicted peak fits `budget_bytes`.

    Among the choices that fit, the plan streams the fewest bytes per training step (a trained block
    crosses the bus twice per step, a text-encoder layer used every step once, a text encoder whose
    embeddings are cached only once per run), then the fewest blocks. When nothing fits it streams
    everything and `plan.fits` is False. `budget_bytes=None` streams nothing; `fixed_counts` skips the
    search and only predicts (the percentages of `layer_offloading: true`).
    """
    kwargs = dict(activation_bytes=activation_bytes, encode_activation_bytes=encode_activation_bytes,
                  train_state_bytes=train_state_bytes, fixed_bytes=fixed_bytes, prefetch=prefetch,
                  headroom_bytes=headroom_bytes)

    def cost(counts: dict[str, int]) -> tuple[int, int, int]:
        per_step = once = 0
        for c in components:
            moved = sum(c.blocks[len(c.blocks) - counts[c.name]:]) if counts[c.name] else 0
            if c.trains:
                per_step += 2 * moved
            elif c.in_training:
                per_step += moved
            else:
                once += moved
        return per_step, once, sum(counts.values())

    def make(counts: dict[str, int]) -> OffloadPlan:
        return OffloadPlan(dict(counts), predict_phases(components, counts, **kwargs), budget_bytes, cost(counts)[0])

    if fixed_counts is not None:
        return make({c.name: min(fixed_counts.get(c.name, 0), len(c.blocks)) for c in components})
    if budget_bytes is None:
        return make({c.name: 0 for c in components})
    best = None
    for choice in itertools.product(*(range(len(c.blocks) + 1) for c in components)):
        counts = {c.name: n for c, n in zip(components, choice)}
        if max(predict_phases(components, counts, **kwargs).values()) <= budget_bytes:
            if best is None or cost(counts) < cost(best):
                best = counts
    return make(best if best is not None else {c.name: len(c.blocks) for c in components})


def percent_to_count(percent: float, num_blocks: int) -> int:
    """`layer_offloading_*_percent` (0..1) -> how many trailing blocks are streamed."""
    return min(num_blocks, max(0, int(percent * num_blocks + 0.5)))  # half up, not Python's half-to-even


def estimate_activation_bytes(hidden: int, mlp_hidden: int, num_blocks: int, tokens: int, batch_size: int,
                              gradient_checkpointing: bool, bytes_per_element: int = 2) -> int:
    """Activation memory of one LoRA training step of a FLUX transformer (frozen base weights).

    Per token, a block keeps for backward about 11*hidden + 4*mlp_hidden elements: the norm input and
    the modulated input (2 hidden), q and k before the QK-norm (2), q, k, v and the output that
    attention saves (4), the output-projection and second-norm inputs (3), and the gated MLP
    (SwiGLU input halves and activation: 3 mlp_hidden, plus the mlp_hidden input of the output
    linear). Memory-efficient attention keeps no tokens x tokens matrix. LoRA adds only rank-sized
    tensors. Backward of one block needs a workspace of about 4*hidden + 2*mlp_hidden more.
    With gradient checkpointing every block keeps only its input (hidden) and one block at a time is
    recomputed. A test checks the per-block figure against the tensors autograd really saves.
    """
    per_block = 11 * hidden + 4 * mlp_hidden
    workspace = 4 * hidden + 2 * mlp_hidden
    if gradient_checkpointing:
        elements = num_blocks * hidden + per_block + workspace
    else:
        elements = num_blocks * per_block + workspace
    return elements * tokens * batch_size * bytes_per_element


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

    def __init__(self, module: torch.nn.Module, blocks: list[torch.nn.Module], device: str | torch.device,
                 prefetch: int = 1):
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
            raise OffloadError(f"block {index} is streamed by layer offloading but has trainable weights; only "
                               "frozen weights can be streamed (LoRA parameters stay on the device)")
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


def stream_blocks(module: torch.nn.Module, blocks: list[torch.nn.Module], count: int, device: torch.device,
                  prefetch: int = 1) -> BlockStreamer:
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


OPTIMIZER_STATE_BYTES = {"adamw": 8, "adamw8bit": 2, "prodigy": 16, "adafactor": 4}
"""Optimizer state per trainable parameter (AdamW: two fp32 moments; Prodigy four; Adafactor factored)."""


@dataclasses.dataclass(frozen=True)
class TrainingShape:
    """What the run trains at: sizes activations and LoRA state in the plan.

    The defaults are the trainer's defaults at 1024 px; a trainer that knows better calls
    `model.set_training_shape(TrainingShape.from_process_config(config))` before `load_model()`.
    text_encoder_in_training: False when caption embeddings are cached (the text encoder leaves the device).
    reference_pixels: pixels of all reference images of one sample (edit training); they add image tokens.
    """

    resolution: int = 1024
    batch_size: int = 1
    gradient_checkpointing: bool = True
    lora_rank: int = 16
    optimizer_state_bytes_per_param: int = 8
    text_encoder_in_training: bool = True
    bytes_per_activation: int = 2
    reference_pixels: int = 0

    @classmethod
    def from_process_config(cls, config, reference_max_pixels: int = 0) -> "TrainingShape":
        """From a `TrainProcessConfig` (largest bucket resolution of every dataset). `reference_max_pixels`:
        the model's cap on one reference image (`ModelCapabilities`); a dataset's references count at that
        cap (their real sizes are not read here), or at its largest bucket with `match_target_res`."""
        train = config.train

        def reference_pixels(dataset) -> int:
            side = max(dataset.resolutions)
            return len(dataset.control_paths) * (side * side if dataset.match_target_res else reference_max_pixels)

        return cls(
            reference_pixels=max(reference_pixels(d) for d in config.datasets),
            resolution=max(r for d in config.datasets for r in d.resolutions),
            batch_size=train.batch_size,
            gradient_checkpointing=train.gradient_checkpointing,
            lora_rank=config.network.linear,
            optimizer_state_bytes_per_param=OPTIMIZER_STATE_BYTES.get(train.optimizer, 8),
            text_encoder_in_training=not (train.cache_text_embeddings or train.unload_text_encoder),
            bytes_per_activation=4 if train.dtype in ("fp32", "float32") else 2,
        )


def lora_parameter_count(transformer: torch.nn.Module, targets: list[str], rank: int) -> int:
    count = 0
    for name in targets:
        linear = transformer.get_submodule(name)
        count += rank * (linear.in_features + linear.out_features)
    return count


def transformer_activation_bytes(transformer: torch.nn.Module, num_blocks: int, shape: TrainingShape,
                                 token_divisor: int) -> int:
    """`estimate_activation_bytes` for a diffusers FLUX transformer (dimensions from its config)."""
    config = transformer.config
    hidden = config.num_attention_heads * config.attention_head_dim
    mlp_hidden = int(hidden * getattr(config, "mlp_ratio", 4.0))  # FLUX.1's config has no mlp_ratio: 4
    tokens = (shape.resolution // token_divisor) ** 2 + shape.reference_pixels // token_divisor**2 + TEXT_TOKENS
    return estimate_activation_bytes(hidden, mlp_hidden, num_blocks, tokens, shape.batch_size,
                                     shape.gradient_checkpointing, shape.bytes_per_activation)


def _encode_activation_bytes(model, text_encoders: list[str], shape: TrainingShape) -> int:
    """Text encoding keeps every layer's hidden states (the pipelines stack three of them); a VAE pass at
    the training resolution keeps a few full-resolution feature maps of its first width."""
    needs = []
    for name in text_encoders:
        layers = model.offload_blocks(name)
        first = next(m for m in layers[0].modules() if isinstance(m, torch.nn.Linear))
        needs.append((len(layers) + 9) * TEXT_TOKENS * first.in_features * 2)
    vae = getattr(model.pipeline, "vae", None)
    if vae is not None:
        width = getattr(vae.config, "block_out_channels", (128,))[0]
        needs.append(8 * width * shape.resolution**2 * 2)
    return max(needs, default=0)


def _device_budget(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return free


def plan_model_offload(model, components: list[str]) -> OffloadPlan | None:
    """The offload plan of `model` (a BaseModel) for the pipeline `components` that go to the device.

    None when layer offloading is off. `layer_offloading: true` streams the configured percentages;
    `auto` / `vram_budget_gb` plans against the budget (default: the device's free memory) and raises
    `OffloadError` when even streaming everything cannot fit.
    """
    cfg = model.model_config
    auto = cfg.layer_offloading == "auto" or cfg.vram_budget_gb is not None
    if not cfg.layer_offloading and not auto:
        return None
    shape = getattr(model, "training_shape", None) or TrainingShape()
    text_encoders = [n for n in model.text_encoder_names() if n in components]
    sizes, fixed = [], 0
    for name in components:
        module = getattr(model.pipeline, name)
        blocks = model.offload_blocks(name)
        if not blocks:
            fixed += module_nbytes(module)
            continue
        block_bytes = tuple(module_nbytes(b) for b in blocks)
        sizes.append(ComponentSizes(name, block_bytes, module_nbytes(module) - sum(block_bytes),
                                    trains=name == "transformer",
                                    in_training=name == "transformer" or shape.text_encoder_in_training))
    transformer = model.transformer
    lora = lora_parameter_count(transformer, model.lora_targets(), shape.lora_rank)
    kwargs = dict(
        activation_bytes=transformer_activation_bytes(transformer, len(model.offload_blocks("transformer")), shape,
                                                      model.capabilities.bucket_divisibility),
        encode_activation_bytes=_encode_activation_bytes(model, text_encoders, shape),
        train_state_bytes=lora * (8 + shape.optimizer_state_bytes_per_param),  # fp32 weights and gradients
        fixed_bytes=fixed,
    )
    if auto:
        budget = int(cfg.vram_budget_gb * GiB) if cfg.vram_budget_gb is not None else _device_budget(model.device)
        if budget is None:
            log.info("layer_offloading: auto has no memory budget on %s (set model.vram_budget_gb); nothing is "
                     "streamed", model.device)
            return None
        plan = plan_offload(sizes, budget, headroom_bytes=HEADROOM_BYTES, **kwargs)
        if not plan.fits:
            raise OffloadError(
                f"model.vram_budget_gb / layer_offloading: auto: even streaming every block, the predicted peak is "
                f"{plan.predicted_peak / GiB:.2f} GiB for a budget of {budget / GiB:.2f} GiB (activations estimated "
                f"for {shape.resolution} px, batch {shape.batch_size}, gradient checkpointing "
                f"{'on' if shape.gradient_checkpointing else 'off'}). Quantize the transformer "
                "(model.quantize: true, model.qtype: qint4), enable train.gradient_checkpointing, lower the resolution "
                "or batch size, cache text embeddings (train.cache_text_embeddings) or keep the text encoder on the "
                "CPU (model.low_vram: true); if the estimate is pessimistic for your run, raise model.vram_budget_gb")
    else:
        percents = {name: cfg.layer_offloading_text_encoder_percent for name in text_encoders}
        percents["transformer"] = cfg.layer_offloading_transformer_percent
        counts = {c.name: percent_to_count(percents.get(c.name, 0.0), len(c.blocks)) for c in sizes}
        plan = plan_offload(sizes, None, fixed_counts=counts, headroom_bytes=HEADROOM_BYTES, **kwargs)
    log.info("%s", plan.describe(sizes))
    if model.device.type == "cpu" and any(plan.offloaded.values()):
        log.warning("layer offloading on the CPU saves no memory (host and device are the same); it runs as a test")
    return plan
