"""The tiny pipelines: real diffusers / transformers classes with tiny sizes and random weights (see the
package docstring for what differs from the releases on purpose)."""

from __future__ import annotations

from toolkit.tiny.specs import HEAD_DIM, NUM_DOUBLE_BLOCKS, NUM_SINGLE_BLOCKS, TinySpec, tiny_spec
from toolkit.tiny.tokenizer import clip_tokenizer, mistral_tokenizer, qwen_tokenizer, t5_tokenizer


# -------------------------------------------------------------------------------------- text encoders


def _vocab_rows(tokenizer) -> int:
    """Embedding rows: the tokenizer's ids rounded up to a multiple of 64 (real models pad theirs too)."""
    return -(-len(tokenizer) // 64) * 64


def _mistral3(tokenizer, hidden: int):
    from transformers import Mistral3Config, Mistral3ForConditionalGeneration, MistralConfig, PixtralVisionConfig

    text = MistralConfig(
        vocab_size=_vocab_rows(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=31,  # Flux2Pipeline stacks hidden states 10, 20 and 30
        num_attention_heads=hidden // HEAD_DIM,
        num_key_value_heads=1,
        head_dim=HEAD_DIM,
        max_position_embeddings=2048,
        rms_norm_eps=1e-5,
        sliding_window=None,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    vision = PixtralVisionConfig(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=1,
        num_attention_heads=2,
        head_dim=HEAD_DIM,
        image_size=64,
        patch_size=16,
    )
    config = Mistral3Config(
        text_config=text,
        vision_config=vision,
        spatial_merge_size=2,
        image_token_index=tokenizer.convert_tokens_to_ids("[IMG]"),
    )
    return Mistral3ForConditionalGeneration(config)


def _qwen3(tokenizer, hidden: int):
    from transformers import Qwen3Config, Qwen3ForCausalLM

    config = Qwen3Config(
        vocab_size=_vocab_rows(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=28,  # Flux2KleinPipeline stacks hidden states 9, 18 and 27
        num_attention_heads=hidden // HEAD_DIM,
        num_key_value_heads=1,
        head_dim=HEAD_DIM,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        pad_token_id=tokenizer.pad_token_id,
    )
    return Qwen3ForCausalLM(config)


def _clip(tokenizer, hidden: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    config = CLIPTextConfig(
        vocab_size=_vocab_rows(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        projection_dim=hidden,
        num_hidden_layers=2,
        num_attention_heads=hidden // HEAD_DIM,
        max_position_embeddings=77,
        hidden_act="quick_gelu",
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    return CLIPTextModel(config)


def _t5(tokenizer, hidden: int):
    from transformers import T5Config, T5EncoderModel

    config = T5Config(
        vocab_size=_vocab_rows(tokenizer),
        d_model=hidden,
        d_kv=HEAD_DIM,
        d_ff=2 * hidden,
        num_layers=2,
        num_heads=hidden // HEAD_DIM,
        relative_attention_num_buckets=32,
        feed_forward_proj="gated-gelu",
        pad_token_id=tokenizer.pad_token_id,
        eos_token_id=tokenizer.eos_token_id,
        decoder_start_token_id=0,
    )
    return T5EncoderModel(config)


# ------------------------------------------------------------------------------ transformer and VAE


def _flux2_transformer(spec: TinySpec):
    from diffusers import Flux2Transformer2DModel

    return Flux2Transformer2DModel(
        patch_size=1,
        in_channels=128,  # 4 * VAE latent channels (2x2 patchified latents)
        num_layers=NUM_DOUBLE_BLOCKS,
        num_single_layers=NUM_SINGLE_BLOCKS,
        attention_head_dim=HEAD_DIM,
        num_attention_heads=spec.heads,
        joint_attention_dim=3 * spec.text_hidden,  # three stacked text-encoder layers
        timestep_guidance_channels=256,
        mlp_ratio=3.0,
        axes_dims_rope=(4, 4, 4, 4),
        rope_theta=2000,
        guidance_embeds=spec.guidance_embeds,
    )


def _flux_transformer(spec: TinySpec):
    from diffusers import FluxTransformer2DModel

    return FluxTransformer2DModel(
        patch_size=1,
        in_channels=64,  # 4 * 16 latent channels
        num_layers=NUM_DOUBLE_BLOCKS,
        num_single_layers=NUM_SINGLE_BLOCKS,
        attention_head_dim=HEAD_DIM,
        num_attention_heads=spec.heads,
        joint_attention_dim=spec.text_hidden,
        pooled_projection_dim=spec.text_hidden,
        guidance_embeds=spec.guidance_embeds,
        axes_dims_rope=(4, 6, 6),
    )


_VAE_BLOCKS = {
    # vae_scale_factor 2 and the pipelines' 2x2 packing: 64 px -> 32x32 latents -> 16x16 tokens
    "block_out_channels": (32, 32),
    "down_block_types": ("DownEncoderBlock2D",) * 2,
    "up_block_types": ("UpDecoderBlock2D",) * 2,
    "layers_per_block": 1,
    "norm_num_groups": 16,
    "sample_size": 64,
}


def _flux2_vae():
    import torch
    from diffusers import AutoencoderKLFlux2

    vae = AutoencoderKLFlux2(**_VAE_BLOCKS, latent_channels=32)
    # Random, clearly non-identity latent statistics so that the normalisation is exercised.
    vae.bn.running_mean.copy_(torch.randn_like(vae.bn.running_mean) * 0.5)
    vae.bn.running_var.copy_(torch.rand_like(vae.bn.running_var) * 1.5 + 0.25)
    return vae


def _flux_vae():
    from diffusers import AutoencoderKL

    return AutoencoderKL(
        **_VAE_BLOCKS,
        latent_channels=16,
        use_quant_conv=False,
        use_post_quant_conv=False,
        scaling_factor=0.3611,
        shift_factor=0.1159,
    )


def _randomize_constant_params(module) -> None:
    """Perturb parameters that init leaves constant (norm weights, zero biases); see the package docstring."""
    import torch

    with torch.no_grad():
        for param in module.parameters():
            flat = param.flatten()
            if flat.numel() > 1 and bool((flat == flat[0]).all()):
                param.add_(torch.randn_like(param) * 0.1)


# ---------------------------------------------------------------------------------------- pipelines


def build_tiny_pipeline(arch: str, seed: int = 0):
    """A diffusers pipeline (FluxPipeline, Flux2Pipeline or Flux2KleinPipeline) with tiny random fp32 weights.

    Deterministic in ``seed``; the global torch RNG is left as it was.
    """
    import torch

    spec = tiny_spec(arch)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        if spec.family == "flux":
            return _build_flux(spec)
        return _build_flux2(spec)


def _build_flux2(spec: TinySpec):
    from diffusers import FlowMatchEulerDiscreteScheduler, Flux2KleinPipeline, Flux2Pipeline

    transformer = _flux2_transformer(spec)
    _randomize_constant_params(transformer)
    vae = _flux2_vae()
    _randomize_constant_params(vae)
    scheduler = FlowMatchEulerDiscreteScheduler(**spec.scheduler)
    if spec.text_encoder == "mistral3":
        tokenizer = mistral_tokenizer()
        text_encoder = _mistral3(tokenizer, spec.text_hidden)
        return Flux2Pipeline(
            scheduler=scheduler,
            vae=vae,
            text_encoder=text_encoder.eval(),
            tokenizer=tokenizer,
            transformer=transformer,
        )
    tokenizer = qwen_tokenizer()
    text_encoder = _qwen3(tokenizer, spec.text_hidden)
    return Flux2KleinPipeline(
        scheduler=scheduler,
        vae=vae,
        text_encoder=text_encoder.eval(),
        tokenizer=tokenizer,
        transformer=transformer,
        is_distilled=False,  # the trainable "base" releases
    )


def _build_flux(spec: TinySpec):
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline

    transformer = _flux_transformer(spec)
    _randomize_constant_params(transformer)
    vae = _flux_vae()
    _randomize_constant_params(vae)
    clip_tok, t5_tok = clip_tokenizer(), t5_tokenizer()
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**spec.scheduler),
        vae=vae,
        text_encoder=_clip(clip_tok, spec.text_hidden).eval(),
        tokenizer=clip_tok,
        text_encoder_2=_t5(t5_tok, spec.text_hidden).eval(),
        tokenizer_2=t5_tok,
        transformer=transformer,
    )
