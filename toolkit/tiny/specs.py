"""Which tiny models exist (``tiny:<id>``) and their sizes, read from the architecture declarations."""

from __future__ import annotations

from dataclasses import dataclass, field


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


def tiny_spec(tiny_id: str) -> TinySpec:
    if tiny_id not in SPECS:
        raise ValueError(
            f"unknown tiny model '{tiny_id}' (an arch, or <arch>-<release>); expected one of {', '.join(TINY_IDS)}"
        )
    return SPECS[tiny_id]
