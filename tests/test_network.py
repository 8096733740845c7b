"""LoRA target filtering (pure) and the PEFT adapter on a tiny transformer."""

import pytest
import torch

from toolkit.network import NetworkError, attach_lora, load_lora_state_dict, lora_state_dict, select_targets

pytestmark = pytest.mark.slow  # end-to-end: builds / loads tiny models or runs jobs (see pyproject.toml)

NAMES = [
    "transformer_blocks.0.attn.to_q",
    "transformer_blocks.0.ff.linear_in",
    "single_transformer_blocks.0.attn.to_qkv_mlp_proj",
    "single_transformer_blocks.0.attn.to_out",
]


def test_filters():
    assert select_targets(NAMES, [], [], "network") == NAMES
    assert select_targets(NAMES, ["attn"], [], "network") == [NAMES[0], NAMES[2], NAMES[3]]
    assert select_targets(NAMES, [], ["single_transformer_blocks"], "network") == NAMES[:2]
    assert select_targets(NAMES, ["attn"], ["to_out"], "network") == [NAMES[0], NAMES[2]]


def test_filter_leaving_nothing_is_an_error():
    with pytest.raises(NetworkError, match=r"config.process\[0\].network.network_kwargs.*leave no module"):
        select_targets(NAMES, ["attn"], ["attn"], "config.process[0].network")


def test_attach_trains_only_lora_and_state_round_trips():
    from toolkit.tiny import build_tiny_pipeline

    transformer = build_tiny_pipeline("flux2").transformer
    params = attach_lora(transformer, NAMES, rank=4, alpha=4)
    trainable = [n for n, p in transformer.named_parameters() if p.requires_grad]
    assert trainable and all(".lora_" in n for n in trainable) and len(params) == 2 * len(NAMES)
    assert all(p.dtype == torch.float32 for p in params)
    state = lora_state_dict(transformer)
    assert "transformer_blocks.0.attn.to_q.lora_A.weight" in state
    changed = {k: torch.randn_like(v) for k, v in state.items()}
    load_lora_state_dict(transformer, changed)
    for key, value in lora_state_dict(transformer).items():
        assert torch.equal(value, changed[key])


def test_a_filter_naming_no_module_is_an_error_even_beside_good_ones():
    with pytest.raises(NetworkError, match=r"only_if_contains: \['transformer_blok'\] match no module"):
        select_targets(NAMES, ["attn", "transformer_blok"], [], "network")


def test_filters_take_aitk_spellings():
    from toolkit.lora_format import bfl_module_name

    def bfl(name):
        return bfl_module_name("flux2", name)

    # ai-toolkit's PEFT-prefixed and underscored names, and its FLUX.2 model's BFL names
    assert select_targets(NAMES, ["transformer.single_transformer_blocks.0"], [], "n", bfl) == NAMES[2:]
    assert select_targets(NAMES, ["lora_transformer_transformer_blocks_0_attn"], [], "n", bfl) == NAMES[:1]
    assert select_targets(NAMES, ["single_blocks.0.linear1"], [], "n", bfl) == [NAMES[2]]
    assert select_targets(NAMES, [], ["double_blocks", "linear2"], "n", bfl) == [NAMES[2]]
    assert select_targets(NAMES, ["img_attn.qkv"], [], "n", bfl) == [NAMES[0]]
    with pytest.raises(NetworkError, match="only_if_contains"):
        select_targets(NAMES, ["single_blocks.0.linear1"], [], "n")  # without BFL names there is no such module


def test_full_rank_lokr_keeps_both_factors_whole():
    from toolkit.config_modules import LOKR_FULL_RANK
    from toolkit.tiny import build_tiny_pipeline

    transformer = build_tiny_pipeline("flux2").transformer
    attach_lora(transformer, NAMES[:1], rank=LOKR_FULL_RANK, alpha=float(LOKR_FULL_RANK), network_type="lokr")
    names = {n.rsplit(".", 2)[-2] for n, p in transformer.named_parameters() if p.requires_grad}
    assert names == {"lokr_w1", "lokr_w2"}  # no w2_a / w2_b: nothing rank-decomposed, as ai-toolkit
    low = build_tiny_pipeline("flux2").transformer
    attach_lora(low, NAMES[:1], rank=1, alpha=1.0, network_type="lokr")  # lokr_full_rank: false, linear: 1
    assert {n.rsplit(".", 2)[-2] for n, p in low.named_parameters() if p.requires_grad} == {
        "lokr_w1",
        "lokr_w2_a",
        "lokr_w2_b",
    }
