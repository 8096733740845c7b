"""FLUX.1 (`arch: flux`): the declaration of toolkit/stable_diffusion_model.py's `StableDiffusion` (no torch).

dev and schnell share the architecture and the arch id; the loaded weights tell them apart
(schnell's transformer has no guidance embedding) and pick the release's sampling defaults.
"""

from toolkit.arch import ArchSpec, BenchShape, ModelCapabilities, Release, SamplingDefaults, TinyShape

# FlowMatchEulerDiscreteScheduler configs as in the releases' scheduler/scheduler_config.json.
_DEV_SCHEDULER = {
    "base_image_seq_len": 256,
    "base_shift": 0.5,
    "max_image_seq_len": 4096,
    "max_shift": 1.15,
    "num_train_timesteps": 1000,
    "shift": 3.0,
    "use_dynamic_shifting": True,
}
_SCHNELL_SCHEDULER = {**_DEV_SCHEDULER, "shift": 1.0, "use_dynamic_shifting": False}

FLUX1 = ArchSpec(
    arch="flux",
    label="FLUX.1-dev / FLUX.1-schnell",
    family="flux",
    size_label="12B",
    model_class="toolkit.stable_diffusion_model:StableDiffusion",
    pipeline="FluxPipeline",
    transformer_class="FluxTransformer2DModel",
    text_encoder="T5EncoderModel",
    text_encoder_label="CLIP-L + T5-XXL",
    tokenizer="T5TokenizerFast",
    hidden_state_layers=(),
    releases=(
        Release(
            "dev",
            "black-forest-labs/FLUX.1-dev",
            "flux1-dev.safetensors",
            True,
            SamplingDefaults(guidance_scale=3.5, sample_steps=28),
            _DEV_SCHEDULER,
        ),
        # schnell is step- and guidance-distilled: 4 steps, no guidance.
        Release(
            "schnell",
            "black-forest-labs/FLUX.1-schnell",
            "flux1-schnell.safetensors",
            False,
            SamplingDefaults(guidance_scale=0.0, sample_steps=4),
            _SCHNELL_SCHEDULER,
        ),
    ),
    capabilities=ModelCapabilities(
        bucket_divisibility=16,
        guidance_distilled=True,
        real_cfg=False,
        max_reference_images=0,
        default_timestep_type="sigmoid",
    ),
    lora_family="flux",
    transformer_blocks=("transformer_blocks", "single_transformer_blocks"),
    # transformers 5 has no `text_model` level in CLIPTextModel any more; 4.x has.
    text_encoder_layers=(
        ("text_encoder", ("encoder.layers", "text_model.encoder.layers")),
        ("text_encoder_2", ("encoder.block",)),
    ),
    tiny=TinyShape("flux", "clip_t5", 32, 2, {"tokenizer_2": ["transformers", "T5TokenizerFast"]}),
    # Black Forest Labs' `flux` repository, FluxParams of flux-dev.
    bench=BenchShape(
        dict(
            num_layers=19,
            num_single_layers=38,
            num_attention_heads=24,
            attention_head_dim=128,
            joint_attention_dim=4096,
            pooled_projection_dim=768,
            in_channels=64,
            guidance_embeds=True,
            axes_dims_rope=(16, 56, 56),
        ),
        latent_channels=16,
        latent_factor=8,
        pooled_dim=768,
    ),
)
