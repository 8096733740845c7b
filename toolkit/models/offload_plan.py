"""Layer offloading plans: how many blocks of each component to stream so a run fits a memory budget.

Pure arithmetic on sizes (`plan_offload`, `predict_phases`, the activation estimate) plus
`plan_model_offload`, which measures a loaded model and applies `model.layer_offloading` /
`vram_budget_gb`. The streaming itself is toolkit/models/offload.py.

Memory on the device per streamed component: its resident part plus a window of streamed blocks:
the running block and `prefetch` blocks ahead (forward-only components), plus, in training, the block
whose backward just finished but whose input gradients are still being consumed (at most
`prefetch + 2` blocks). `plan_offload` uses exactly that window.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
from typing import Iterable

import torch

from toolkit.models.offload import OffloadError, module_nbytes

log = logging.getLogger(__name__)

GiB = 1024**3
TEXT_TOKENS = 512  # every FLUX pipeline pads prompts to 512 tokens
HEADROOM_BYTES = GiB  # allocator fragmentation and library workspaces (cuBLAS, attention) on top of the estimate


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
        parts = [
            f"{name} {n}/{totals[name]}" if name in totals else f"{name} {n}" for name, n in self.offloaded.items()
        ]
        budget = "no budget" if self.budget is None else f"budget {self.budget / GiB:.1f} GiB"
        phases = ", ".join(f"{k} {v / GiB:.1f} GiB" for k, v in self.phases.items())
        return (
            f"layer offloading: streaming the last blocks of {', '.join(parts) or 'nothing'}; predicted peak "
            f"{self.predicted_peak / GiB:.1f} GiB ({phases}; {budget}); "
            f"{self.streamed_bytes_per_step / GiB:.2f} GiB streamed per step"
        )


def predict_phases(
    components: list[ComponentSizes],
    offloaded: dict[str, int],
    *,
    activation_bytes: int,
    encode_activation_bytes: int = 0,
    train_state_bytes: int = 0,
    fixed_bytes: int = 0,
    prefetch: int = 1,
    headroom_bytes: int = HEADROOM_BYTES,
) -> dict[str, int]:
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


def plan_offload(
    components: list[ComponentSizes],
    budget_bytes: int | None,
    activation_bytes: int,
    *,
    encode_activation_bytes: int = 0,
    train_state_bytes: int = 0,
    fixed_bytes: int = 0,
    prefetch: int = 1,
    headroom_bytes: int = HEADROOM_BYTES,
    fixed_counts: dict[str, int] | None = None,
) -> OffloadPlan:
    """Choose how many trailing blocks of each component to stream so the predicted peak fits `budget_bytes`.

    Among the choices that fit, the plan streams the fewest bytes per training step (a trained block
    crosses the bus twice per step, a text-encoder layer used every step once, a text encoder whose
    embeddings are cached only once per run), then the fewest blocks. When nothing fits it streams
    everything and `plan.fits` is False. `budget_bytes=None` streams nothing; `fixed_counts` skips the
    search and only predicts (the percentages of `layer_offloading: true`).
    """
    kwargs = dict(
        activation_bytes=activation_bytes,
        encode_activation_bytes=encode_activation_bytes,
        train_state_bytes=train_state_bytes,
        fixed_bytes=fixed_bytes,
        prefetch=prefetch,
        headroom_bytes=headroom_bytes,
    )

    def cost(counts: dict[str, int]) -> tuple[int, int, int]:
        per_step = once = 0
        for c in components:
            moved = sum(c.blocks[len(c.blocks) - counts[c.name] :]) if counts[c.name] else 0
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


def estimate_activation_bytes(
    hidden: int,
    mlp_hidden: int,
    num_blocks: int,
    tokens: int,
    batch_size: int,
    gradient_checkpointing: bool,
    bytes_per_element: int = 2,
) -> int:
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


# ============================================================================ a run's shape


OPTIMIZER_STATE_BYTES = {"adamw": 8, "adamw8bit": 2, "prodigy": 16, "adafactor": 4}
"""Optimizer state per trainable parameter (AdamW: two fp32 moments; Prodigy four; Adafactor factored)."""


@dataclasses.dataclass(frozen=True)
class TrainingShape:
    """What the run trains at: sizes activations and LoRA state in the plan.

    The defaults are the trainer's defaults at 1024 px; a trainer that knows better calls
    passes ``LoadOptions(training_shape=TrainingShape.from_process_config(config))`` when it builds the model.
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


def transformer_activation_bytes(
    transformer: torch.nn.Module, num_blocks: int, shape: TrainingShape, token_divisor: int
) -> int:
    """`estimate_activation_bytes` for a diffusers FLUX transformer (dimensions from its config)."""
    config = transformer.config
    hidden = config.num_attention_heads * config.attention_head_dim
    mlp_hidden = int(hidden * getattr(config, "mlp_ratio", 4.0))  # FLUX.1's config has no mlp_ratio: 4
    tokens = (shape.resolution // token_divisor) ** 2 + shape.reference_pixels // token_divisor**2 + TEXT_TOKENS
    return estimate_activation_bytes(
        hidden,
        mlp_hidden,
        num_blocks,
        tokens,
        shape.batch_size,
        shape.gradient_checkpointing,
        shape.bytes_per_activation,
    )


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
    shape = model.options.training_shape or TrainingShape()
    text_encoders = [n for n in model.text_encoder_names() if n in components]
    sizes, fixed = [], 0
    for name in components:
        module = getattr(model.pipeline, name)
        blocks = model.offload_blocks(name)
        if not blocks:
            fixed += module_nbytes(module)
            continue
        block_bytes = tuple(module_nbytes(b) for b in blocks)
        sizes.append(
            ComponentSizes(
                name,
                block_bytes,
                module_nbytes(module) - sum(block_bytes),
                trains=name == "transformer",
                in_training=name == "transformer" or shape.text_encoder_in_training,
            )
        )
    transformer = model.transformer
    lora = lora_parameter_count(transformer, model.lora_targets(), shape.lora_rank)
    kwargs = dict(
        activation_bytes=transformer_activation_bytes(
            transformer, len(model.offload_blocks("transformer")), shape, model.capabilities.bucket_divisibility
        ),
        encode_activation_bytes=_encode_activation_bytes(model, text_encoders, shape),
        train_state_bytes=lora * (8 + shape.optimizer_state_bytes_per_param),  # fp32 weights and gradients
        fixed_bytes=fixed,
    )
    if auto:
        budget = int(cfg.vram_budget_gb * GiB) if cfg.vram_budget_gb is not None else _device_budget(model.device)
        if budget is None:
            log.info(
                "layer_offloading: auto has no memory budget on %s (set model.vram_budget_gb); nothing is streamed",
                model.device,
            )
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
                "CPU (model.low_vram: true); if the estimate is pessimistic for your run, raise model.vram_budget_gb"
            )
    else:
        percents = {name: cfg.layer_offloading_text_encoder_percent for name in text_encoders}
        percents["transformer"] = cfg.layer_offloading_transformer_percent
        counts = {c.name: percent_to_count(percents.get(c.name, 0.0), len(c.blocks)) for c in sizes}
        plan = plan_offload(sizes, None, fixed_counts=counts, headroom_bytes=HEADROOM_BYTES, **kwargs)
    log.info("%s", plan.describe(sizes))
    if model.device.type == "cpu" and any(plan.offloaded.values()):
        log.warning("layer offloading on the CPU saves no memory (host and device are the same); it runs as a test")
    return plan
