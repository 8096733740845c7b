"""Training-step benchmark: s/step, peak GPU and host memory, TFLOP/s and MFU of LoRA training.

    python -m toolkit.bench --arch flux2 --resolution 1024 --rank 16 --qtype qint4 \\
        --offload auto --gradient-checkpointing --vram-cap-gb 24 --steps 10 --warmup 3

The transformer is built with random weights and nothing is downloaded: it is created on the meta
device (no memory), then each block in turn is materialised on the target device, given random
weights, quantized and, if the plan says so, handed to layer offloading, so the device never holds
more than the resident model plus one block. `--tiny` takes the configuration of the tiny model
`toolkit.tiny` builds instead of the real one. Inputs are cached-style: random latents and text embeddings of the
shapes the pipelines produce at `--resolution` and `--batch`.

A measured step is the trainer's: noise, timesteps and the noisy latents from `toolkit.train_math`,
`model.get_noise_prediction` under bf16 autocast (CUDA), `model.get_loss_target`, MSE, backward,
gradient clipping at 1.0, AdamW on a PEFT LoRA on `model.lora_targets()`; as `SDTrainer.compute_loss`
and `BaseSDTrainProcess.train_step` do it. The "bare" step is the same transformer called directly on
pre-packed inputs, MSE, backward and AdamW: their ratio is the overhead the toolkit adds (printed by
default with `--tiny`, or with `--overhead`; from the fastest step of each, the least disturbed by other
work on the machine, and from the medians).

`--compile` compiles the blocks as `model.compile: true` does (the first step compiles: `startup_s` is setup
plus that first step, `compile_s` the compiling part); `--fp8` converts the blocks' linears as
`model.fp8_compute: true` does (on a CUDA device it needs compute capability 8.9+; on the CPU torchao's
reference kernels run, which says nothing about speed).

FLOPs per step: `torch.utils.flop_counter.FlopCounterMode` over one forward and backward of the same
transformer with the same LoRA in bf16 on the meta device, with gradient checkpointing off, so
re-computation is not counted (the MFU convention; with checkpointing on the hardware does ~1/2 more
work). Quantized matmuls count as the bf16 matmuls they stand for. MFU = (FLOPs / s per step) /
`--peak-tflops` (default 989: H200 / H100 SXM dense bf16).

Real architectures: the transformer configurations of the declarations (`ArchSpec.bench`, with their
sources named there).
"""

from __future__ import annotations

import argparse
import json
import logging
import resource
import statistics
import sys
import time

import torch
from tqdm import tqdm

log = logging.getLogger(__name__)

GiB = 1024**3


def bench_archs() -> dict:
    """arch -> declaration, for every declared architecture with a benchmark shape (`ArchSpec.bench`)."""
    from toolkit.arch_registry import arch_registry

    return {arch: spec for arch, spec in arch_registry().items() if spec.bench is not None}


def meta_transformer(arch: str, dtype: torch.dtype = torch.bfloat16, tiny: bool = False) -> torch.nn.Module:
    """The transformer of `arch` on the meta device (shapes only, no memory): real size, or with `tiny`
    the configuration of the tiny model `toolkit.tiny` builds (the `tiny:<arch>` weights' config)."""
    import diffusers

    spec = bench_archs()[arch]
    cls = getattr(diffusers, spec.transformer_class)
    if tiny:
        from toolkit.models.weights import resolve_tiny

        config = cls.load_config(str(resolve_tiny(f"tiny:{arch}", "--tiny") / "transformer"))
    else:
        config = spec.bench.transformer_config
    with torch.device("meta"):
        model = cls.from_config(config) if tiny else cls(**config)
    # nn.Module's own conversion: ModelMixin.to() warns about modules it would keep in fp32 (FLUX has none)
    return torch.nn.Module._apply(model, lambda t: t.to(dtype) if t.is_floating_point() else t)


def parameter_count(arch: str) -> int:
    return sum(p.numel() for p in meta_transformer(arch).parameters())


# ============================================================================ building


def _pipeline(arch: str, transformer):
    """The architecture's diffusers pipeline holding only `transformer` (get_noise_prediction needs its helpers)."""
    import inspect

    import diffusers
    from diffusers import FlowMatchEulerDiscreteScheduler

    cls = getattr(diffusers, bench_archs()[arch].pipeline)
    names = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "transformer", "scheduler")]
    kwargs = {name: None for name in names}
    if "is_distilled" in kwargs:
        kwargs["is_distilled"] = False
    return cls(scheduler=FlowMatchEulerDiscreteScheduler(), transformer=transformer, **kwargs)


def _materialise(module: torch.nn.Module, device: torch.device, dtype: torch.dtype) -> None:
    """`module`'s own tensors (not its children's) on `device` in `dtype`; meta ones get random values."""
    own = [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]
    if any(t.is_meta for _, t in own):
        torch.nn.Module._apply(module, lambda t: torch.empty_like(t, device=device), recurse=False)
        with torch.no_grad():
            for name, tensor in [*module.named_parameters(recurse=False), *module.named_buffers(recurse=False)]:
                if not tensor.is_floating_point():
                    continue
                if tensor.dim() >= 2:
                    tensor.normal_(0.0, 0.02)
                else:
                    tensor.fill_(1.0 if name == "weight" else 0.0)
    torch.nn.Module._apply(module, lambda t: t.to(device, dtype if t.is_floating_point() else None), recurse=False)


def meta_model(args, dtype: torch.dtype):
    """The model class instance of `args.arch` around a meta-device transformer (its pipeline holds nothing else)."""
    from toolkit.config_modules import ModelConfig
    from toolkit.util.get_model import get_model_class

    config = ModelConfig(name_or_path=f"bench:{args.arch}", arch=args.arch, dtype="bf16")
    model = get_model_class(config)(config, device=args.device)
    model.pipeline = _pipeline(args.arch, meta_transformer(args.arch, dtype, tiny=args.tiny))
    return model


def plan_for(args, model, dtype: torch.dtype):
    """The offload plan of `args` for `model`'s transformer, sized from shapes (works on the meta device):
    the transformer after quantization, LoRA weights + gradients + AdamW state, activations."""
    from toolkit.models.offload_plan import (
        ComponentSizes,
        TrainingShape,
        lora_parameter_count,
        percent_to_count,
        plan_offload,
        transformer_activation_bytes,
    )
    from toolkit.models.quantize import quantized_nbytes, transformer_blocks

    transformer = model.transformer
    blocks = transformer_blocks(transformer, model.spec.transformer_blocks)
    qtype = None if args.qtype == "none" else args.qtype
    shape = TrainingShape(
        resolution=args.resolution,
        batch_size=args.batch,
        lora_rank=args.rank,
        gradient_checkpointing=args.gradient_checkpointing,
        bytes_per_activation=2 if dtype == torch.bfloat16 else 4,
    )
    sizes = [
        ComponentSizes(
            "transformer",
            tuple(quantized_nbytes(b, qtype) for b in blocks),
            quantized_nbytes(transformer, None) - sum(quantized_nbytes(b, None) for b in blocks),
            trains=True,
        )
    ]
    lora = lora_parameter_count(transformer, model.lora_targets(), args.rank)
    kwargs = dict(
        activation_bytes=transformer_activation_bytes(transformer, len(blocks), shape, 16),
        train_state_bytes=lora * (8 + shape.optimizer_state_bytes_per_param),
    )
    budget = int(args.vram_cap_gb * GiB) if args.vram_cap_gb else None
    if args.offload == "auto":
        if budget is None and torch.device(args.device).type == "cuda":
            budget = torch.cuda.mem_get_info(torch.device(args.device))[0]
        plan = plan_offload(sizes, budget, **kwargs)
        if not plan.fits:
            log.warning("the predicted peak exceeds the budget even streaming every block; running anyway")
    else:
        percent = 0.0 if args.offload == "none" else float(args.offload.rstrip("%")) / 100
        plan = plan_offload(
            sizes, budget, fixed_counts={"transformer": percent_to_count(percent, len(blocks))}, **kwargs
        )
    log.info("%s", plan.describe(sizes))
    return plan


def build(args, device: torch.device, dtype: torch.dtype):
    """The model class instance (its pipeline holding only the transformer), LoRA parameters and the plan."""
    from toolkit.models.offload import BlockStreamer
    from toolkit.models.quantize import quantize_blocks, transformer_blocks
    from toolkit.network import attach_lora

    model = meta_model(args, dtype)
    transformer = model.transformer
    blocks = transformer_blocks(transformer, model.spec.transformer_blocks)
    qtype = None if args.qtype == "none" else args.qtype
    torch.manual_seed(0)
    plan = plan_for(args, model, dtype)
    count = plan.offloaded["transformer"]

    # Everything but the blocks first (small), then block by block: materialise, quantize, maybe stream.
    in_blocks = {id(m) for b in blocks for m in b.modules()}
    for module in transformer.modules():
        if id(module) not in in_blocks:
            _materialise(module, device, dtype)
    streamer = BlockStreamer(transformer, blocks, device) if count else None
    if qtype:
        from toolkit.models.quanto_kernels import ensure_kernels

        ensure_kernels({"--qtype": qtype}, device, device)  # the blocks are quantized on the device
    for index, block in enumerate(tqdm(blocks, desc="building blocks", unit="block", disable=not qtype)):
        for sub in block.modules():
            _materialise(sub, device, dtype)
        if qtype:
            quantize_blocks([block], qtype)
        if args.fp8:
            from toolkit.models.fp8 import convert_to_fp8

            convert_to_fp8([block])
        if streamer is not None and index >= len(blocks) - count:
            streamer.offload(index)
    params = attach_lora(transformer, model.lora_targets(), args.rank, args.rank)
    if args.gradient_checkpointing:
        transformer.enable_gradient_checkpointing()
    transformer.train()
    if args.compile:
        model.compile_transformer(backend=args.compile_backend)
    return model, params, plan


# ============================================================================ steps


def make_inputs(arch: str, model, batch: int, resolution: int, device, dtype, seed: int = 0, text_tokens: int = 512):
    """Cached-style inputs: latents (B, C, H/f, W/f) and PromptEmbeds as `encode_prompt` returns them
    (`text_tokens` long: the pipelines pad prompts to 512)."""
    from toolkit.models.base_model import PromptEmbeds

    spec = bench_archs()[arch].bench
    g = torch.Generator().manual_seed(seed)
    side = resolution // spec.latent_factor
    latents = torch.randn(batch, spec.latent_channels, side, side, generator=g).to(device, dtype)
    joint = model.transformer.config.joint_attention_dim
    embeds = {"prompt_embeds": torch.randn(batch, text_tokens, joint, generator=g).to(device, dtype)}
    if spec.pooled_dim:
        embeds["pooled_prompt_embeds"] = torch.randn(
            batch, model.transformer.config.pooled_projection_dim, generator=g
        ).to(device, dtype)
    else:
        embeds["text_ids"] = model.pipeline._prepare_text_ids(embeds["prompt_embeds"]).to(device)
    return latents, PromptEmbeds(embeds)


def full_step(model, latents, embeds, optimizer, params, generator, autocast) -> float:
    """One training step exactly as the trainer runs it (SDTrainer.compute_loss + train_step)."""
    from toolkit.train_math import add_noise, sample_noise, sample_timesteps

    noise = sample_noise(tuple(latents.shape), generator, dtype=latents.dtype, device=latents.device)
    timesteps = sample_timesteps(
        model.capabilities.default_timestep_type,
        latents.shape[0],
        generator,
        mu=model.shift_mu(latents),
        device=latents.device,
    )
    noisy = add_noise(latents, noise, timesteps)
    with autocast():
        prediction = model.get_noise_prediction(noisy, timesteps, embeds)
    target = model.get_loss_target(noise, latents, timesteps)
    loss = torch.nn.functional.mse_loss(prediction.float(), target.float())
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def bare_inputs(model, latents, embeds):
    """The transformer's own keyword arguments for `latents`, packed once (what the bare step feeds it)."""
    calls = {}

    def capture(*args, **kwargs):
        calls.update(kwargs)
        raise _Captured

    model.transformer.forward = capture
    try:
        model.get_noise_prediction(latents, torch.full((latents.shape[0],), 500.0, device=latents.device), embeds)
    except _Captured:
        pass
    finally:
        del model.transformer.forward
    return calls


class _Captured(Exception):
    pass


def bare_step(transformer, kwargs, target, optimizer, autocast) -> float:
    # Fresh input tensors every step, as any training loop gets them (reusing the very same tensors
    # measurably flatters the CPU timing).
    kwargs = {k: v.clone() if isinstance(v, torch.Tensor) else v for k, v in kwargs.items()}
    with autocast():
        out = transformer(**kwargs)[0]
    loss = torch.nn.functional.mse_loss(out.float(), target)
    loss.backward()
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return loss.item()


def count_flops(args) -> int:
    """FLOPs of one forward + backward (see the module docstring), counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    from toolkit.network import attach_lora

    model = meta_model(args, torch.bfloat16)
    attach_lora(model.transformer, model.lora_targets(), args.rank, args.rank)
    latents, embeds = make_inputs(args.arch, model, args.batch, args.resolution, "meta", torch.bfloat16)
    kwargs = bare_inputs(model, latents, embeds)
    with FlopCounterMode(display=False) as counter:
        model.transformer(**kwargs)[0].float().sum().backward()
    return counter.get_total_flops()


# ============================================================================ run


def _timed(fn, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start


def run(args) -> dict:
    import contextlib

    from toolkit.optim import build_optimizer

    device = torch.device(args.device)
    if device.type == "cuda" and device.index is None:  # set_per_process_memory_fraction needs an index
        device = torch.device("cuda", torch.cuda.current_device())
    if device.type == "cuda":
        if args.vram_cap_gb:
            total = torch.cuda.get_device_properties(device).total_memory
            torch.cuda.set_per_process_memory_fraction(min(1.0, args.vram_cap_gb * GiB / total), device)
        torch.cuda.reset_peak_memory_stats(device)
    dtype = torch.float32 if (args.tiny and device.type == "cpu") else torch.bfloat16
    started = time.perf_counter()
    model, params, plan = build(args, device, dtype)
    setup_s = time.perf_counter() - started
    setup_peak = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else None

    def autocast():
        if dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)

    latents, embeds = make_inputs(args.arch, model, args.batch, args.resolution, device, dtype)
    optimizer = build_optimizer("adamw", params, 1e-4)
    generator = torch.Generator("cpu").manual_seed(0)
    overhead = args.overhead if args.overhead is not None else args.tiny
    if overhead:
        bare_kwargs = bare_inputs(model, latents, embeds)
        with torch.no_grad(), autocast():
            target = torch.randn_like(model.transformer(**bare_kwargs)[0].float())
    losses, full_times, bare_times, first_step_s = [], [], [], None
    for i in range(args.warmup + args.steps):
        if i == args.warmup and device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        t = _timed(
            lambda: losses.append(full_step(model, latents, embeds, optimizer, params, generator, autocast)), device
        )
        if i == 0:
            first_step_s = t  # with --compile, the compilation happens here
            model.report_compile()
        if i >= args.warmup:
            full_times.append(t)
        if overhead:
            t = _timed(lambda: bare_step(model.transformer, bare_kwargs, target, optimizer, autocast), device)
            if i >= args.warmup:
                bare_times.append(t)

    s_per_step = statistics.median(full_times)
    flops = count_flops(args)
    result = {
        "arch": args.arch,
        "tiny": args.tiny,
        "device": str(device),
        "resolution": args.resolution,
        "batch": args.batch,
        "rank": args.rank,
        "qtype": args.qtype,
        "offload": args.offload,
        "gradient_checkpointing": args.gradient_checkpointing,
        "vram_cap_gb": args.vram_cap_gb,
        "parameters": sum(p.numel() for p in model.transformer.parameters() if not p.requires_grad),
        "lora_parameters": sum(p.numel() for p in params),
        "offloaded_blocks": plan.offloaded["transformer"],
        "blocks": len(model.offload_blocks("transformer")),
        "predicted_peak_gb": round(plan.predicted_peak / GiB, 2),
        "compile": args.compile,
        "fp8": args.fp8,
        "compile_s": round(model.compiled.compile_seconds, 2) if model.compiled is not None else None,
        "first_step_s": round(first_step_s, 2),
        "startup_s": round(setup_s + first_step_s, 2),
        "steps": args.steps,
        "warmup": args.warmup,
        "setup_s": round(setup_s, 2),
        "s_per_step": s_per_step,
        "losses": [round(x, 5) for x in losses],
        "peak_gpu_gb": round(torch.cuda.max_memory_allocated(device) / GiB, 2) if device.type == "cuda" else None,
        "peak_gpu_setup_gb": round(setup_peak / GiB, 2) if setup_peak is not None else None,
        "peak_host_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GiB, 2),
        "flops_per_step": flops,
        "tflops": flops / s_per_step / 1e12,
        "peak_tflops": args.peak_tflops,
        "mfu": flops / s_per_step / 1e12 / args.peak_tflops,
    }
    if overhead:
        # Minimum over steps: the run least disturbed by other work on the machine (the median is reported too).
        result["s_per_step_bare"] = statistics.median(bare_times)
        result["overhead_ratio"] = min(full_times) / min(bare_times)
        result["overhead_ratio_median"] = s_per_step / result["s_per_step_bare"]
        result["s_per_step_min"], result["s_per_step_bare_min"] = min(full_times), min(bare_times)
    return result


def report(result: dict) -> str:
    lines = [
        f"{result['arch']}{' (tiny)' if result['tiny'] else ''} on {result['device']}: {result['resolution']} px, "
        f"batch {result['batch']}, LoRA rank {result['rank']}, qtype {result['qtype']}, gradient checkpointing "
        f"{'on' if result['gradient_checkpointing'] else 'off'}",
        f"parameters: {_count(result['parameters'])} frozen + {_count(result['lora_parameters'])} LoRA; "
        f"offloaded blocks: {result['offloaded_blocks']}/{result['blocks']} (predicted peak {result['predicted_peak_gb']} GiB)",
        f"compile {'on' if result['compile'] else 'off'}, fp8 compute {'on' if result['fp8'] else 'off'}; startup "
        f"{result['startup_s']} s (setup {result['setup_s']} s + first step {result['first_step_s']} s"
        + (f", of which compiling {result['compile_s']} s)" if result["compile"] else ")"),
        f"s/step: {result['s_per_step']:.4f} (median of {result['steps']} after {result['warmup']} warm-up)",
        f"peak GPU memory: {result['peak_gpu_gb']} GiB training, {result['peak_gpu_setup_gb']} GiB setup; "
        f"peak host memory: {result['peak_host_gb']} GiB",
        f"FLOPs/step: {result['flops_per_step'] / 1e12:.3f} T; achieved {result['tflops']:.3f} TFLOP/s; "
        f"MFU {100 * result['mfu']:.2f}% of {result['peak_tflops']} TFLOP/s",
    ]
    if "overhead_ratio" in result:
        lines.append(
            f"overhead: full training step / bare transformer step = {result['overhead_ratio']:.3f} "
            f"({result['s_per_step_min']:.4f} s / {result['s_per_step_bare_min']:.4f} s, fastest steps; "
            f"medians: {result['overhead_ratio_median']:.3f})"
        )
    return "\n".join(lines)


def _count(n: int) -> str:
    return f"{n / 1e9:.3f}B" if n >= 1e9 else f"{n / 1e6:.2f}M"


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m toolkit.bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--arch", required=True, choices=sorted(bench_archs()))
    parser.add_argument("--tiny", action="store_true", help="the tiny random model instead of the real size")
    parser.add_argument("--resolution", type=int, default=1024)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--rank", type=int, default=16)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--qtype", choices=("qfloat8", "qint8", "qint4", "none"), default="none")
    parser.add_argument("--offload", default="none", help="auto, a percentage of the blocks (e.g. 50), or none")
    parser.add_argument("--gradient-checkpointing", action="store_true")
    parser.add_argument("--vram-cap-gb", type=float, default=None)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--peak-tflops", type=float, default=989.0, help="dense bf16 peak for MFU (H200: 989)")
    parser.add_argument(
        "--overhead",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="also time the bare transformer step (default: with --tiny)",
    )
    parser.add_argument("--compile", action="store_true", help="regional torch.compile of the blocks (model.compile)")
    parser.add_argument("--compile-backend", default="inductor", help=argparse.SUPPRESS)  # aot_eager: CPU dry runs
    parser.add_argument("--fp8", action="store_true", help="fp8 compute of the blocks' linears (model.fp8_compute)")
    parser.add_argument("--json", action="store_true", help="print the results as one JSON object")
    args = parser.parse_args(argv)
    if args.fp8 and args.qtype != "none":
        parser.error(
            "--fp8 computes with the bf16 weights; it does not combine with --qtype (model.fp8_compute "
            "with quantize: true is refused too)"
        )
    if args.fp8 and torch.device(args.device).type == "cuda":
        from toolkit.models.fp8 import Fp8Error, check_fp8_device

        try:
            check_fp8_device(torch.device(args.device))
        except Fp8Error as exc:
            parser.error(str(exc))
    if args.offload not in ("auto", "none"):
        try:
            value = float(args.offload.rstrip("%"))
        except ValueError:
            parser.error(f"--offload: expected auto, none or a percentage, got {args.offload!r}")
        if not 0 <= value <= 100:
            parser.error("--offload: a percentage between 0 and 100")
    if args.resolution % 16:
        parser.error("--resolution must be a multiple of 16")
    return args


def main(argv=None) -> dict:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    args = parse_args(argv)
    result = run(args)
    print(json.dumps(result) if args.json else report(result))  # the CLI's output
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)
