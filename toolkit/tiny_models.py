"""Tiny random FLUX.1 / FLUX.2 models in the real on-disk layouts, for tests and the offline demo.

Every component is the real class (``Flux2Transformer2DModel``, ``AutoencoderKLFlux2``,
``Mistral3ForConditionalGeneration``, ``Qwen3ForCausalLM``, CLIP + T5, ...) with tiny sizes, so the
diffusers pipelines run unchanged: 64x64 images in a few steps take well under a second on CPU. Tokenizers
are real fast tokenizers (byte-level BPE for Mistral, Qwen and CLIP, unigram for T5) whose vocabularies are
built deterministically from a small built-in text, with the chat templates the pipelines call. Nothing is
downloaded.

Layouts written:

* ``diffusers``: ``pipe.save_pretrained`` (``model_index.json``, ``transformer/``, ``vae/``, ``text_encoder/``,
  ``tokenizer/``, ``scheduler/``; FLUX.1 adds ``text_encoder_2/`` and ``tokenizer_2/``).
* ``single_file``: Black Forest Labs' files: the transformer under its release name (``flux2-dev.safetensors``,
  ``flux-2-klein-base-4b.safetensors``, ``flux1-dev.safetensors``...) and ``ae.safetensors``, BFL/LDM key
  names without prefix, fp32 so that parity with the diffusers folder is exact.
* a huggingface_hub cache (``models--org--name/snapshots/<commit>/``) holding both, as BFL's hub repos do.

The same ``(arch, seed)`` gives the same weights in every layout.

Deviations from the real releases, on purpose:

* FLUX.2-dev's ``model_index.json`` declares its tokenizer as ``TokenizersBackend`` (a fast tokenizer with
  the Mistral chat template) rather than the release's ``PixtralProcessor``: transformers' PixtralProcessor
  requires torchvision, which this project does not depend on, and without it diffusers cannot load a
  folder that names it (not even with ``tokenizer=`` passed in). The pipeline's text path only calls
  ``tokenizer.apply_chat_template``, which the fast tokenizer provides with the same arguments.
* Parameters that the default init leaves constant (norm weights of 1, zero biases) are randomised in the
  transformer and the VAE, and the VAE's batch-norm statistics are random, so that a swapped or dropped
  key changes the outputs.

CLI: ``python -m toolkit.tiny_models --arch flux2 --layout diffusers --out DIR``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import shutil
import string
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

logger = logging.getLogger(__name__)

LAYOUTS = ("diffusers", "single_file")
COMPLETE_MARKER = ".tiny_complete"


@dataclass(frozen=True)
class TinySpec:
    """One tiny model, derived from its architecture's declaration (`toolkit.arch.ArchSpec.tiny`) and
    release: sizes and release facts as data, not branches."""

    family: str  # tiny builder: "flux2" (Mistral or Qwen3 text encoder) or "flux" (CLIP + T5)
    transformer_file: str  # BFL release file name of the transformer
    guidance_embeds: bool
    text_encoder: str  # "mistral3", "qwen3" or "clip_t5"
    text_hidden: int  # hidden size of the (main) text encoder
    heads: int  # transformer attention heads of 16 dims each
    scheduler: dict = field(default_factory=dict)
    # model_index.json entries that the real release spells differently from what save_pretrained writes
    model_index_names: dict = field(default_factory=dict)


def tiny_specs() -> dict[str, TinySpec]:
    """``tiny:<id>`` -> its TinySpec, for every declared architecture with a tiny shape (extensions too):
    ``<arch>`` for the default release, ``<arch>-<release>`` for the others (``flux-schnell``)."""
    from toolkit.arch_registry import arch_registry

    specs = {}
    for arch in arch_registry().values():
        for tiny_id, release in arch.tiny_ids():
            shape = arch.tiny
            specs[tiny_id] = TinySpec(
                shape.builder,
                release.single_file_name,
                release.guidance_embeds,
                shape.text_encoder,
                shape.text_hidden,
                shape.heads,
                dict(release.scheduler),
                dict(shape.model_index_names),
            )
    return specs


SPECS: dict[str, TinySpec] = tiny_specs()
TINY_IDS: tuple[str, ...] = tuple(SPECS)

HEAD_DIM = 16  # every width below is a multiple of 16: optimum-quanto's CPU kernels need it
NUM_DOUBLE_BLOCKS = 2  # two of each so that block-index mix-ups in conversions show
NUM_SINGLE_BLOCKS = 2


def _spec(tiny_id: str) -> TinySpec:
    if tiny_id not in SPECS:
        raise ValueError(
            f"unknown tiny model '{tiny_id}' (an arch, or <arch>-<release>); expected one of {', '.join(TINY_IDS)}"
        )
    return SPECS[tiny_id]


# ----------------------------------------------------------------------------------------- tokenizers

_WORDS = """
a an the photo photograph picture image painting drawing sketch render illustration portrait landscape
of in on at with and or under over near behind beside between through across above below inside outside
cat dog bird horse fox owl fish woman man girl boy child person people crowd robot dragon castle house
tree flower forest mountain river lake sea ocean beach desert field garden city street road bridge car
train boat ship plane sky sun moon star cloud rain snow fog storm light shadow fire water ice stone wood
red green blue yellow black white orange purple pink brown gray golden silver bright dark pale vivid
old young small large tiny huge tall short long soft hard warm cold wet dry happy sad calm quiet loud
beautiful detailed realistic photorealistic cinematic dramatic moody colorful minimal abstract surreal
studio lighting sunset sunrise night morning evening golden hour film grain sharp focus bokeh depth field
close up wide angle shot view top side front back left right center background foreground texture style
standing sitting running walking flying swimming holding wearing looking smiling reading playing sleeping
hat coat dress shirt glasses scarf boots jacket umbrella book cup table chair window door wall floor
sign text reads says hello world trigger token word letter number one two three four five ten hundred
you are an AI that describes images in detail creative system prompt user assistant instruction answer
""".split()
_PUNCT = list(".,!?;:'\"-()[]/&%$#@*+=<>_~0123456789")


def _corpus() -> list[str]:
    """A few hundred deterministic lines built from the word list above."""
    lines = [" ".join(_WORDS[i : i + 9]) for i in range(0, len(_WORDS), 3)]
    lines += [f"{a} {b}{p} {c}" for a, b, c, p in zip(_WORDS, _WORDS[7:], _WORDS[13:], _PUNCT * 20)]
    lines += [" ".join(_PUNCT), "".join(_PUNCT)]
    return lines


def _pieces(pre_tokenizer, lower: bool = False) -> list[str]:
    """The corpus's distinct pre-tokenized pieces, sorted."""
    return sorted({p for line in _corpus() for p, _ in pre_tokenizer.pre_tokenize_str(line.lower() if lower else line)})


def _prefix_bpe(pieces: list[str], specials: list[str], suffix: str = "") -> tuple[dict[str, int], list]:
    """Byte-level BPE vocab and merges built from the corpus pieces, without training.

    tokenizers' BPE trainer breaks ties between equally frequent pairs in hash-map order, which changes
    from one process to the next; a tokenizer that differs between processes would make a folder saved by
    one process disagree with the same seed built in another. So the merges are fixed instead: each piece
    left to right (``Ġ``+``p`` -> ``Ġp``, ``Ġp``+``h`` -> ``Ġph``...), pieces in sorted order. Pieces do not
    always end up as one token (an earlier merge may take a pair first), which only makes sequences a bit
    longer; every byte is in the vocabulary, so no text is unknown. ``suffix`` marks the last symbol of a
    word (CLIP's ``</w>``).
    """
    from tokenizers import pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {token: i for i, token in enumerate(specials)}
    for symbol in alphabet + ([c + suffix for c in alphabet] if suffix else []):
        vocab.setdefault(symbol, len(vocab))
    merges = []
    for piece in pieces:
        symbols = list(piece)
        symbols[-1] += suffix
        current = symbols[0]
        for symbol in symbols[1:]:
            if current + symbol not in vocab:
                merges.append((current, symbol))
                vocab[current + symbol] = len(vocab)
            current += symbol
    return vocab, merges


# Mistral's (tekken) first ids, in the release order; the processor and the model refer to [IMG] = 10.
_MISTRAL_SPECIALS = [
    "<unk>",
    "<s>",
    "</s>",
    "[INST]",
    "[/INST]",
    "[AVAILABLE_TOOLS]",
    "[/AVAILABLE_TOOLS]",
    "[TOOL_RESULTS]",
    "[/TOOL_RESULTS]",
    "[TOOL_CALLS]",
    "[IMG]",
    "<pad>",
    "[IMG_BREAK]",
    "[IMG_END]",
    "[PREFIX]",
    "[MIDDLE]",
    "[SUFFIX]",
    "[SYSTEM_PROMPT]",
    "[/SYSTEM_PROMPT]",
    "[TOOL_CONTENT]",
]
# Renders Flux2Pipeline's messages: content is a string or a list of {"type": "text"|"image", ...}.
_MISTRAL_CHAT_TEMPLATE = (
    "{{- bos_token }}"
    "{%- for message in messages %}"
    "{%- if message['content'] is string %}{%- set text = message['content'] %}"
    "{%- else %}{%- set ns = namespace(text='') %}{%- for part in message['content'] %}"
    "{%- if part['type'] == 'text' %}{%- set ns.text = ns.text + part['text'] %}"
    "{%- elif part['type'] == 'image' %}{%- set ns.text = ns.text + '[IMG]' %}{%- endif %}"
    "{%- endfor %}{%- set text = ns.text %}{%- endif %}"
    "{%- if message['role'] == 'system' %}{{- '[SYSTEM_PROMPT]' + text + '[/SYSTEM_PROMPT]' }}"
    "{%- elif message['role'] == 'user' %}{{- '[INST]' + text + '[/INST]' }}"
    "{%- elif message['role'] == 'assistant' %}{{- text + eos_token }}"
    "{%- endif %}{%- endfor %}"
)
# Qwen3's template, reduced to what Flux2KleinPipeline uses (user turns, generation prompt, no thinking).
_QWEN3_CHAT_TEMPLATE = (
    "{%- for message in messages %}"
    "{{- '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>\\n' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}"
    "{%- if enable_thinking is defined and enable_thinking is false %}{{- '<think>\\n\\n</think>\\n\\n' }}{%- endif %}"
    "{%- endif %}"
)


def _mistral_tokenizer():
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import TokenizersBackend

    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False)
    vocab, merges = _prefix_bpe(_pieces(byte_level), _MISTRAL_SPECIALS)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tok.pre_tokenizer = byte_level
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in _MISTRAL_SPECIALS])
    tokenizer = TokenizersBackend(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        padding_side="left",
        model_max_length=131072,
    )
    tokenizer.chat_template = _MISTRAL_CHAT_TEMPLATE
    return tokenizer


def _qwen_tokenizer():
    from tokenizers import pre_tokenizers
    from transformers import Qwen2TokenizerFast

    vocab, merges = _prefix_bpe(_pieces(pre_tokenizers.ByteLevel(add_prefix_space=False)), ["<|endoftext|>"])
    tokenizer = Qwen2TokenizerFast(
        vocab=vocab,
        merges=merges,
        model_max_length=131072,
        additional_special_tokens=["<|im_start|>", "<|im_end|>", "<think>", "</think>"],
    )
    tokenizer.chat_template = _QWEN3_CHAT_TEMPLATE
    return tokenizer


def _clip_tokenizer():
    from tokenizers import Regex, pre_tokenizers
    from transformers import CLIPTokenizer

    # CLIPTokenizer's own splitting (lower-cased input), so that corpus words are single tokens.
    split = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
    pre = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(split), behavior="removed", invert=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False),
        ]
    )
    vocab, merges = _prefix_bpe(_pieces(pre, lower=True), ["<|startoftext|>", "<|endoftext|>"], suffix="</w>")
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=77)


def _t5_tokenizer():
    from tokenizers import pre_tokenizers
    from transformers import T5TokenizerFast

    # A unigram vocabulary in T5's layout (<pad>, </s>, <unk> first). Whole corpus pieces score higher
    # than single characters, so known words stay whole; the scores are fixed, hence deterministic.
    pre = pre_tokenizers.Sequence([pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Metaspace(replacement="▁")])
    pieces = [p for p in _pieces(pre) if len(p) > 1]
    chars = sorted({c for p in pieces for c in p} | set(string.ascii_letters + string.digits + string.punctuation))
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0)]
    vocab += [(c, -6.0) for c in chars] + [(p, -4.0) for p in pieces]
    return T5TokenizerFast(vocab=vocab, extra_ids=0, model_max_length=512)


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
    """Perturb parameters that init leaves constant (norm weights, zero biases); see module docstring."""
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

    spec = _spec(arch)
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
        tokenizer = _mistral_tokenizer()
        text_encoder = _mistral3(tokenizer, spec.text_hidden)
        return Flux2Pipeline(
            scheduler=scheduler,
            vae=vae,
            text_encoder=text_encoder.eval(),
            tokenizer=tokenizer,
            transformer=transformer,
        )
    tokenizer = _qwen_tokenizer()
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
    clip_tokenizer, t5_tokenizer = _clip_tokenizer(), _t5_tokenizer()
    return FluxPipeline(
        scheduler=FlowMatchEulerDiscreteScheduler(**spec.scheduler),
        vae=vae,
        text_encoder=_clip(clip_tokenizer, spec.text_hidden).eval(),
        tokenizer=clip_tokenizer,
        text_encoder_2=_t5(t5_tokenizer, spec.text_hidden).eval(),
        tokenizer_2=t5_tokenizer,
        transformer=transformer,
    )


def _write_diffusers(pipe, spec: TinySpec, out_dir: Path) -> None:
    pipe.save_pretrained(out_dir, safe_serialization=True)
    index_path = out_dir / "model_index.json"
    index = json.loads(index_path.read_text())
    index.update(spec.model_index_names)
    index_path.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")


def _write_single_files(pipe, spec: TinySpec, out_dir: Path) -> dict[str, Path]:
    from safetensors.torch import save_file

    from toolkit.convert.flux_keys import (
        flux2_transformer_diffusers_to_bfl,
        flux_transformer_diffusers_to_bfl,
        vae_diffusers_to_ldm,
    )

    to_bfl = flux2_transformer_diffusers_to_bfl if spec.family == "flux2" else flux_transformer_diffusers_to_bfl
    paths = {"transformer": out_dir / spec.transformer_file, "vae": out_dir / "ae.safetensors"}
    for name, state in (
        ("transformer", to_bfl(pipe.transformer.state_dict())),
        ("vae", vae_diffusers_to_ldm(pipe.vae.state_dict())),
    ):
        save_file({k: v.detach().contiguous() for k, v in state.items()}, str(paths[name]))
    return paths


def save_diffusers_folder(arch: str, out_dir, seed: int = 0) -> Path:
    """Write the tiny ``arch`` as a diffusers folder (``save_pretrained`` layout) into ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_diffusers(build_tiny_pipeline(arch, seed), _spec(arch), out_dir)
    return out_dir


def save_single_files(arch: str, out_dir, seed: int = 0) -> dict[str, Path]:
    """Write BFL's single files (transformer under its release name + ``ae.safetensors``) into ``out_dir``.

    Returns ``{"transformer": path, "vae": path}``. Weights equal ``save_diffusers_folder(arch, ..., seed)``.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    return _write_single_files(build_tiny_pipeline(arch, seed), _spec(arch), out_dir)


def _repo_folder(repo_id: str) -> str:
    if repo_id.count("/") != 1:
        raise ValueError(f"repo_id must look like 'org/name', got '{repo_id}'")
    return "models--" + repo_id.replace("/", "--")


def save_hub_cache(arch: str, cache_dir, repo_id: str, seed: int = 0, single_files: bool = True) -> Path:
    """Write the tiny ``arch`` into a huggingface_hub cache as repo ``repo_id``; returns the snapshot folder.

    Layout: ``cache_dir/models--org--name/refs/main`` (the commit) and ``snapshots/<commit>/`` with the
    diffusers folder and, like BFL's repos, the single files at its root (``single_files=True``). Files are
    stored in the snapshot itself (as huggingface_hub does where symlinks are unavailable), so
    ``snapshot_download(repo_id, cache_dir=cache_dir)`` resolves it with ``HF_HUB_OFFLINE=1``.
    """
    spec = _spec(arch)
    repo = Path(cache_dir) / _repo_folder(repo_id)
    commit = hashlib.sha1(f"{arch}:{seed}:{repo_id}".encode()).hexdigest()
    snapshot = repo / "snapshots" / commit
    if snapshot.exists():
        shutil.rmtree(snapshot)
    snapshot.mkdir(parents=True)
    pipe = build_tiny_pipeline(arch, seed)
    _write_diffusers(pipe, spec, snapshot)
    if single_files:
        _write_single_files(pipe, spec, snapshot)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def ensure_tiny(arch: str, root, layout: str) -> Path:
    """Build the tiny ``arch`` once under ``root/<arch>/<layout>/`` and return that folder.

    layout: ``"diffusers"`` (a diffusers folder) or ``"single_file"`` (the two BFL files). A folder is reused
    only if its completion marker (written last) holds the fingerprint of the current builder, converters
    and library versions; otherwise it is rebuilt. Safe when several processes call this at once: each
    builds in its own temporary folder and renames it into place; the first rename wins.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout '{layout}'; expected one of {', '.join(LAYOUTS)}")
    spec = _spec(arch)
    target = Path(root) / arch / layout
    if _is_current(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    logger.info("building tiny %s (%s layout) in %s", arch, layout, target)
    tmp = Path(tempfile.mkdtemp(prefix=f".{layout}-", dir=target.parent))
    try:
        pipe = build_tiny_pipeline(arch, seed=0)
        if layout == "diffusers":
            _write_diffusers(pipe, spec, tmp)
        else:
            _write_single_files(pipe, spec, tmp)
        (tmp / COMPLETE_MARKER).write_text(_fingerprint())
        _publish(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return target


def _fingerprint() -> str:
    """What a cached build depends on: this builder, the key conversions and the library versions."""
    import diffusers
    import tokenizers
    import transformers

    from toolkit.convert import flux_keys

    digest = hashlib.sha1()
    for source in (__file__, flux_keys.__file__):
        digest.update(Path(source).read_bytes())
    for lib in (diffusers, transformers, tokenizers):
        digest.update(lib.__version__.encode())
    return digest.hexdigest()


def _is_current(folder: Path) -> bool:
    marker = folder / COMPLETE_MARKER
    return marker.is_file() and marker.read_text() == _fingerprint()


def _publish(tmp: Path, target: Path) -> None:
    """Rename ``tmp`` to ``target`` unless another process already published a current one."""
    try:
        os.rename(tmp, target)
        return
    except OSError:
        if _is_current(target):
            return  # another process won the race
    # A leftover that is incomplete or from an older builder: move it aside, then publish ours.
    stale = Path(tempfile.mkdtemp(prefix=".stale-", dir=target.parent))
    try:
        os.rename(target, stale / "old")
    except OSError:
        pass  # someone else moved it first
    try:
        os.rename(tmp, target)
    except OSError:
        if not _is_current(target):
            raise
    finally:
        shutil.rmtree(stale, ignore_errors=True)


def main(argv: list[str] | None = None) -> Path:
    parser = argparse.ArgumentParser(description="Write a tiny random FLUX model in a real on-disk layout.")
    parser.add_argument("--arch", required=True, choices=TINY_IDS, help="a tiny model id: an arch, or <arch>-<release>")
    parser.add_argument("--layout", required=True, choices=(*LAYOUTS, "hub_cache"))
    parser.add_argument("--out", required=True, type=Path, help="output folder (the cache_dir for hub_cache)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repo-id", default=None, help="repo id for --layout hub_cache, e.g. org/tiny-flux2")
    args = parser.parse_args(argv)
    if args.layout == "diffusers":
        path = save_diffusers_folder(args.arch, args.out, args.seed)
    elif args.layout == "single_file":
        save_single_files(args.arch, args.out, args.seed)
        path = args.out
    else:
        if not args.repo_id:
            parser.error("--layout hub_cache needs --repo-id")
        path = save_hub_cache(args.arch, args.out, args.repo_id, args.seed)
    print(path)  # the CLI's output: where the model is
    return path


if __name__ == "__main__":
    main()
