"""FLUX.2 family declarations (no torch): dev (Mistral3 text encoder, guidance-distilled) and
klein-base 4B / 9B (Qwen3 text encoder, no guidance embedding, real CFG at sampling).

Reference limits (docs.bfl.ai, "Prompting: editing overview", reference images per model): FLUX.2 [dev]
takes up to 10 (the family's limit; BFL recommends at most 6 for dev), klein 4B / 9B up to 4. Each
reference is capped at 1024x1024 pixels, as diffusers' Flux2 pipelines do.

Benchmark shapes: diffusers' class defaults are FLUX.2-dev; klein from the `Klein4BParams` /
`Klein9BParams` of kohya-ss/musubi-tuner `src/musubi_tuner/flux_2/flux2_models.py` (joint_attention_dim
is 3 stacked hidden states of Qwen3-4B (2560) / Qwen3-8B (4096)).
"""

import dataclasses

from toolkit.arch import ArchSpec, BenchShape, ModelCapabilities, Release, SamplingDefaults, TinyShape

_MODULE = "extensions_built_in.diffusion_models.flux2.flux2_model"
# FlowMatchEulerDiscreteScheduler config as in the releases' scheduler/scheduler_config.json.
_SCHEDULER = {
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "max_image_seq_len": 4096,
    "max_shift": 1.15,
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
    "time_shift_type": "exponential",
    "invert_sigmas": False,
    "shift_terminal": None,
    "stochastic_sampling": False,
    "use_beta_sigmas": False,
    "use_exponential_sigmas": False,
    "use_karras_sigmas": False,
}
_BLOCKS = ("transformer_blocks", "single_transformer_blocks")
# dev samples with its distilled guidance, klein-base (neither guidance- nor step-distilled) with real CFG:
# both at guidance 4 in 50 steps.
_SAMPLING = SamplingDefaults(guidance_scale=4.0, sample_steps=50)


def _bench(
    num_layers: int, num_single_layers: int, num_attention_heads: int, joint_attention_dim: int, guidance_embeds: bool
) -> BenchShape:
    """A FLUX.2 transformer's configuration: every size has 128-dim heads, an MLP ratio of 3 and 128 input
    channels (32 VAE latent channels in 2x2 patches)."""
    return BenchShape(
        dict(
            num_layers=num_layers,
            num_single_layers=num_single_layers,
            num_attention_heads=num_attention_heads,
            attention_head_dim=128,
            joint_attention_dim=joint_attention_dim,
            mlp_ratio=3.0,
            in_channels=128,
            guidance_embeds=guidance_embeds,
        )
    )


FLUX2_DEV = ArchSpec(
    arch="flux2",
    label="FLUX.2-dev",
    family="flux2",
    size_label="32B transformer",
    model_class=f"{_MODULE}:Flux2Model",
    pipeline="Flux2Pipeline",
    transformer_class="Flux2Transformer2DModel",
    text_encoder="Mistral3ForConditionalGeneration",
    text_encoder_label="Mistral-Small-3.1 24B",
    tokenizer="AutoProcessor",
    hidden_state_layers=(10, 20, 30),
    releases=(Release("dev", "black-forest-labs/FLUX.2-dev", "flux2-dev.safetensors", True, _SAMPLING, _SCHEDULER),),
    capabilities=ModelCapabilities(
        bucket_divisibility=16,
        guidance_distilled=True,
        real_cfg=False,
        max_reference_images=10,
        lokr=True,
        reference_training=True,
        reference_max_pixels=1024 * 1024,
        default_timestep_type="shift",
    ),
    lora_family="flux2",
    transformer_blocks=_BLOCKS,
    text_encoder_layers=(("text_encoder", ("model.language_model.layers",)),),
    tiny=TinyShape("flux2", "mistral3", 32, 2),
    bench=_bench(
        num_layers=8, num_single_layers=48, num_attention_heads=48, joint_attention_dim=15360, guidance_embeds=True
    ),
)

# The family's transformer class, block lists, LoRA key layout and capabilities (but guidance and the
# reference limit) are dev's; the text encoder, releases and sizes are klein's own.
FLUX2_KLEIN_4B = dataclasses.replace(
    FLUX2_DEV,
    arch="flux2_klein_4b",
    label="FLUX.2-klein-base 4B",
    size_label="",  # the label says the size
    model_class=f"{_MODULE}:Flux2Klein4BModel",
    pipeline="Flux2KleinPipeline",
    text_encoder="Qwen3ForCausalLM",
    text_encoder_label="Qwen3 4B",
    tokenizer="AutoTokenizer",
    hidden_state_layers=(9, 18, 27),
    releases=(
        Release(
            "base",
            "black-forest-labs/FLUX.2-klein-base-4B",
            "flux-2-klein-base-4b.safetensors",
            False,
            _SAMPLING,
            _SCHEDULER,
        ),
    ),
    capabilities=dataclasses.replace(
        FLUX2_DEV.capabilities, guidance_distilled=False, real_cfg=True, max_reference_images=4
    ),
    text_encoder_layers=(("text_encoder", ("model.layers",)),),
    tiny=TinyShape("flux2", "qwen3", 32, 2, {"tokenizer": ["transformers", "Qwen2TokenizerFast"]}),
    bench=_bench(
        num_layers=5, num_single_layers=20, num_attention_heads=24, joint_attention_dim=7680, guidance_embeds=False
    ),
)

FLUX2_KLEIN_9B = dataclasses.replace(
    FLUX2_KLEIN_4B,
    arch="flux2_klein_9b",
    label="FLUX.2-klein-base 9B",
    model_class=f"{_MODULE}:Flux2Klein9BModel",
    text_encoder_label="Qwen3 8B",
    releases=(
        dataclasses.replace(
            FLUX2_KLEIN_4B.releases[0],
            official_repo="black-forest-labs/FLUX.2-klein-base-9B",
            single_file_name="flux-2-klein-base-9b.safetensors",
        ),
    ),
    # A little wider than 4b so that tests can tell the two apart by shape.
    tiny=dataclasses.replace(FLUX2_KLEIN_4B.tiny, text_hidden=48, heads=3),
    bench=_bench(
        num_layers=8, num_single_layers=24, num_attention_heads=32, joint_attention_dim=12288, guidance_embeds=False
    ),
)

ARCHS = [FLUX2_DEV, FLUX2_KLEIN_4B, FLUX2_KLEIN_9B]
