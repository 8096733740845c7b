"""Layer offloading: the planner's choices, equal gradients with and without streaming, quantized training.

The streaming runs on a CPU "device" (synchronous copies, released weights overwritten with NaN bytes),
so a block used without being re-loaded shows up as NaN or a changed gradient.
"""

from __future__ import annotations

import copy
import time

import pytest
import torch

from toolkit.models import offload, offload_plan
from toolkit.models.offload import OffloadError, stream_blocks
from toolkit.models.offload_plan import ComponentSizes, GiB, plan_offload
from toolkit.arch_registry import get_arch
from toolkit.models.quantize import quantize_blocks, quantized_nbytes, transformer_blocks

pytestmark = pytest.mark.slow  # end-to-end: builds / loads tiny models or runs jobs (see pyproject.toml)

BLOCKS = get_arch("flux2").transformer_blocks  # FLUX.1 declares the same block lists
assert get_arch("flux").transformer_blocks == BLOCKS

MiB = 1024**2


# ============================================================================ planner (pure)


def transformer_sizes(blocks=10, block=MiB * 100, other=MiB * 200):
    return ComponentSizes("transformer", (block,) * blocks, other, trains=True)


def text_encoder_sizes(layers=8, layer=MiB * 50, other=MiB * 100, in_training=False):
    return ComponentSizes("text_encoder", (layer,) * layers, other, in_training=in_training)


def plan(components, budget, **kwargs):
    kwargs.setdefault("activation_bytes", 300 * MiB)
    kwargs.setdefault("headroom_bytes", 0)
    return plan_offload(components, budget, **kwargs)


def test_a_budget_that_holds_everything_streams_nothing():
    result = plan([transformer_sizes()], 10 * GiB)
    assert result.offloaded == {"transformer": 0} and result.fits
    # 200 MiB other + 10 x 100 MiB blocks + 300 MiB activations
    assert result.predicted_peak == 1500 * MiB


def test_the_plan_streams_the_fewest_blocks_that_fit():
    sizes = [transformer_sizes()]
    result = plan(sizes, 1000 * MiB)
    n = result.offloaded["transformer"]
    # resident: 200 + (10 - n) * 100, window: 3 blocks of 100 (prefetch 1 + running + finishing backward), 300 act
    assert result.predicted_peak == (200 + (10 - n) * 100 + 300 + 300) * MiB <= 1000 * MiB
    assert n == 8 and result.fits
    assert result.streamed_bytes_per_step == 2 * 8 * 100 * MiB  # forward and backward
    one_less = plan_offload(sizes, None, 300 * MiB, headroom_bytes=0, fixed_counts={"transformer": n - 1})
    assert one_less.predicted_peak > 1000 * MiB


def test_streaming_no_more_blocks_than_the_window_saves_nothing():
    sizes = [transformer_sizes()]
    peaks = [
        plan_offload(sizes, None, 0, headroom_bytes=0, fixed_counts={"transformer": n}).predicted_peak for n in range(6)
    ]
    # training keeps up to 3 streamed blocks on the device (running, prefetched, finishing backward)
    assert peaks[0] == peaks[1] == peaks[2] == peaks[3] > peaks[4] > peaks[5]
    assert peaks[3] - peaks[5] == 2 * 100 * MiB
    assert plan_offload(sizes, peaks[0] - 1, 0, headroom_bytes=0).offloaded == {"transformer": 4}


def test_an_impossible_budget_streams_everything_and_says_it_does_not_fit():
    result = plan([transformer_sizes(), text_encoder_sizes()], 100 * MiB)
    assert result.offloaded == {"transformer": 10, "text_encoder": 8}
    assert not result.fits and "predicted peak" in result.describe()


def test_a_cached_text_encoder_is_streamed_before_the_transformer():
    # Training peak: 200 + 1000 + 600 (activations) = 1800 fits 1800; the encode phase adds the text encoder
    # (100 + 400) to the idle transformer: 1700 + encode activations 200 = 1900: stream text-encoder layers only.
    components = [transformer_sizes(), text_encoder_sizes(in_training=False)]
    result = plan(components, 1800 * MiB, activation_bytes=600 * MiB, encode_activation_bytes=200 * MiB)
    assert result.offloaded["transformer"] == 0 and result.offloaded["text_encoder"] >= 3
    assert result.streamed_bytes_per_step == 0 and result.fits


def test_a_text_encoder_used_every_step_counts_in_training():
    cached = [transformer_sizes(), text_encoder_sizes(in_training=False)]
    every_step = [transformer_sizes(), text_encoder_sizes(in_training=True)]
    kwargs = dict(activation_bytes=300 * MiB, headroom_bytes=0, fixed_counts={"transformer": 0, "text_encoder": 0})
    assert (
        plan_offload(every_step, None, **kwargs).phases["train"]
        == plan_offload(cached, None, **kwargs).phases["train"] + 500 * MiB
    )


def test_fixed_counts_only_predict_and_percentages_round():
    result = plan_offload([transformer_sizes()], None, 0, fixed_counts={"transformer": 4})
    assert result.offloaded == {"transformer": 4} and result.budget is None and result.fits
    assert [offload_plan.percent_to_count(p, 56) for p in (0.0, 0.25, 0.5, 1.0)] == [0, 14, 28, 56]


def test_activation_estimate():
    args = dict(hidden=3072, mlp_hidden=9216, num_blocks=25, tokens=4096 + 512, batch_size=1)
    full = offload_plan.estimate_activation_bytes(**args, gradient_checkpointing=False)
    checkpointed = offload_plan.estimate_activation_bytes(**args, gradient_checkpointing=True)
    assert checkpointed < full / 5
    assert (
        offload_plan.estimate_activation_bytes(**{**args, "batch_size": 2}, gradient_checkpointing=True)
        == 2 * checkpointed
    )


@pytest.mark.parametrize("arch,low,high", [("flux2", 0.85, 1.15), ("flux", 0.6, 1.0)])
def test_activation_estimate_matches_what_autograd_saves(tiny_pipelines, arch, low, high):
    """Bytes saved for backward inside the blocks of a tiny LoRA model vs the estimate's per-block figure
    (attention's tokens x tokens matrix of the CPU math kernel left out: CUDA kernels do not keep it).
    FLUX.1's plain GELU MLP keeps less than FLUX.2's gated one, so the estimate is conservative there."""
    model = lora_model(tiny_pipelines, arch)
    blocks = transformer_blocks(model.transformer, BLOCKS)
    kwargs, tokens = transformer_inputs(model, batch=1, side=8, text_tokens=64)
    params = {p.untyped_storage().data_ptr() for p in model.transformer.parameters()}
    storages = {}

    def pack(t):
        square = t.dim() >= 2 and t.shape[-1] == t.shape[-2] == tokens
        if t.untyped_storage().data_ptr() not in params and not square:
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
        return t

    hooks = torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t)
    handles = [
        h
        for b in blocks
        for h in (
            b.register_forward_pre_hook(lambda *a, **k: hooks.__enter__()),
            b.register_forward_hook(lambda *a, **k: hooks.__exit__(None, None, None)),
        )
    ]
    model.transformer(**kwargs)
    for handle in handles:
        handle.remove()
    config = model.transformer.config
    hidden = config.num_attention_heads * config.attention_head_dim
    mlp = int(hidden * getattr(config, "mlp_ratio", 4.0))
    estimate = offload_plan.estimate_activation_bytes(
        hidden, mlp, len(blocks), tokens, 1, False, 4
    ) - offload_plan.estimate_activation_bytes(hidden, mlp, 0, tokens, 1, False, 4)  # the blocks' part
    assert low < sum(storages.values()) / estimate < high


# ============================================================================ streaming on a tiny model


@pytest.fixture(scope="module")
def tiny_pipelines(tiny):
    """arch -> the architecture's pipeline holding only the tiny transformer (what the tests run)."""
    import diffusers

    from toolkit.bench import _pipeline, bench_archs

    return {
        arch: _pipeline(
            arch, getattr(diffusers, bench_archs()[arch].transformer_class).from_pretrained(tiny(arch) / "transformer")
        )
        for arch in ("flux2", "flux")
    }


def lora_model(pipelines, arch, streamed=0, qtype=None, checkpointing=False, rank=4):
    """A model class instance around a copy of the tiny transformer, with a LoRA whose B is non-zero."""
    from toolkit.bench import _pipeline
    from toolkit.config_modules import ModelConfig
    from toolkit.network import attach_lora
    from toolkit.util.get_model import get_model_class

    config = ModelConfig(name_or_path=f"tiny:{arch}", arch=arch, dtype="fp32")
    model = get_model_class(config)(config, device="cpu")
    model.pipeline = _pipeline(arch, copy.deepcopy(pipelines[arch].transformer))
    transformer = model.transformer
    blocks = transformer_blocks(transformer, BLOCKS)
    if qtype:
        quantize_blocks(blocks, qtype)
    model.streamer = stream_blocks(transformer, blocks, streamed, torch.device("cpu")) if streamed else None
    torch.manual_seed(0)
    params = attach_lora(transformer, model.lora_targets(), rank, rank)
    with torch.no_grad():
        for name, param in transformer.named_parameters():
            if "lora_B" in name:
                param.normal_(0, 0.05)
    if checkpointing:
        transformer.enable_gradient_checkpointing()
    transformer.train()
    model.params = params
    return model


def transformer_inputs(model, batch=2, side=4, text_tokens=16):
    """Keyword arguments of the transformer for random packed latents, and the token count."""
    from toolkit.bench import bare_inputs, bench_archs, make_inputs

    resolution = side * bench_archs()[model.arch].bench.latent_factor
    latents, embeds = make_inputs(model.arch, model, batch, resolution, "cpu", torch.float32, text_tokens=text_tokens)
    kwargs = bare_inputs(model, latents, embeds)
    return kwargs, kwargs["hidden_states"].shape[1] + text_tokens


def gradients(model, kwargs):
    out = model.transformer(**kwargs)[0]
    loss = out.pow(2).mean()
    loss.backward()
    return loss.item(), {n: p.grad.clone() for n, p in model.transformer.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("arch,checkpointing", [("flux2", False), ("flux2", True), ("flux", False), ("flux", True)])
def test_streamed_blocks_give_the_same_gradients(tiny_pipelines, arch, checkpointing):
    reference = lora_model(tiny_pipelines, arch, checkpointing=checkpointing)
    kwargs, _ = transformer_inputs(reference)
    loss, grads = gradients(reference, kwargs)
    for streamed, steps in ((2, 2), (4, 1)):  # the single blocks only / every block
        model = lora_model(tiny_pipelines, arch, streamed=streamed, checkpointing=checkpointing)
        assert len(model.streamer.weights) == streamed
        for _ in range(steps):  # a second step starts from the state the first one left
            for p in model.params:
                p.grad = None
            streamed_loss, streamed_grads = gradients(model, kwargs)
            assert streamed_loss == loss and streamed_grads.keys() == grads.keys()
            for name, grad in grads.items():
                torch.testing.assert_close(streamed_grads[name], grad, rtol=0, atol=0, msg=name)
            # after backward only the first streamed block is loaded: prefetched for the next forward
            loaded = [i for i, w in model.streamer.weights.items() if w.loaded]
            assert loaded == sorted(model.streamer.weights)[:1]


def test_without_the_backward_reload_the_gradients_break(tiny_pipelines, monkeypatch):
    """The equality above is not vacuous: skip the re-load before a block's backward and NaN appears."""
    kwargs, _ = transformer_inputs(lora_model(tiny_pipelines, "flux2"))
    original_ensure, original_post = offload.BlockStreamer._ensure, offload.BlockStreamer._post_forward

    def ensure_in_forward_only(self, index):
        if not offload._in_backward():
            original_ensure(self, index)

    def always_release(self, index, output):
        original_post(self, index, output)
        self._release(index)

    monkeypatch.setattr(offload.BlockStreamer, "_ensure", ensure_in_forward_only)
    monkeypatch.setattr(offload.BlockStreamer, "_post_forward", always_release)
    _, grads = gradients(lora_model(tiny_pipelines, "flux2", streamed=2), kwargs)
    assert any(torch.isnan(g).any() for g in grads.values())


def test_streamed_weights_are_released_between_uses_and_restored_by_a_move(tiny_pipelines):
    reference = lora_model(tiny_pipelines, "flux2").transformer.state_dict()
    model = lora_model(tiny_pipelines, "flux2", streamed=3)
    kwargs, _ = transformer_inputs(model)
    with torch.no_grad():
        out = model.transformer(**kwargs)[0]
    assert torch.isfinite(out).all()
    released = [b for i, b in enumerate(transformer_blocks(model.transformer, BLOCKS)) if i in model.streamer.weights]
    assert len(released) == 3
    assert all(torch.isnan(p).all() for b in released for n, p in b.named_parameters() if "lora_" not in n)
    model.transformer.to("cpu")  # ends streaming block by block (what parking a text encoder on the CPU does)
    assert not model.streamer.weights and "_apply" not in vars(model.transformer)
    state = model.transformer.state_dict()
    assert state.keys() == reference.keys()
    for key, value in reference.items():
        torch.testing.assert_close(state[key], value, rtol=0, atol=0, msg=key)


def test_trainable_weights_cannot_be_streamed(tiny_pipelines):
    model = lora_model(tiny_pipelines, "flux2", streamed=1)
    block = transformer_blocks(model.transformer, BLOCKS)[-1]
    next(p for n, p in block.named_parameters() if "lora_" not in n).requires_grad_(True)
    kwargs, _ = transformer_inputs(model)
    with pytest.raises(OffloadError, match="trainable"):
        model.transformer(**kwargs)


@pytest.mark.parametrize("qtype", ["qfloat8", "qint8", "qint4"])
def test_a_quantized_streamed_model_trains(tiny_pipelines, qtype):
    """Equal gradients with and without streaming on quanto weights, and the loss falls.
    qint4 may build a quanto CPU kernel on first use; the test reports its time."""
    started = time.perf_counter()
    reference = lora_model(tiny_pipelines, "flux2", qtype=qtype)
    model = lora_model(tiny_pipelines, "flux2", streamed=2, qtype=qtype)
    assert offload.module_nbytes(transformer_blocks(model.transformer, BLOCKS)[0]) == pytest.approx(
        quantized_nbytes(transformer_blocks(tiny_pipelines["flux2"].transformer, BLOCKS)[0], qtype), rel=0.01
    )
    kwargs, _ = transformer_inputs(model)
    _, grads = gradients(reference, kwargs)
    _, streamed_grads = gradients(model, kwargs)
    for name, grad in grads.items():
        torch.testing.assert_close(streamed_grads[name], grad, rtol=0, atol=0, msg=name)
    target = torch.randn_like(model.transformer(**kwargs)[0])
    optimizer = torch.optim.AdamW(model.params, lr=5e-2)
    losses = []
    for _ in range(4):
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.mse_loss(model.transformer(**kwargs)[0], target)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] - 1e-3, losses
    print(f"{qtype}: {time.perf_counter() - started:.1f} s")


# ============================================================================ the model classes


def test_layer_offloading_options_are_accepted_and_contradictions_rejected():
    from toolkit.config_modules import ModelConfig
    from toolkit.validate import model_option_problems

    def problems(**kwargs):
        return model_option_problems(ModelConfig(name_or_path="x", arch="flux2", **kwargs), "model")

    assert problems(layer_offloading=True) == [] and problems(layer_offloading="auto", vram_budget_gb=20) == []
    assert problems(vram_budget_gb=12) == []
    assert "layer_offloading: auto" in problems(layer_offloading=True, vram_budget_gb=20)[0][1]


def test_training_shape_from_a_job_config(tmp_path):
    from tests.jobs.train_helpers import train_process
    from toolkit.config_modules import TrainProcessConfig
    from toolkit.models.offload_plan import TrainingShape

    process = train_process(tmp_path, train={"optimizer": "prodigy", "gradient_checkpointing": True})
    process["datasets"][0]["resolution"] = [512, 768]
    shape = TrainingShape.from_process_config(TrainProcessConfig.model_validate(process))
    assert shape == TrainingShape(
        resolution=768,
        batch_size=2,
        gradient_checkpointing=True,
        lora_rank=4,
        optimizer_state_bytes_per_param=16,
        text_encoder_in_training=False,
        bytes_per_activation=4,
    )


def test_reference_images_enlarge_the_planned_activations(tmp_path):
    """Edit training: references add image tokens, so the planner must count them (at the model's cap
    per reference, or at the target's bucket with match_target_res)."""
    from tests.jobs.train_helpers import train_process
    from toolkit.bench import meta_transformer
    from toolkit.config_modules import TrainProcessConfig
    from toolkit.models.offload_plan import TrainingShape, transformer_activation_bytes

    def shape(**dataset):
        process = train_process(tmp_path)
        process["datasets"][0].update({"resolution": [512], **dataset})
        return TrainingShape.from_process_config(TrainProcessConfig.model_validate(process), 1024 * 1024)

    assert shape().reference_pixels == 0
    two_refs = shape(control_path=[str(tmp_path / "a"), str(tmp_path / "b")])
    assert two_refs.reference_pixels == 2 * 1024 * 1024
    assert shape(control_path=str(tmp_path / "a"), match_target_res=True).reference_pixels == 512 * 512
    transformer = meta_transformer("flux2")
    blocks = 56
    plain = transformer_activation_bytes(transformer, blocks, shape(), 16)
    edit = transformer_activation_bytes(transformer, blocks, two_refs, 16)
    # 512 px target: 1024 image + 512 text tokens; two 1024 px references add 8192 image tokens
    assert edit / plain == pytest.approx((1024 + 8192 + 512) / (1024 + 512), rel=0.01)


def load_tiny(arch, **options):
    from toolkit.config_modules import ModelConfig
    from toolkit.util.get_model import get_model_class

    config = ModelConfig(name_or_path=f"tiny:{arch}", arch=arch, dtype="fp32", **options)
    model = get_model_class(config)(config, device="cpu")
    model.load_model()
    return model


def prediction(model):
    generator = torch.Generator().manual_seed(0)
    channels, factor = (128, 16) if model.is_flux2 else (16, 8)
    latents = torch.randn(1, channels, 64 // factor, 64 // factor, generator=generator)
    embeds = model.encode_prompt(["a red fox"])
    with torch.no_grad():
        return embeds, model.get_noise_prediction(latents, torch.tensor([400.0]), embeds)


@pytest.mark.parametrize("arch", ["flux2", "flux"])
def test_place_on_device_streams_the_configured_percentages(arch):
    plain = load_tiny(arch)
    streamed = load_tiny(
        arch,
        layer_offloading=True,
        layer_offloading_transformer_percent=0.5,
        layer_offloading_text_encoder_percent=0.25,
    )
    counts = {name: len(s.weights) for name, s in streamed.block_streamers.items()}
    expected = {
        name: offload_plan.percent_to_count(0.25, len(streamed.offload_blocks(name)))
        for name in streamed.text_encoder_names()
    }
    assert counts == {"transformer": 2, **expected} and all(expected.values())
    (embeds, pred), (streamed_embeds, streamed_pred) = prediction(plain), prediction(streamed)
    for key in embeds.tensors:
        torch.testing.assert_close(streamed_embeds[key], embeds[key], rtol=0, atol=0)
    torch.testing.assert_close(streamed_pred, pred, rtol=0, atol=0)
    low_vram = load_tiny(arch, layer_offloading=True, low_vram=True)
    assert set(low_vram.block_streamers) == {"transformer"}  # text encoders stay on the CPU, unstreamed


def test_a_vram_budget_plans_from_measured_sizes(monkeypatch, caplog):
    import logging

    from toolkit.config_modules import ModelConfig
    from toolkit.models.offload_plan import TrainingShape
    from toolkit.util.get_model import get_model_class

    monkeypatch.setattr(offload_plan, "HEADROOM_BYTES", 0)
    shape = TrainingShape(resolution=64, lora_rank=4, text_encoder_in_training=False, bytes_per_activation=4)

    def model(**options):
        config = ModelConfig(name_or_path="tiny:flux2", arch="flux2", dtype="fp32", **options)
        from toolkit.models.base_model import LoadOptions

        return get_model_class(config)(config, device="cpu", options=LoadOptions(training_shape=shape))

    assert load_tiny("flux2", vram_budget_gb=1.0).block_streamers == {}  # fits: nothing streamed
    probe = model(
        layer_offloading=True, layer_offloading_transformer_percent=0.0, layer_offloading_text_encoder_percent=0.0
    )
    probe.load_model()
    unstreamed = offload_plan.plan_model_offload(probe, ["vae", "text_encoder", "transformer"]).predicted_peak
    tight = model(vram_budget_gb=(unstreamed - 1) / GiB)
    with caplog.at_level(logging.INFO, logger="toolkit.models.offload_plan"):
        tight.load_model()
    assert tight.block_streamers and "predicted peak" in caplog.text
    with pytest.raises(OffloadError, match="quantize"):
        model(layer_offloading="auto", vram_budget_gb=1e-6).load_model()


def test_training_with_layer_offloading_gives_the_same_lora(tmp_path):
    """The trainer end to end on the CPU (FLUX.1: two text encoders): streaming every transformer block and half
    of each text encoder's layers (which the trainer parks on the CPU once the captions are cached, ending
    their streaming) changes nothing."""
    from safetensors.torch import load_file

    import run
    from tests.jobs.train_helpers import train_process, write_job

    loras = {}
    cases = {"plain": {}, "streamed": {"layer_offloading": True, "layer_offloading_text_encoder_percent": 0.5}}
    for name, model in cases.items():
        folder = tmp_path / name
        process = train_process(
            folder, arch="flux", steps=2, model=model, save={"save_every": 10}, train={"disable_sampling": True}
        )
        assert run.main([str(write_job(folder, process))]) == 0
        loras[name] = load_file(str(folder / "output" / "tiny_lora" / "tiny_lora.safetensors"))
    for key, value in loras["plain"].items():
        torch.testing.assert_close(loras["streamed"][key], value, rtol=0, atol=0, msg=key)


def test_a_dropped_streamed_module_is_freed_at_once(tiny_pipelines):
    """No reference cycle through the hooks: dropping a streamed text encoder (unload_text_encoder) frees its
    device memory immediately, not at some later garbage collection."""
    import gc
    import weakref

    transformer = copy.deepcopy(tiny_pipelines["flux2"].transformer)
    streamer = stream_blocks(transformer, transformer_blocks(transformer, BLOCKS), 3, torch.device("cpu"))
    refs = [weakref.ref(transformer), weakref.ref(streamer), weakref.ref(transformer_blocks(transformer, BLOCKS)[-1])]
    gc.collect()
    gc.disable()
    try:
        del transformer, streamer
        assert [r() for r in refs] == [None, None, None]
    finally:
        gc.enable()
