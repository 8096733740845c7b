"""Tiny random FLUX.1 / FLUX.2 models in the real on-disk layouts: the ``tiny:<arch>`` weights of the offline
demo and the tests.

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

Modules: :mod:`.specs` (one tiny model per declared architecture), :mod:`.tokenizer` (the hand-made
vocabularies), :mod:`.builders` (the pipelines), :mod:`.layouts` (writing them to disk), :mod:`.cache` (the
``tiny:`` cache the run time reads, :func:`ensure_tiny`) and :mod:`.export` (writing one into any folder or a
hub cache, for tests and the CLI).

CLI: ``python -m toolkit.tiny --arch flux2 --layout diffusers --out DIR``.
"""

from __future__ import annotations

from toolkit.tiny.builders import build_tiny_pipeline
from toolkit.tiny.cache import COMPLETE_MARKER, ensure_tiny
from toolkit.tiny.layouts import LAYOUTS
from toolkit.tiny.specs import SPECS, TINY_IDS, TinySpec, tiny_specs

__all__ = [
    "COMPLETE_MARKER",
    "LAYOUTS",
    "SPECS",
    "TINY_IDS",
    "TinySpec",
    "build_tiny_pipeline",
    "ensure_tiny",
    "tiny_specs",
]
